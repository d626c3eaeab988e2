/*
 * tests/integration/proxy_stream.mjs: streamed responses through infertap.
 * SSE events reach the client as the simulator paces them; a thousand
 * concurrent streams all complete; a client that stops reading does not make
 * infertap buffer the response (bounded RSS, backpressure reaches the
 * upstream); an upstream dying mid-body gives the client a visibly truncated
 * response and the access log an error; a client going away mid-stream is
 * passed on to the upstream at once.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import {
    startSim, startProxy, startUpstream, startRawUpstream, stopAll, request, getJSON, RawConn,
    buildRequest, parseResponse, sseData, timedSSE, sleep, waitUntil, now, limitHits, deadline,
    SANITIZED,
} from './lib/harness.mjs';

after(stopAll);

const chat = (content, extra = {}) => ({
    model: 'm', messages: [{ role: 'user', content }], stream: true, ...extra,
});

function streamText(body) {
    const data = sseData(body);
    assert.equal(data.at(-1), '[DONE]', 'the stream ends with [DONE]');
    return data.slice(0, -1).map((d) => JSON.parse(d).choices[0]?.delta?.content ?? '').join('');
}

/* The soft limit on open files of this process. */
function nofileSoft() {
    const m = fs.readFileSync('/proc/self/limits', 'utf8').match(/^Max open files\s+(\S+)/m);
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
}

test('SSE events arrive one by one, paced like the simulator', async (t) => {
    const TTFT = 150;
    const ITL = 60;
    const N = 10;
    const sim = await startSim(['--ttft-ms', String(TTFT), '--itl-ms', String(ITL),
        '--tokens', String(N)]);
    const px = await startProxy({ upstreams: [sim] });
    t.after(() => Promise.all([px.kill(), sim.kill()]));

    const r = await request(`${px.url}/v1/chat/completions`, {
        method: 'POST', body: chat('pacing'),
    });
    assert.equal(r.status, 200);
    assert.equal(r.aborted, false);
    const events = timedSSE(r.chunks).filter((e) => e.data !== '[DONE]'
        && (JSON.parse(e.data).choices[0]?.delta?.content ?? '') !== '');
    assert.equal(events.length, N);
    const first = events[0].t;
    const last = events.at(-1).t;
    const gaps = events.slice(1).map((e, i) => e.t - events[i].t).sort((a, b) => a - b);
    const median = gaps[Math.floor(gaps.length / 2)];
    t.diagnostic(`first token at ${first.toFixed(0)} ms, last at ${last.toFixed(0)} ms, ` +
        `median gap ${median.toFixed(1)} ms`);
    assert.ok(first >= TTFT * 0.8, `first token after the sim's TTFT (${first} ms)`);
    assert.ok(last - first >= (N - 1) * ITL * 0.8,
        `tokens spread over the stream, not bunched (${last - first} ms)`);
    assert.ok(median >= ITL * 0.6, `median gap ${median} ms`);
    const distinct = new Set(events.map((e) => e.t)).size;
    assert.ok(distinct >= N - 2, `events arrived in ${distinct} separate reads, not together`);

    await px.stop();
    await sim.stop();
});

test('1,000 concurrent SSE streams all complete', async (t) => {
    const N = 1000;
    if (nofileSoft() < N + 200) {
        t.skip(`open files limit ${nofileSoft()} is too low for ${N} connections`);
        return;
    }
    const sim = await startSim(['--threads', '2', '--itl-ms', '5', '--tokens', '8']);
    const px = await startProxy({ upstreams: [sim], workers: 2, nofile: 8192 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: N });
    t.after(() => {
        agent.destroy();
        return Promise.all([px.kill(), sim.kill()]);
    });

    /* the expected text of each seed, straight from the simulator */
    const SEEDS = 10;
    const want = [];
    for (let s = 0; s < SEEDS; s++) {
        const d = await request(`${sim.url}/v1/chat/completions`, {
            method: 'POST', body: chat('concurrent', { seed: s }),
        });
        want.push(streamText(d.body));
    }

    const one = (i) => new Promise((resolve, reject) => {
        const payload = JSON.stringify(chat('concurrent', { seed: i % SEEDS }));
        const req = http.request({
            host: '127.0.0.1', port: px.port, method: 'POST', path: '/v1/chat/completions', agent,
            headers: {
                'content-type': 'application/json', 'content-length': payload.length,
                'x-request-id': `c-${i}`,
            },
        }, (res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => resolve({
                i, status: res.statusCode, complete: res.complete,
                body: Buffer.concat(parts).toString(),
            }));
            res.on('error', reject);
        });
        req.setTimeout(30000, () => req.destroy(new Error(`request ${i} timed out`)));
        req.on('error', reject);
        req.end(payload);
    });

    const t0 = now();
    const results = await Promise.all(Array.from({ length: N }, (_, i) => one(i)));
    const ms = now() - t0;
    t.diagnostic(`${N} concurrent streams in ${ms.toFixed(0)} ms`);
    let bad = 0;
    for (const r of results) {
        if (r.status !== 200 || !r.complete) {
            bad++;
            continue;
        }
        assert.equal(streamText(r.body), want[r.i % SEEDS], `stream ${r.i}`);
    }
    assert.equal(bad, 0, `${bad} streams failed`);

    const logs = await px.waitLogs(N);
    const mine = logs.filter((l) => l.request_id.startsWith('c-'));
    assert.equal(mine.length, N);
    assert.ok(mine.every((l) => l.status === 200 && l.error === null),
        JSON.stringify(mine.find((l) => l.status !== 200 || l.error !== null)));
    const stats = (await getJSON(`${sim.url}/sim/stats`)).json;
    assert.equal(stats.aborted, 0);

    agent.destroy();
    await px.stop();
    await sim.stop();
});

test('bursts of 1,000 simultaneous connects are accepted without SYN retries', async (t) => {
    const N = 1000;
    if (nofileSoft() < N + 200) {
        t.skip(`open files limit ${nofileSoft()} is too low for ${N} connections`);
        return;
    }
    const up = await startUpstream();
    const px = await startProxy({ upstreams: [up], nofile: 8192 });
    const socks = [];
    t.after(async () => {
        socks.forEach((s) => s.destroy());
        await px.kill();
        await up.close();
    });
    const times = [];
    for (let k = 0; k < 4; k++) {
        const t0 = now();
        await Promise.all(Array.from({ length: N }, () => new Promise((resolve, reject) => {
            const s = net.connect(px.port, '127.0.0.1');
            socks.push(s);
            s.once('connect', resolve);
            s.once('error', reject);
        })));
        times.push(Math.round(now() - t0));
    }
    t.diagnostic(`bursts of ${N} connects took ${times.join(', ')} ms`);
    assert.ok(times.every((ms) => ms < 900), `no burst waits for a SYN retransmit: ${times}`);
    socks.forEach((s) => s.destroy());
    await px.stop();
    await up.close();
});

test('a client that never reads does not make infertap buffer the response', async (t) => {
    const TOTAL = 200 * 1024 * 1024;
    const LIMIT = 64 * 1024 * 1024;
    const block = Buffer.alloc(1 << 20, 'x');
    let sent = 0;
    let finished = false;
    const up = await startUpstream((req, res) => {
        res.writeHead(200, { 'content-type': 'application/octet-stream',
            'content-length': TOTAL });
        const pump = () => {
            while (sent < TOTAL) {
                const n = Math.min(block.length, TOTAL - sent);
                sent += n;
                if (!res.write(n === block.length ? block : block.subarray(0, n))) {
                    res.once('drain', pump);
                    return;
                }
            }
            res.end(() => {
                finished = true;
            });
        };
        pump();
    });
    const px = await startProxy({ upstreams: [up] });
    const sock = net.connect(px.port, '127.0.0.1');
    t.after(async () => {
        sock.destroy();
        await px.kill();
        await up.close();
    });
    await new Promise((resolve) => sock.once('connect', resolve));
    sock.pause();
    sock.write(buildRequest('GET', '/big'));

    const rss0 = px.rss();
    let peak = rss0;
    const deadlineAt = now() + 2500;
    while (now() < deadlineAt) {
        peak = Math.max(peak, px.rss());
        await sleep(50);
    }
    const mb = (n) => (n / 1048576).toFixed(1);
    t.diagnostic(`RSS ${mb(rss0)} MB before, peak ${mb(peak)} MB with the client stalled; ` +
        `the upstream wrote ${mb(sent)} MB`);
    if (!SANITIZED) {
        assert.ok(peak < LIMIT, `peak RSS ${peak} bytes must stay under ${LIMIT}`);
    }
    assert.ok(sent < TOTAL / 2, `the upstream is held back too (${sent} bytes sent)`);
    assert.equal(finished, false);

    /* now read everything: nothing was lost */
    let got = 0;
    let head = null;
    let pending = Buffer.alloc(0);
    const done = new Promise((resolve, reject) => {
        sock.on('data', (d) => {
            if (head === null) {
                pending = Buffer.concat([pending, d]);
                const i = pending.indexOf('\r\n\r\n');
                if (i < 0) {
                    return;
                }
                head = pending.subarray(0, i).toString('latin1');
                got = pending.length - i - 4;
            } else {
                got += d.length;
            }
            peak = Math.max(peak, px.rss());
            if (got >= TOTAL) {
                resolve();
            }
        });
        sock.on('close', () => (got >= TOTAL ? resolve() : reject(new Error(`closed at ${got}`))));
    });
    sock.resume();
    await deadline(done, 20000, 'reading the whole response');
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.match(head, new RegExp(`\r\ncontent-length: ${TOTAL}(\r\n|$)`, 'i'));
    assert.equal(got, TOTAL);
    if (!SANITIZED) {
        assert.ok(peak < LIMIT, `peak RSS ${peak} while reading`);
    }
    sock.destroy();
    await px.stop();
    await up.close();
});

/* n bytes in which every 4-byte word holds its own offset: a byte out of place shows */
function patterned(n) {
    const b = Buffer.alloc(n);
    for (let i = 0; i + 4 <= n; i += 4) {
        b.writeUInt32LE(i, i);
    }
    return b;
}

for (const framing of ['content-length', 'chunked']) {
    test(`a client that reads late and slowly gets every byte in order (${framing})`, async (t) => {
        /* the socket to the client fills, so sends are cut short and the rest waits in
         * infertap's output; the body tells where each byte came from */
        const body = patterned(24 * 1024 * 1024);
        const up = await startUpstream((req, res) => {
            res.writeHead(200, framing === 'chunked'
                ? { 'content-type': 'application/octet-stream' }
                : { 'content-type': 'application/octet-stream', 'content-length': body.length });
            let off = 0;
            const pump = () => {
                while (off < body.length) {
                    /* uneven pieces, so that reads and chunks do not line up */
                    const n = Math.min(body.length - off, 1000 + (off % 70000));
                    const more = res.write(body.subarray(off, off + n));
                    off += n;
                    if (!more) {
                        res.once('drain', pump);
                        return;
                    }
                }
                res.end();
            };
            pump();
        });
        const px = await startProxy({ upstreams: [up] });
        t.after(() => Promise.all([px.kill(), up.close()]));

        const sock = net.connect(px.port, '127.0.0.1');
        await new Promise((resolve) => sock.once('connect', resolve));
        sock.pause();
        sock.write(buildRequest('GET', '/pattern'));
        await sleep(300);

        const parts = [];
        let got = 0;
        const done = new Promise((resolve) => {
            sock.on('data', (d) => {
                parts.push(d);
                got += d.length;
                /* a slow reader: take a piece, then stop for a moment */
                sock.pause();
                setTimeout(() => sock.resume(), parts.length % 50 === 0 ? 5 : 0);
                const r = got >= body.length ? parseResponse(Buffer.concat(parts)) : null;
                if (r && r.complete) {
                    resolve(r);
                }
            });
        });
        sock.resume();
        const r = await deadline(done, 30000, 'reading the whole response');
        sock.destroy();
        assert.equal(r.status, 200);
        assert.equal(r.chunked, framing === 'chunked');
        assert.equal(r.body.length, body.length);
        if (!r.body.equals(body)) {
            const bad = r.body.findIndex((v, i) => v !== body[i]);
            assert.fail(`the first byte out of place is at ${bad}`);
        }
    });
}

test('an upstream dying mid-stream: truncated chunked response, error logged', async (t) => {
    const sim = await startSim(['--error-rate', '1', '--error-kind', 'cut', '--tokens', '20']);
    const px = await startProxy({ upstreams: [sim] });
    t.after(() => Promise.all([px.kill(), sim.kill()]));

    const conn = await RawConn.connect(px.port);
    await conn.write(buildRequest('POST', '/v1/chat/completions', {
        headers: { 'x-request-id': 'cut-sse' }, body: chat('cut me'),
    }));
    assert.ok(await conn.waitClose(5000), 'the proxy closes the client connection');
    const r = parseResponse(conn.buf, { closed: true });
    conn.destroy();
    assert.equal(r.status, 200);
    assert.equal(r.chunked, true);
    assert.equal(r.complete, false, 'no terminal 0-chunk');
    assert.ok(!conn.text().endsWith('0\r\n\r\n'));
    assert.ok(r.body.length > 0, 'what arrived before the cut was forwarded');
    assert.ok(!sseData(r.body.toString()).includes('[DONE]'));
    const rec = (await px.waitLogs(1)).find((l) => l.request_id === 'cut-sse');
    assert.equal(rec.status, 200);
    assert.notEqual(rec.error, null, 'the record says the response was cut');
    assert.equal(rec.bytes_out, r.body.length);
    t.diagnostic(`error: ${rec.error}`);
    await px.stop();
    await sim.stop();
});

test('an upstream closing inside a Content-Length body: the client sees it short', async (t) => {
    const raw = await startRawUpstream((sock) => {
        sock.once('data', () => {
            sock.write('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n' +
                `Content-Length: 1000\r\n\r\n${'y'.repeat(100)}`);
            setTimeout(() => sock.destroy(), 50);
        });
    });
    const px = await startProxy({ upstreams: [raw] });
    t.after(async () => {
        await px.kill();
        await raw.close();
    });
    const conn = await RawConn.connect(px.port);
    await conn.write(buildRequest('GET', '/short', { headers: { 'x-request-id': 'cut-cl' } }));
    assert.ok(await conn.waitClose(5000));
    const r = parseResponse(conn.buf, { closed: true });
    conn.destroy();
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], '1000');
    assert.equal(r.complete, false);
    assert.equal(r.body.length, 100);
    const rec = (await px.waitLogs(1)).find((l) => l.request_id === 'cut-cl');
    assert.notEqual(rec.error, null);
    await px.stop();
    await raw.close();
});

test('a client aborting mid-stream is passed on to the simulator at once', async (t) => {
    const sim = await startSim(['--itl-ms', '100', '--tokens', '50']);
    const px = await startProxy({ upstreams: [sim] });
    t.after(() => Promise.all([px.kill(), sim.kill()]));

    const conn = await RawConn.connect(px.port);
    await conn.write(buildRequest('POST', '/v1/chat/completions', {
        headers: { 'x-request-id': 'abort-sim' }, body: chat('abort me'),
    }));
    assert.ok(await conn.waitFor(() => conn.text().includes('data: '), 3000));
    const t0 = now();
    conn.destroy();
    const aborted = async () => (await getJSON(`${sim.url}/sim/stats`)).json.aborted;
    const ok = await waitUntil(async () => (await aborted()) === 1,
        { timeoutMs: 2000, intervalMs: 20 });
    const ms = now() - t0;
    t.diagnostic(`the simulator counted the abort after ${ms.toFixed(0)} ms`);
    assert.ok(ok, 'the simulator saw the abort');
    assert.ok(ms < 1000, `within 1 s (${ms} ms)`);
    const rec = (await px.waitLogs(1)).find((l) => l.request_id === 'abort-sim');
    assert.equal(rec.error, 'client_abort');
    await px.stop();
    await sim.stop();
});

test('a client aborting mid-stream closes the upstream connection (node upstream)', async (t) => {
    let closedAt = 0;
    const up = await startUpstream((req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const timer = setInterval(() => res.write('data: {"x":1}\n\n'), 50);
        res.on('close', () => {
            clearInterval(timer);
            closedAt = now();
        });
    });
    const px = await startProxy({ upstreams: [up] });
    t.after(async () => {
        await px.kill();
        await up.close();
    });
    const conn = await RawConn.connect(px.port);
    await conn.write(buildRequest('GET', '/events'));
    assert.ok(await conn.waitFor(() => conn.text().includes('data: '), 3000));
    const t0 = now();
    conn.destroy();
    assert.ok(await waitUntil(() => closedAt > 0, { timeoutMs: 2000, intervalMs: 10 }),
        'the upstream saw its connection close');
    t.diagnostic(`the upstream saw the close after ${(closedAt - t0).toFixed(0)} ms`);
    assert.ok(closedAt - t0 < 1000);
    assert.equal(up.requests.length, 1);
    assert.equal(up.requests[0].closed, true);
    const m = await px.metrics();
    assert.equal(limitHits(m, 'stream_idle_timeout'), 0);
    await px.stop();
    await up.close();
});
