// bench/stream-check.mjs URL: how a proxy delivers one SSE stream.
//
// Sends one streaming chat request (the same body as bench/post-stream.lua) on a fresh
// connection and counts the socket reads the events arrive in. Printed on one line:
//   <events> <reads> <first event ms> <last event ms>
// A proxy that passes each event on as it comes gives about one read per event; one that
// holds the stream back gives few reads and a first event as late as the last.
// Exits 1 (with a reason on stderr) when no [DONE] arrives within 10 s.

import net from 'node:net';

const url = new URL(process.argv[2]);
const body = JSON.stringify({
    model: 'sim-model',
    messages: [{ role: 'user', content: 'Say hello in one short line.' }],
    max_tokens: 32,
    stream: true,
});

const t0 = process.hrtime.bigint();
const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
let text = '', reads = 0, events = 0, first = -1, last = -1;

const sock = net.connect(+url.port, url.hostname, () => {
    sock.write(`POST ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\n`
        + 'Content-Type: application/json\r\nAccept: text/event-stream\r\n'
        + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
});

sock.on('data', (chunk) => {
    const n = (chunk.toString('latin1').match(/^data:/gm) || []).length;
    text += chunk.toString('latin1');
    reads++;
    if (n > 0) {
        events += n;
        last = ms();
        if (first < 0) first = last;
    }
    if (text.includes('data: [DONE]')) {
        console.log(`${events} ${reads} ${first.toFixed(1)} ${last.toFixed(1)}`);
        sock.destroy();
        process.exit(0);
    }
});

const fail = (why) => {
    console.error(`stream-check: ${why}`);
    process.exit(1);
};
sock.on('error', (e) => fail(e.message));
sock.on('close', () => fail('connection closed before [DONE]'));
setTimeout(() => fail('no [DONE] within 10 s'), 10000).unref();
