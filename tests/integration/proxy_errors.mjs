/*
 * tests/integration/proxy_errors.mjs: what infertap refuses and how it fails.
 * Request smuggling shapes get 400 and a closed connection and never reach
 * the upstream; size limits (431, 413), slow clients (408) and the
 * connection limit; dead, silent, broken and stalling upstreams (502, 504,
 * truncated streams) with OpenAI-shaped error bodies; every limit and
 * timeout counted in the admin /metrics.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    startSim, startProxy, startRawUpstream, stopAll, request, rawExchange, RawConn, buildRequest,
    parseResponse, parseResponses, freePort, sleep, now, limitHits, sseData,
} from './lib/harness.mjs';

const MAX_HEADER = 8 * 1024;
const MAX_BODY = 1024;

/*
 * An upstream that reads requests properly (Content-Length or chunked
 * bodies) and answers each one "ok" once it is complete, counting them.
 */
async function countingUpstream() {
    const up = await startRawUpstream((sock) => {
        let buf = Buffer.alloc(0);
        sock.on('data', (d) => {
            buf = Buffer.concat([buf, d]);
            for (;;) {
                const end = buf.indexOf('\r\n\r\n');
                if (end < 0) {
                    return;
                }
                const head = buf.subarray(0, end).toString('latin1');
                let used = end + 4;
                const cl = head.match(/\r\ncontent-length:\s*(\d+)/i);
                if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
                    const z = buf.indexOf('\r\n0\r\n\r\n', end);
                    const z0 = buf.indexOf('0\r\n\r\n', end + 4) === end + 4 ? end + 4 : -1;
                    if (z < 0 && z0 < 0) {
                        return;
                    }
                    used = z0 >= 0 ? z0 + 5 : z + 7;
                } else if (cl) {
                    if (buf.length < used + Number(cl[1])) {
                        return;
                    }
                    used += Number(cl[1]);
                }
                buf = buf.subarray(used);
                up.requests++;
                sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n' +
                    '\r\nok');
            }
        });
    });
    up.requests = 0;
    return up;
}

let up;
let px;

before(async () => {
    up = await countingUpstream();
    px = await startProxy({
        upstreams: [up],
        args: ['--set', `limits.max_header_bytes=${MAX_HEADER}`,
            '--set', `limits.max_body_bytes=${MAX_BODY}`,
            '--set', 'timeouts.client_header=600ms', '--set', 'timeouts.client_body=600ms'],
    });
});

after(async () => {
    try {
        await px?.stop();
    } finally {
        await up?.close();
        await stopAll();
    }
});

/* An OpenAI-shaped error body with a machine-readable code. */
function assertErrorShape(r, status, code, what) {
    assert.equal(r.status, status, `${what}: status ${r.status} ${r.body}`);
    assert.match(r.headers['content-type'] ?? '', /^application\/json/, what);
    const j = JSON.parse(r.body.toString());
    assert.equal(typeof j.error, 'object', what);
    assert.equal(typeof j.error.message, 'string', what);
    assert.ok(j.error.message.length > 0, what);
    assert.equal(j.error.type, 'infertap_error', what);
    assert.equal(typeof j.error.code, 'string', what);
    assert.match(j.error.code, /^[a-z_]+$/, what);
    if (code) {
        assert.equal(j.error.code, code, what);
    }
    return j;
}

/* Send bytes on a fresh connection; expect one refusal and a close. */
async function expectRefused(port, data, status, what, { gapMs } = {}) {
    const r = await rawExchange(port, data, { timeoutMs: 3000, gapMs });
    assert.ok(r.closed, `${what}: the connection is closed`);
    const all = parseResponses(r.buf, { closed: true });
    assert.equal(all.length, 1, `${what}: exactly one response, got ${JSON.stringify(r.text)}`);
    const res = all[0];
    assert.equal(res.complete, true, what);
    assert.equal(res.headers.connection, 'close', what);
    const statuses = Array.isArray(status) ? status : [status];
    assert.ok(statuses.includes(res.status), `${what}: status ${res.status}, want ${status}`);
    assertErrorShape(res, res.status, null, what);
    return res;
}

const req = (head, body = '') => `${head.join('\r\n')}\r\n\r\n${body}`;

/* The head was valid: its error is in the body, which infertap streams. */
const BODY = { body: true };

const SMUGGLING = [
    ['Content-Length with Transfer-Encoding', req(['POST /s HTTP/1.1', 'Host: x',
        'Content-Length: 6', 'Transfer-Encoding: chunked'], '0\r\n\r\nGET /smuggled HTTP/1.1\r\n' +
        'Host: x\r\n\r\n')],
    ['Transfer-Encoding before Content-Length', req(['POST /s HTTP/1.1', 'Host: x',
        'Transfer-Encoding: chunked', 'Content-Length: 3'], '0\r\n\r\n')],
    ['duplicate Content-Length, same value', req(['POST /s HTTP/1.1', 'Host: x',
        'Content-Length: 5', 'Content-Length: 5'], 'hello')],
    ['duplicate Content-Length, different values', req(['POST /s HTTP/1.1', 'Host: x',
        'Content-Length: 5', 'Content-Length: 6'], 'hello!')],
    ['Content-Length list', req(['POST /s HTTP/1.1', 'Host: x', 'Content-Length: 5, 5'],
        'hello')],
    ['malformed Content-Length (5a)', req(['POST /s HTTP/1.1', 'Host: x', 'Content-Length: 5a'],
        'hello')],
    ['malformed Content-Length (+5)', req(['POST /s HTTP/1.1', 'Host: x', 'Content-Length: +5'],
        'hello')],
    ['malformed Content-Length (-1)', req(['POST /s HTTP/1.1', 'Host: x', 'Content-Length: -1'])],
    ['malformed Content-Length (0x5)', req(['POST /s HTTP/1.1', 'Host: x',
        'Content-Length: 0x5'], 'hello')],
    ['empty Content-Length', req(['POST /s HTTP/1.1', 'Host: x', 'Content-Length: '])],
    ['absurd Content-Length', req(['POST /s HTTP/1.1', 'Host: x',
        'Content-Length: 99999999999999999999'], 'hello')],
    ['Transfer-Encoding: gzip, chunked', req(['POST /s HTTP/1.1', 'Host: x',
        'Transfer-Encoding: gzip, chunked'], '0\r\n\r\n')],
    ['Transfer-Encoding: chunked, gzip', req(['POST /s HTTP/1.1', 'Host: x',
        'Transfer-Encoding: chunked, gzip'], '0\r\n\r\n')],
    ['Transfer-Encoding: identity', req(['POST /s HTTP/1.1', 'Host: x',
        'Transfer-Encoding: identity'], '0\r\n\r\n')],
    ['empty Transfer-Encoding', req(['POST /s HTTP/1.1', 'Host: x', 'Transfer-Encoding: '],
        '0\r\n\r\n')],
    ['Transfer-Encoding twice', req(['POST /s HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked',
        'Transfer-Encoding: chunked'], '0\r\n\r\n')],
    ['Transfer-Encoding on HTTP/1.0', req(['POST /s HTTP/1.0', 'Host: x',
        'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n')],
    ['bad chunk size', req(['POST /s HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked'],
        'zz\r\nhello\r\n0\r\n\r\n'), BODY],
    ['chunk size overflow', req(['POST /s HTTP/1.1', 'Host: x', 'Transfer-Encoding: chunked'],
        'fffffffffffffffff1\r\nhello\r\n0\r\n\r\n'), BODY],
    ['chunk shorter than its size', req(['POST /s HTTP/1.1', 'Host: x',
        'Transfer-Encoding: chunked'], '3\r\nhello\r\n0\r\n\r\n'), BODY],
    ['obs-fold', req(['GET /s HTTP/1.1', 'Host: x', 'X-Folded: a', ' b'])],
    ['obs-fold of Content-Length', req(['POST /s HTTP/1.1', 'Host: x', 'Content-Length:',
        ' 5'], 'hello')],
    ['missing Host on HTTP/1.1', req(['GET /s HTTP/1.1', 'X-A: 1'])],
    ['duplicate Host', req(['GET /s HTTP/1.1', 'Host: a', 'Host: b'])],
    ['Content_Length', req(['POST /s HTTP/1.1', 'Host: x', 'Content_Length: 5'], 'hello')],
    ['Transfer_Encoding', req(['POST /s HTTP/1.1', 'Host: x', 'Transfer_Encoding: chunked'],
        '0\r\n\r\n')],
    ['space before the colon', req(['POST /s HTTP/1.1', 'Host: x', 'Content-Length : 5'],
        'hello')],
    ['bare LF line endings', 'GET /s HTTP/1.1\nHost: x\n\n'],
    ['Upgrade: websocket', req(['GET /ws HTTP/1.1', 'Host: x', 'Connection: Upgrade',
        'Upgrade: websocket', 'Sec-WebSocket-Version: 13',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='])],
    ['Upgrade: h2c', req(['GET / HTTP/1.1', 'Host: x', 'Connection: Upgrade, HTTP2-Settings',
        'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA'])],
];

/* Refused, and not one byte of it reached the upstream. */
async function expectStopped(data, status, what, opts) {
    const bytes = up.bytes();
    const n = up.requests;
    await expectRefused(px.port, data, status, what, opts);
    await sleep(20);
    assert.equal(up.bytes() - bytes, 0, `${what}: no byte may reach the upstream`);
    assert.equal(up.requests - n, 0, what);
}

test('request smuggling shapes: 400, connection closed, nothing upstream', async () => {
    const failed = [];
    for (const [what, data] of SMUGGLING) {
        try {
            await expectStopped(data, 400, what);
        } catch (e) {
            failed.push(e.message.split('\n')[0]);
        }
    }
    assert.deepEqual(failed, []);
});

test('CONNECT is refused', async () => {
    await expectStopped(req(['CONNECT example.com:443 HTTP/1.1', 'Host: example.com:443']),
        [400, 405], 'CONNECT');
});

test('the same checks hold when the request arrives in small pieces', async () => {
    for (const [what, data, kind] of SMUGGLING) {
        const pieces = [];
        for (let i = 0; i < data.length; i += 7) {
            pieces.push(data.slice(i, i + 7));
        }
        if (!kind?.body) {
            await expectStopped(pieces, 400, `${what} (in pieces)`, { gapMs: 1 });
            continue;
        }
        /* the head went upstream before the bad body arrived: the upstream
         * must see a request that never completes and a closed connection */
        const n = up.requests;
        const c = up.conns.length;
        await expectRefused(px.port, pieces, 400, `${what} (in pieces)`, { gapMs: 1 });
        await sleep(50);
        assert.equal(up.requests - n, 0, `${what}: no complete request upstream`);
        assert.ok(up.conns.slice(c).every((x) => x.closed), `${what}: upstream connection closed`);
    }
});

test('a request after a refused one on the same connection is never read', async () => {
    const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n';
    await expectStopped(req(['GET /s HTTP/1.1', 'Host: a', 'Host: b']) + smuggled, 400,
        'pipelined after a bad request');
});

test('control: a valid request does reach the counting upstream', async () => {
    const n = up.requests;
    const r = await request(`${px.url}/ok`);
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok');
    assert.equal(up.requests, n + 1);
    assert.ok(up.bytes() > 0);
    const p = await request(`${px.url}/ok`, { method: 'POST', body: 'x'.repeat(100) });
    assert.equal(p.status, 200);
});

/* ---- limits -------------------------------------------------------------------------- */

test('a request head over limits.max_header_bytes gets 431', async () => {
    const before = limitHits(await px.metrics(), 'max_header_bytes');
    const big = 'a'.repeat(MAX_HEADER + 100);
    await expectRefused(px.port, req(['GET /h HTTP/1.1', 'Host: x', `X-Big: ${big}`]), 431,
        'one big header');
    const many = Array.from({ length: 400 }, (_, i) => `X-H${i}: ${'v'.repeat(20)}`);
    await expectRefused(px.port, req(['GET /h HTTP/1.1', 'Host: x', ...many]), 431,
        'many headers');
    const longUrl = `/${'u'.repeat(MAX_HEADER + 10)}`;
    await expectRefused(px.port, req([`GET ${longUrl} HTTP/1.1`, 'Host: x']), [414, 431],
        'a long target');
    const after = limitHits(await px.metrics(), 'max_header_bytes');
    assert.equal(after - before, 3, 'infertap_limits_hit_total{limit="max_header_bytes"}');
    /* just under the limit is fine */
    const ok = await request(`${px.url}/h`, { headers: { 'x-big': 'a'.repeat(MAX_HEADER - 600) } });
    assert.equal(ok.status, 200);
});

test('a body over limits.max_body_bytes gets 413 (Content-Length and chunked)', async () => {
    const before = limitHits(await px.metrics(), 'max_body_bytes');
    await expectRefused(px.port, req(['POST /b HTTP/1.1', 'Host: x',
        `Content-Length: ${MAX_BODY + 1}`]), 413, 'Content-Length over the limit');
    const chunk = 'c'.repeat(400);
    const body = [0, 1, 2].map(() => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('')
        + '0\r\n\r\n';
    await expectRefused(px.port, req(['POST /b HTTP/1.1', 'Host: x',
        'Transfer-Encoding: chunked'], body), 413, 'chunked body over the limit');
    const after = limitHits(await px.metrics(), 'max_body_bytes');
    assert.equal(after - before, 2, 'infertap_limits_hit_total{limit="max_body_bytes"}');
    const ok = await request(`${px.url}/b`, { method: 'POST', body: 'x'.repeat(MAX_BODY) });
    assert.equal(ok.status, 200, 'exactly the limit is fine');
});

test('slowloris: a head trickled past timeouts.client_header gets 408', async () => {
    const before = limitHits(await px.metrics(), 'client_header_timeout');
    const conn = await RawConn.connect(px.port);
    const t0 = now();
    try {
        await conn.write('GET /slow HTTP/1.1\r\nHost: x\r\n');
        for (let i = 0; i < 30 && !conn.closed && conn.buf.length === 0; i++) {
            await sleep(50);
            await conn.write(`X-Drip-${i}: 1\r\n`);
        }
        assert.ok(await conn.waitClose(3000), 'the connection is closed');
        const ms = now() - t0;
        const r = parseResponse(conn.buf, { closed: true });
        assert.ok(r, `a response, got ${JSON.stringify(conn.text())}`);
        assertErrorShape(r, 408, null, 'slowloris');
        assert.ok(ms >= 550 && ms < 1500, `408 after the 600 ms header timeout (${ms} ms)`);
    } finally {
        conn.destroy();
    }
    const after = limitHits(await px.metrics(), 'client_header_timeout');
    assert.equal(after - before, 1);
});

test('a body that stops arriving gets 408 after timeouts.client_body', async () => {
    const before = limitHits(await px.metrics(), 'client_body_timeout');
    const conn = await RawConn.connect(px.port);
    try {
        await conn.write('POST /slowbody HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345');
        assert.ok(await conn.waitClose(3000));
        const r = parseResponse(conn.buf, { closed: true });
        assertErrorShape(r, 408, null, 'body timeout');
    } finally {
        conn.destroy();
    }
    const after = limitHits(await px.metrics(), 'client_body_timeout');
    assert.equal(after - before, 1);
});

test('limits.max_connections: one connection too many is refused', async (t) => {
    const p = await startProxy({ upstreams: [up], args: ['--set', 'limits.max_connections=2'] });
    const conns = [];
    t.after(async () => {
        conns.forEach((c) => c.destroy());
        await p.kill();
    });
    for (let i = 0; i < 2; i++) {
        const c = await RawConn.connect(p.port);
        conns.push(c);
        await c.write(buildRequest('GET', '/mc'));
        const r = await c.readResponse();
        assert.equal(r?.status, 200, `connection ${i}`);
    }
    const extra = await RawConn.connect(p.port);
    conns.push(extra);
    assert.ok(await extra.waitClose(3000), 'the extra connection is closed');
    const r = parseResponse(extra.buf, { closed: true });
    assert.ok(r, 'it is told why');
    assertErrorShape(r, 503, 'too_many_connections', 'max_connections');
    assert.equal(limitHits(await p.metrics(), 'max_connections'), 1);

    /* a slot freed is a slot usable */
    conns[0].destroy();
    await sleep(100);
    const again = await RawConn.connect(p.port);
    conns.push(again);
    await again.write(buildRequest('GET', '/mc'));
    assert.equal((await again.readResponse())?.status, 200);
    conns.forEach((c) => c.destroy());
    await p.stop();
});

/* ---- upstream failures --------------------------------------------------------------- */

test('a dead upstream: 502 with the OpenAI error shape', async (t) => {
    const dead = await freePort();
    const p = await startProxy({ upstreams: [dead] });
    t.after(() => p.kill());
    const r = await request(`${p.url}/v1/chat/completions`, {
        method: 'POST', body: { model: 'm', messages: [] }, headers: { 'x-request-id': 'dead-1' },
    });
    assertErrorShape(r, 502, 'upstream_connect_failed', 'dead upstream');
    const rec = (await p.waitLogs(1)).find((l) => l.request_id === 'dead-1');
    assert.equal(rec.status, 502);
    assert.equal(rec.error, 'upstream_connect_failed');
    assert.equal(rec.upstream, `127.0.0.1:${dead}`);
    await p.stop();
});

test('an upstream that never answers: 504 after timeouts.response_header', async (t) => {
    const silent = await startRawUpstream(() => {});
    const p = await startProxy({
        upstreams: [silent], args: ['--set', 'timeouts.response_header=500ms'],
    });
    t.after(async () => {
        await p.kill();
        await silent.close();
    });
    const t0 = now();
    const r = await request(`${p.url}/v1/models`, { headers: { 'x-request-id': 'silent-1' } });
    const ms = now() - t0;
    assertErrorShape(r, 504, 'upstream_timeout', 'silent upstream');
    assert.ok(ms >= 450 && ms < 2000, `after about 500 ms (${ms} ms)`);
    assert.equal(limitHits(await p.metrics(), 'response_header_timeout'), 1);
    const rec = (await p.waitLogs(1)).find((l) => l.request_id === 'silent-1');
    assert.equal(rec.status, 504);
    assert.equal(rec.error, 'upstream_timeout');
    assert.ok(silent.conns.length >= 1, 'the request did reach it');
    await p.stop();
    await silent.close();
});

test('malformed upstream responses: 502', async (t) => {
    const shapes = [
        'NOT HTTP AT ALL\r\n\r\n',
        'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n',
        'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
        /* llhttp frames these by Content-Length: a Transfer-Encoding it does not see as one */
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2\r\n\r\nok',
        'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding:\r\n\r\nok',
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok',
        'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok',
        'HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok',
        'HTTP/1.1 200 OK\r\nBad Header\r\n\r\n',
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    ];
    let which = 0;
    const raw = await startRawUpstream((sock) => {
        const shape = shapes[which];
        sock.once('data', () => sock.end(shape));
    });
    const p = await startProxy({ upstreams: [raw], args: ['--set', 'health.fails=1000'] });
    t.after(async () => {
        await p.kill();
        await raw.close();
    });
    for (which = 0; which < shapes.length; which++) {
        const what = JSON.stringify(shapes[which].slice(0, 40));
        const r = await request(`${p.url}/m${which}`);
        if (which === shapes.length - 1) {
            /* the head was fine: the client got it, then a cut body */
            assert.equal(r.status, 200, what);
            assert.equal(r.aborted, true, what);
            continue;
        }
        assertErrorShape(r, 502, 'upstream_bad_response', what);
    }
    await p.stop();
    await raw.close();
});

test('timeouts.stream_idle: an upstream stalling mid-body truncates the response', async (t) => {
    const raw = await startRawUpstream((sock) => {
        sock.once('data', () => sock.write('HTTP/1.1 200 OK\r\n' +
            'Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n' +
            'f\r\ndata: {"a":1}\n\n\r\n'));
    });
    const p = await startProxy({ upstreams: [raw], args: ['--set', 'timeouts.stream_idle=500ms'] });
    t.after(async () => {
        await p.kill();
        await raw.close();
    });
    const conn = await RawConn.connect(p.port);
    const t0 = now();
    await conn.write(buildRequest('GET', '/stall', { headers: { 'x-request-id': 'stall-1' } }));
    assert.ok(await conn.waitClose(3000), 'the proxy closes the client connection');
    const ms = now() - t0;
    const r = parseResponse(conn.buf, { closed: true });
    conn.destroy();
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, 'no terminal chunk');
    assert.equal(r.body.toString(), 'data: {"a":1}\n\n');
    assert.ok(ms >= 450 && ms < 2000, `cut after about 500 ms (${ms} ms)`);
    assert.equal(limitHits(await p.metrics(), 'stream_idle_timeout'), 1);
    const rec = (await p.waitLogs(1)).find((l) => l.request_id === 'stall-1');
    assert.equal(rec.error, 'upstream_timeout');
    await p.stop();
    await raw.close();
});

test('a stream longer than timeouts.stream_idle whose tokens keep flowing is not cut',
    async (t) => {
        const sim = await startSim(['--itl-ms', '100', '--tokens', '20']);
        const p = await startProxy({ upstreams: [sim],
            args: ['--set', 'timeouts.stream_idle=500ms'] });
        t.after(() => Promise.all([p.kill(), sim.kill()]));
        const r = await request(`${p.url}/v1/chat/completions`, {
            method: 'POST',
            body: { model: 'm', messages: [{ role: 'user', content: 'long' }], stream: true },
        });
        assert.equal(r.status, 200);
        assert.equal(r.aborted, false);
        assert.ok(r.tEnd > 1500, `the stream lasted ${r.tEnd} ms`);
        assert.equal(sseData(r.body).at(-1), '[DONE]');
        assert.equal(limitHits(await p.metrics(), 'stream_idle_timeout'), 0);
        await p.stop();
        await sim.stop();
    });
