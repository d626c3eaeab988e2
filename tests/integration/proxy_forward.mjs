/*
 * tests/integration/proxy_forward.mjs: what infertap forwards and how.  The
 * openai SDK and curl through the proxy; response bodies identical to the
 * simulator's own (plain and SSE); HTTP/1.1 connection handling on the client
 * side (keep-alive, pipelining, HTTP/1.0, Expect: 100-continue, chunked
 * request bodies); the request head the upstream receives (hop-by-hop
 * headers gone, X-Forwarded-*, request id, W3C traceparent) and the access
 * log record of each exchange.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import OpenAI from 'openai';
import {
    startSim, startProxy, startUpstream, startRawUpstream, stopAll, request, postJSON, curl,
    RawConn, buildRequest, parseResponse, sseData, sleep, metricValue,
} from './lib/harness.mjs';

let sim;
let echo;
let px;
let pxEcho;

/*
 * The echo upstream answers with what it received (a body over 64 KiB only
 * by its length), /delay/N after N ms, everything else at once.
 */
function echoHandler(req, res, rec) {
    rec.done.then(async () => {
        const m = rec.url.match(/^\/delay\/(\d+)/);
        if (m) {
            await sleep(Number(m[1]));
        }
        const big = rec.body && rec.body.length > 65536;
        const body = JSON.stringify({
            method: rec.method, url: rec.url, httpVersion: rec.httpVersion,
            rawHeaders: rec.rawHeaders,
            body: big ? `${rec.body.length} bytes` : rec.body?.toString('latin1') ?? null,
        });
        res.writeHead(200, {
            'content-type': 'application/json', 'content-length': Buffer.byteLength(body),
        });
        res.end(rec.method === 'HEAD' ? undefined : body);
    });
}

before(async () => {
    sim = await startSim(['--model', 'fwd-model']);
    echo = await startUpstream(echoHandler);
    px = await startProxy({ upstreams: [sim] });
    pxEcho = await startProxy({ upstreams: [echo] });
});

after(async () => {
    try {
        await px?.stop();
        await pxEcho?.stop();
        await sim?.stop();
    } finally {
        await echo?.close();
        await stopAll();
    }
});

const msgs = (text) => [{ role: 'user', content: text }];

/* [[lowercase name, value], ...] from node's rawHeaders. */
function pairs(raw) {
    const out = [];
    for (let i = 0; i < raw.length; i += 2) {
        out.push([raw[i].toLowerCase(), raw[i + 1]]);
    }
    return out;
}

function values(raw, name) {
    return pairs(raw).filter(([k]) => k === name).map(([, v]) => v);
}

/* Ids and timestamps differ per request; everything else must not. */
function normalise(text) {
    return text.replace(/"id":"[^"]*"/g, '"id":"ID"').replace(/"created":\d+/g, '"created":0');
}

function findLog(h, id) {
    return h.logs().find((r) => r.request_id === id);
}

async function waitLog(h, id) {
    for (let i = 0; i < 200; i++) {
        const r = findLog(h, id);
        if (r) {
            return r;
        }
        await sleep(25);
    }
    throw new Error(`no access log record with request_id ${id}:\n${h.stdout}`);
}

/* ---- clients ------------------------------------------------------------------------- */

test('openai SDK through the proxy: models, chat, completions, embeddings', async () => {
    const via = new OpenAI({ baseURL: `${px.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10000 });
    const direct = new OpenAI({
        baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10000,
    });

    const models = await via.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['fwd-model']);

    const params = { model: 'fwd-model', messages: msgs('sdk through the proxy'), seed: 11 };
    const a = await via.chat.completions.create(params);
    const b = await direct.chat.completions.create(params);
    assert.equal(a.object, 'chat.completion');
    assert.ok(a.choices[0].message.content.length > 0);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    assert.deepEqual(a.usage, b.usage);

    const stream = await via.chat.completions.create({ ...params, stream: true });
    let text = '';
    let chunks = 0;
    for await (const c of stream) {
        chunks++;
        text += c.choices[0]?.delta?.content ?? '';
    }
    assert.ok(chunks > 2, `${chunks} chunks`);
    assert.equal(text, b.choices[0].message.content, 'streamed text equals the plain one');

    const cp = { model: 'fwd-model', prompt: 'complete me', seed: 5, max_tokens: 8 };
    const c1 = await via.completions.create(cp);
    const c2 = await direct.completions.create(cp);
    assert.equal(c1.choices[0].text, c2.choices[0].text);
    const cs = await via.completions.create({ ...cp, stream: true });
    let ctext = '';
    for await (const c of cs) {
        ctext += c.choices[0]?.text ?? '';
    }
    assert.equal(ctext, c2.choices[0].text);

    const e1 = await via.embeddings.create({ model: 'fwd-model', input: ['one', 'two'] });
    const e2 = await direct.embeddings.create({ model: 'fwd-model', input: ['one', 'two'] });
    assert.equal(e1.data.length, 2);
    assert.deepEqual(e1.data, e2.data);
});

test('response bodies are byte-identical through the proxy and direct', async () => {
    const cases = [
        ['/v1/chat/completions', { model: 'm', messages: msgs('bytes plain'), seed: 3 }],
        ['/v1/chat/completions', {
            model: 'm', messages: msgs('bytes sse'), seed: 3, stream: true,
            stream_options: { include_usage: true },
        }],
        ['/v1/completions', { model: 'm', prompt: 'bytes', seed: 9, logprobs: 2 }],
        ['/v1/completions', { model: 'm', prompt: 'bytes', seed: 9, stream: true }],
        ['/v1/embeddings', { model: 'm', input: 'bytes' }],
    ];
    for (const [p, body] of cases) {
        const what = `${p} stream=${!!body.stream}`;
        const v = await request(`${px.url}${p}`, { method: 'POST', body });
        const d = await request(`${sim.url}${p}`, { method: 'POST', body });
        assert.equal(v.status, 200, what);
        assert.equal(v.aborted, false, what);
        assert.equal(v.headers['content-type'], d.headers['content-type'], what);
        assert.ok(v.buf.length > 0, what);
        assert.equal(normalise(v.buf.toString('latin1')), normalise(d.buf.toString('latin1')),
            what);
        if (body.stream) {
            assert.equal(v.headers['transfer-encoding'], 'chunked', what);
            assert.equal(sseData(v.body).at(-1), '[DONE]', what);
        } else {
            assert.equal(v.headers['content-length'], String(v.buf.length), what);
        }
    }
});

test('curl through the proxy: plain and streamed chat', async () => {
    const body = JSON.stringify({ model: 'm', messages: msgs('curl'), seed: 1 });
    const r = await curl(['-sS', '-i', '-H', 'Content-Type: application/json', '-d', body,
        `${px.url}/v1/chat/completions`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 200 /);
    const j = JSON.parse(r.stdout.slice(r.stdout.indexOf('\r\n\r\n') + 4));
    assert.equal(j.object, 'chat.completion');

    const s = await curl(['-sSN', '-H', 'Content-Type: application/json', '-d',
        JSON.stringify({ model: 'm', messages: msgs('curl'), seed: 1, stream: true }),
        `${px.url}/v1/chat/completions`]);
    assert.equal(s.code, 0, s.stderr);
    const data = sseData(s.stdout);
    assert.equal(data.at(-1), '[DONE]');
    const text = data.slice(0, -1).map((d) => JSON.parse(d).choices[0]?.delta?.content ?? '')
        .join('');
    assert.equal(text, j.choices[0].message.content);
});

/* ---- client connections -------------------------------------------------------------- */

test('keep-alive: several requests on one client connection', async () => {
    const before = metricValue(await px.metrics(), 'infertap_connections_accepted_total');
    const conn = await RawConn.connect(px.port);
    try {
        for (let i = 0; i < 5; i++) {
            const req = i % 2
                ? buildRequest('GET', '/v1/models')
                : buildRequest('POST', '/v1/chat/completions', {
                    body: { model: 'm', messages: msgs(`ka ${i}`), stream: i === 2 },
                });
            await conn.write(req);
            const r = await conn.readResponse();
            assert.ok(r, `response ${i}`);
            assert.equal(r.status, 200, `response ${i}`);
            assert.equal(r.complete, true);
            assert.notEqual(r.headers.connection, 'close');
            assert.equal(conn.closed, false, `connection open after response ${i}`);
        }
    } finally {
        conn.destroy();
    }
    const afterN = metricValue(await px.metrics(), 'infertap_connections_accepted_total');
    assert.equal(afterN - before, 1, 'one connection accepted for five requests');
});

test('pipelined requests are answered in order', async () => {
    const conn = await RawConn.connect(pxEcho.port);
    try {
        const reqs = [
            buildRequest('GET', '/delay/300', { headers: { 'X-Request-Id': 'pipe-a' } }),
            buildRequest('POST', '/delay/0', {
                headers: { 'X-Request-Id': 'pipe-b' }, body: { n: 2 },
            }),
            buildRequest('GET', '/delay/100', { headers: { 'X-Request-Id': 'pipe-c' } }),
        ];
        await conn.write(Buffer.concat(reqs));
        const got = [];
        for (let i = 0; i < 3; i++) {
            const r = await conn.readResponse();
            assert.ok(r, `response ${i}: ${conn.text()}`);
            assert.equal(r.status, 200);
            got.push([r.headers['x-request-id'], JSON.parse(r.body.toString()).url]);
        }
        assert.deepEqual(got, [['pipe-a', '/delay/300'], ['pipe-b', '/delay/0'],
            ['pipe-c', '/delay/100']]);
        assert.equal(conn.closed, false);
    } finally {
        conn.destroy();
    }
});

test('a pipeline larger than the input high mark: every request answered, in order', async () => {
    /* the first answer is slow, so infertap stops reading at its input
     * limit and must start again once it has worked through the backlog */
    const conn = await RawConn.connect(pxEcho.port);
    const N = 400;
    const pad = 'x'.repeat(300);
    try {
        const reqs = [buildRequest('GET', '/delay/300', { headers: { 'X-Request-Id': 'big-0' } })];
        for (let i = 1; i < N; i++) {
            reqs.push(buildRequest('GET', `/delay/0?i=${i}`,
                { headers: { 'X-Request-Id': `big-${i}`, 'X-Pad': pad } }));
        }
        const all = Buffer.concat(reqs);
        assert.ok(all.length > 64 * 1024, `${all.length} bytes exceed the input high mark`);
        await conn.write(all);
        for (let i = 0; i < N; i++) {
            const r = await conn.readResponse({ timeoutMs: 5000 });
            assert.ok(r, `response ${i} of ${N}`);
            assert.equal(r.status, 200);
            assert.equal(r.headers['x-request-id'], `big-${i}`);
        }
    } finally {
        conn.destroy();
    }
});

test('a pipeline dribbled in pieces that cut heads and bodies: every answer whole, in order', async () => {
    /* each piece is its own read: what a read leaves unparsed (a partial
     * head, the start of the next request) must wait for the next one */
    const conn = await RawConn.connect(pxEcho.port);
    try {
        const bodies = ['{"a":1}', JSON.stringify({ pad: 'y'.repeat(200) }), '{}'];
        const reqs = bodies.map((b, i) => buildRequest('POST', `/delay/${i === 0 ? 50 : 0}`,
            { headers: { 'X-Request-Id': `drib-${i}`, 'Content-Type': 'application/json' },
              body: b }));
        const all = Buffer.concat(reqs);
        const cuts = [1, 5, 17, 2, 40, 3, 90, 7];
        for (let off = 0, k = 0; off < all.length; k++) {
            const n = Math.min(cuts[k % cuts.length], all.length - off);
            assert.ok(await conn.write(all.subarray(off, off + n)), `write at ${off}`);
            off += n;
            await sleep(2);
        }
        for (let i = 0; i < bodies.length; i++) {
            const r = await conn.readResponse({ timeoutMs: 5000 });
            assert.ok(r, `response ${i}: ${conn.text()}`);
            assert.equal(r.status, 200);
            assert.equal(r.headers['x-request-id'], `drib-${i}`);
            const echoed = JSON.parse(r.body.toString());
            assert.equal(echoed.body, bodies[i], `request ${i} reached the upstream whole`);
        }
        assert.equal(conn.closed, false);
    } finally {
        conn.destroy();
    }
});

test('HTTP/1.0 without keep-alive: a complete answer, then the connection closes', async () => {
    const conn = await RawConn.connect(px.port);
    try {
        await conn.write('GET /v1/models HTTP/1.0\r\n\r\n');
        assert.ok(await conn.waitClose(3000), 'the proxy closes the HTTP/1.0 connection');
        const r = parseResponse(conn.buf, { closed: true });
        assert.equal(r.status, 200);
        assert.equal(r.complete, true);
        assert.equal(r.headers['transfer-encoding'], undefined, 'no chunking for HTTP/1.0');
        assert.equal(JSON.parse(r.body.toString()).object, 'list');
    } finally {
        conn.destroy();
    }

    /* a stream (chunked upstream) is close-delimited for an HTTP/1.0 client */
    const body = JSON.stringify({ model: 'm', messages: msgs('ten'), stream: true });
    const c2 = await RawConn.connect(px.port);
    try {
        await c2.write(`POST /v1/chat/completions HTTP/1.0\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body}`);
        assert.ok(await c2.waitClose(3000));
        const r = parseResponse(c2.buf, { closed: true });
        assert.equal(r.status, 200);
        assert.equal(r.headers['transfer-encoding'], undefined);
        assert.equal(r.headers['content-length'], undefined);
        assert.equal(sseData(r.body.toString()).at(-1), '[DONE]');
    } finally {
        c2.destroy();
    }
});

test('HTTP/1.0 with Connection: keep-alive keeps the connection', async () => {
    const conn = await RawConn.connect(px.port);
    try {
        for (let i = 0; i < 2; i++) {
            await conn.write('GET /v1/models HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
            const r = await conn.readResponse();
            assert.ok(r, `response ${i}: ${conn.text()}`);
            assert.equal(r.status, 200);
            assert.match(r.headers.connection ?? '', /keep-alive/i);
            assert.ok(r.headers['content-length'], 'framed by Content-Length');
            assert.equal(conn.closed, false);
        }
    } finally {
        conn.destroy();
    }
});

test('Expect: 100-continue is answered before the body is sent', async () => {
    const body = JSON.stringify({ model: 'm', messages: msgs('expect') });
    const conn = await RawConn.connect(pxEcho.port);
    try {
        await conn.write(`POST /expect HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
            `Expect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`);
        const interim = await conn.waitFor(() => /^HTTP\/1\.1 100 [^\r]*\r\n\r\n/.test(conn.text()),
            3000);
        assert.ok(interim, `100 Continue first, got ${JSON.stringify(conn.text())}`);
        conn.buf = conn.buf.subarray(conn.text().indexOf('\r\n\r\n') + 4);
        await conn.write(body);
        const r = await conn.readResponse();
        assert.ok(r);
        assert.equal(r.status, 200);
        const seen = JSON.parse(r.body.toString());
        assert.equal(seen.body, body);
        assert.deepEqual(values(seen.rawHeaders, 'expect'), [], 'Expect is not forwarded');
    } finally {
        conn.destroy();
    }
});

test('a chunked request body is forwarded whole', async () => {
    const pieces = ['{"model":"m",', '"messages":[{"role":"user",', '"content":"chunked"}]}'];
    const conn = await RawConn.connect(pxEcho.port);
    try {
        await conn.write('POST /chunked HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
            'Transfer-Encoding: chunked\r\n\r\n');
        for (const p of pieces) {
            await sleep(30);
            await conn.write(`${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`);
        }
        await conn.write('0\r\n\r\n');
        const r = await conn.readResponse();
        assert.ok(r);
        assert.equal(r.status, 200);
        const seen = JSON.parse(r.body.toString());
        assert.equal(seen.body, pieces.join(''));
        assert.deepEqual(values(seen.rawHeaders, 'transfer-encoding'), ['chunked']);
        assert.deepEqual(values(seen.rawHeaders, 'content-length'), []);
    } finally {
        conn.destroy();
    }

    /* and the simulator understands what arrives */
    const c2 = await RawConn.connect(px.port);
    try {
        const b = pieces.join('');
        await c2.write('POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n' +
            'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
            `${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`);
        const r = await c2.readResponse();
        assert.equal(r.status, 200);
        assert.equal(JSON.parse(r.body.toString()).object, 'chat.completion');
    } finally {
        c2.destroy();
    }
});

/* ---- what the upstream receives ------------------------------------------------------ */

test('hop-by-hop request headers are removed, X-Forwarded-* added', async () => {
    const conn = await RawConn.connect(pxEcho.port);
    try {
        await conn.write('GET /hop?q=1 HTTP/1.1\r\nHost: api.example:8443\r\n' +
            'Connection: keep-alive, X-Hop-A, x-hop-b\r\n' +
            'X-Hop-A: 1\r\nX-Hop-B: 2\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n' +
            'Trailer: X-Sum\r\nProxy-Connection: keep-alive\r\n' +
            'Proxy-Authorization: Basic dXNlcjpwYXNz\r\nX-Keep: yes\r\n' +
            'Authorization: Bearer sk-test\r\n\r\n');
        const r = await conn.readResponse();
        assert.ok(r);
        assert.equal(r.status, 200);
        const seen = JSON.parse(r.body.toString());
        assert.equal(seen.url, '/hop?q=1', 'the target is forwarded with its query');
        const names = pairs(seen.rawHeaders).map(([k]) => k);
        for (const gone of ['connection', 'x-hop-a', 'x-hop-b', 'keep-alive', 'te', 'trailer',
            'proxy-connection', 'proxy-authorization'])
        {
            assert.ok(!names.includes(gone), `${gone} must not reach the upstream: ${names}`);
        }
        assert.deepEqual(values(seen.rawHeaders, 'x-keep'), ['yes']);
        assert.deepEqual(values(seen.rawHeaders, 'authorization'), ['Bearer sk-test']);
        assert.deepEqual(values(seen.rawHeaders, 'host'), ['api.example:8443']);
        assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-for'), ['127.0.0.1']);
        assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-proto'), ['http']);
        assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-host'), ['api.example:8443']);
    } finally {
        conn.destroy();
    }
});

test('X-Forwarded-For is appended to; X-Forwarded-Proto/-Host from a proxy in front are kept',
    async () => {
        const r = await request(`${pxEcho.url}/xff`, {
            headers: {
                'X-Forwarded-For': '203.0.113.7', 'X-Forwarded-Proto': 'https',
                'X-Forwarded-Host': 'front.example',
            },
        });
        const seen = JSON.parse(r.body);
        assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-for'), ['203.0.113.7, 127.0.0.1']);
        assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-proto'), ['https']);
        assert.deepEqual(values(seen.rawHeaders, 'x-forwarded-host'), ['front.example']);
    });

test('hop-by-hop response headers are removed', async () => {
    const raw = await startRawUpstream((sock) => {
        sock.once('data', () => {
            sock.write('HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Up-Hop\r\nX-Up-Hop: 1\r\n' +
                'Keep-Alive: timeout=5\r\nProxy-Authenticate: Basic realm="x"\r\n' +
                'X-Up-Keep: 1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok');
        });
    });
    const p = await startProxy({ upstreams: [raw] });
    try {
        const conn = await RawConn.connect(p.port);
        await conn.write(buildRequest('GET', '/'));
        const r = await conn.readResponse();
        conn.destroy();
        assert.ok(r);
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'ok');
        const names = r.rawHeaders.map(([k]) => k);
        for (const gone of ['x-up-hop', 'keep-alive', 'proxy-authenticate']) {
            assert.ok(!names.includes(gone), `${gone} must not reach the client: ${names}`);
        }
        assert.ok(!/x-up-hop/i.test(r.headers.connection ?? ''));
        assert.equal(r.headers['x-up-keep'], '1');
        await p.stop();
    } finally {
        await p.kill();
        await raw.close();
    }
});

test('x-request-id: kept when given, generated otherwise, echoed on the response', async () => {
    const given = await request(`${pxEcho.url}/rid`, {
        headers: { 'X-Request-Id': 'rid-given-1' },
    });
    assert.equal(given.headers['x-request-id'], 'rid-given-1');
    let seen = JSON.parse(given.body);
    assert.deepEqual(values(seen.rawHeaders, 'x-request-id'), ['rid-given-1']);
    assert.equal((await waitLog(pxEcho, 'rid-given-1')).path, '/rid');

    const ids = new Set();
    for (let i = 0; i < 3; i++) {
        const r = await request(`${pxEcho.url}/rid`);
        const id = r.headers['x-request-id'];
        assert.match(id ?? '', /^[0-9a-f]{32}$/, 'a generated id');
        seen = JSON.parse(r.body);
        assert.deepEqual(values(seen.rawHeaders, 'x-request-id'), [id], 'the upstream sees it');
        assert.equal((await waitLog(pxEcho, id)).request_id, id);
        ids.add(id);
    }
    assert.equal(ids.size, 3, 'each request gets its own id');

    /* an id that cannot be logged safely is replaced */
    const bad = await request(`${pxEcho.url}/rid`, { headers: { 'X-Request-Id': 'x"y' } });
    assert.match(bad.headers['x-request-id'] ?? '', /^[0-9a-f]{32}$/);

    /* the proxy's own error answers carry it too */
    const dead = await startProxy({ upstreams: ['http://127.0.0.1:1'] });
    try {
        const r = await request(`${dead.url}/x`, { headers: { 'X-Request-Id': 'rid-err' } });
        assert.equal(r.status, 502);
        assert.equal(r.headers['x-request-id'], 'rid-err');
        await dead.stop();
    } finally {
        await dead.kill();
    }
});

function parseTP(v) {
    const m = (v ?? '').match(/^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/);
    assert.ok(m, `a version-00 traceparent, got ${v}`);
    return { traceId: m[1], parentId: m[2], flags: m[3] };
}

test('traceparent: the trace continues, the upstream sees infertap\'s span as parent', async () => {
    const tid = '4bf92f3577b34da6a3ce929d0e0e4736';
    const pid = '00f067aa0ba902b7';
    for (const flags of ['01', '00']) {
        const rid = `tp-valid-${flags}`;
        const r = await request(`${pxEcho.url}/trace`, {
            headers: {
                traceparent: `00-${tid}-${pid}-${flags}`, tracestate: 'vendor=abc',
                'x-request-id': rid,
            },
        });
        const seen = JSON.parse(r.body);
        const tps = values(seen.rawHeaders, 'traceparent');
        assert.equal(tps.length, 1);
        const tp = parseTP(tps[0]);
        assert.equal(tp.traceId, tid, 'same trace id');
        assert.notEqual(tp.parentId, pid, 'a new parent id');
        assert.equal(tp.flags, flags, 'sampled flag kept');
        assert.deepEqual(values(seen.rawHeaders, 'tracestate'), ['vendor=abc']);
        const rec = await waitLog(pxEcho, rid);
        assert.equal(rec.trace_id, tid);
        assert.equal(rec.client_span_id, tp.parentId, 'the upstream\'s parent is the CLIENT span');
        assert.notEqual(rec.span_id, rec.client_span_id, 'the SERVER span is another');
        assert.equal(rec.parent_span_id, pid);
    }
});

test('traceparent: an invalid one starts a new trace', async () => {
    const tid = '4bf92f3577b34da6a3ce929d0e0e4736';
    const bad = [
        `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
        `00-${tid}-${'0'.repeat(16)}-01`,
        `00-${tid.toUpperCase()}-00f067aa0ba902b7-01`,
        `ff-${tid}-00f067aa0ba902b7-01`,
        `00-${tid}-00f067aa0ba902b7-01-extra`,
        'garbage',
    ];
    for (const [i, v] of bad.entries()) {
        const rid = `tp-bad-${i}`;
        const r = await request(`${pxEcho.url}/trace`, {
            headers: { traceparent: v, tracestate: 'vendor=abc', 'x-request-id': rid },
        });
        const seen = JSON.parse(r.body);
        const tps = values(seen.rawHeaders, 'traceparent');
        assert.equal(tps.length, 1, v);
        const tp = parseTP(tps[0]);
        assert.notEqual(tp.traceId, tid, `${v}: a new trace id`);
        assert.notEqual(tp.traceId.toLowerCase(), tid);
        assert.equal(tp.flags, '01', `${v}: sampled by default`);
        assert.deepEqual(values(seen.rawHeaders, 'tracestate'), [], `${v}: tracestate dropped`);
        const rec = await waitLog(pxEcho, rid);
        assert.equal(rec.trace_id, tp.traceId);
        assert.equal(rec.client_span_id, tp.parentId);
        assert.equal(rec.parent_span_id, null, v);
    }

    /* no traceparent at all: a new trace too */
    const r = await request(`${pxEcho.url}/trace`, { headers: { 'x-request-id': 'tp-none' } });
    const tp = parseTP(values(JSON.parse(r.body).rawHeaders, 'traceparent')[0]);
    const rec = await waitLog(pxEcho, 'tp-none');
    assert.equal(rec.trace_id, tp.traceId);
    assert.equal(rec.client_span_id, tp.parentId);
    assert.equal(rec.parent_span_id, null);
});

test('the access log has one complete record per exchange', async () => {
    const n0 = px.logs().length;
    const body = { model: 'm', messages: msgs('log record'), seed: 2 };
    const payload = JSON.stringify(body);
    const r = await postJSON(`${px.url}/v1/chat/completions?x=1`, body, {
        headers: { 'x-request-id': 'log-1' },
    });
    assert.equal(r.status, 200);
    const rec = await waitLog(px, 'log-1');
    assert.equal(px.logs().length, n0 + 1, 'exactly one record');

    const keys = ['ts', 'request_id', 'trace_id', 'span_id', 'parent_span_id', 'method', 'path',
        'status', 'upstream', 'bytes_in', 'bytes_out', 'retries', 'error', 'duration_ms',
        'upstream_ms', 'overhead_us'];
    for (const k of keys) {
        assert.ok(k in rec, `field ${k}`);
    }
    assert.match(rec.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(rec.ts) - Date.now()) < 60000, 'ts is now');
    assert.match(rec.trace_id, /^[0-9a-f]{32}$/);
    assert.match(rec.span_id, /^[0-9a-f]{16}$/);
    assert.equal(rec.parent_span_id, null);
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/v1/chat/completions', 'the path without the query');
    assert.equal(rec.status, 200);
    assert.equal(rec.upstream, `127.0.0.1:${sim.port}`);
    assert.equal(rec.bytes_in, Buffer.byteLength(payload));
    assert.equal(rec.bytes_out, r.buf.length);
    assert.equal(rec.retries, 0);
    assert.equal(rec.error, null);
    for (const k of ['duration_ms', 'upstream_ms', 'overhead_us']) {
        assert.equal(typeof rec[k], 'number', k);
        assert.ok(rec[k] >= 0, k);
    }
    assert.ok(rec.upstream_ms <= rec.duration_ms);
    assert.ok(rec.duration_ms < 5000);
    /* the GenAI fields, filled by the openai filter (tests/integration/filters_*.mjs check
     * their values against the simulator) */
    const answer = r.json;
    assert.equal(rec.model, 'm');
    assert.equal(rec.stream, false);
    assert.equal(rec.prompt_tokens, answer.usage.prompt_tokens);
    assert.equal(rec.completion_tokens, answer.usage.completion_tokens);
    assert.equal(rec.tokens_estimated, false);
    assert.equal(rec.finish_reason, answer.choices[0].finish_reason);
    for (const k of ['prompt_hash', 'params_hash', 'completion_hash']) {
        assert.match(rec[k], /^[0-9a-f]{16}$/, k);
    }
    for (const k of ['ttft_ms', 'tpot_ms', 'confidence']) {
        assert.ok(k in rec, `GenAI field ${k} present`);
        assert.equal(rec[k], null, `${k}: not known for a plain answer without logprobs`);
    }
});

/* ---- more framing -------------------------------------------------------------------- */

test('Connection: close from the client is honoured; nothing after it is read', async () => {
    const n = echo.requests.length;
    const conn = await RawConn.connect(pxEcho.port);
    try {
        await conn.write(Buffer.concat([
            buildRequest('GET', '/close-1', { headers: { Connection: 'close' } }),
            buildRequest('GET', '/close-2'),
        ]));
        assert.ok(await conn.waitClose(3000), 'the proxy closes the connection');
        const rs = [];
        let rest = conn.buf;
        while (rest.length > 0) {
            const r = parseResponse(rest, { closed: true });
            rs.push(r);
            rest = rest.subarray(r.length);
        }
        assert.equal(rs.length, 1, 'one response only');
        assert.equal(rs[0].status, 200);
        assert.equal(rs[0].headers.connection, 'close');
        await sleep(50);
        assert.deepEqual(echo.requests.slice(n).map((r) => r.url), ['/close-1']);
    } finally {
        conn.destroy();
    }
});

test('HEAD: the head only, and the connection stays usable', async () => {
    const conn = await RawConn.connect(pxEcho.port);
    try {
        await conn.write(buildRequest('HEAD', '/head'));
        const h = await conn.readResponse({ head: true });
        assert.equal(h?.status, 200);
        assert.ok(Number(h.headers['content-length']) > 0, 'the length of what GET would send');
        await sleep(100);
        assert.equal(conn.buf.length, 0, 'no body bytes after a HEAD answer');
        await conn.write(buildRequest('GET', '/after-head'));
        const g = await conn.readResponse();
        assert.equal(g?.status, 200);
        assert.equal(JSON.parse(g.body.toString()).url, '/after-head');
    } finally {
        conn.destroy();
    }
});

test('upstream framing is regenerated: close-delimited body, interim 100, HTTP/1.0 server',
    async (t) => {
        const answers = {
            '/eof': 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n' +
                'close-delimited body',
            '/interim': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n' +
                '\r\nfinal',
            '/ten': 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfrom an old server',
        };
        const raw = await startRawUpstream((sock) => {
            sock.once('data', (d) => {
                const target = d.toString('latin1').split(' ')[1];
                sock.end(answers[target]);
            });
        });
        const p = await startProxy({ upstreams: [raw] });
        t.after(async () => {
            await p.kill();
            await raw.close();
        });
        const conn = await RawConn.connect(p.port);
        try {
            for (const [target, body] of [['/eof', 'close-delimited body'], ['/interim', 'final'],
                ['/ten', 'from an old server']])
            {
                await conn.write(buildRequest('GET', target));
                const r = await conn.readResponse();
                assert.ok(r, `${target}: ${conn.text()}`);
                assert.equal(r.status, 200, target);
                assert.equal(r.complete, true, target);
                assert.equal(r.body.toString(), body, target);
                assert.equal(conn.closed, false, `${target}: the client connection stays open`);
            }
        } finally {
            conn.destroy();
        }
        await p.stop();
        await raw.close();
    });

test('a large request body streams through intact', async () => {
    const big = crypto.randomBytes(6 * 1024 * 1024);
    const n = echo.requests.length;
    const r = await request(`${pxEcho.url}/upload`, {
        method: 'POST', body: big, headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(r.status, 200);
    const rec = echo.requests[n];
    await rec.done;
    assert.equal(rec.body.length, big.length);
    assert.ok(rec.body.equals(big), 'byte for byte');
});

test('an absolute-form request target is accepted (RFC 9112 3.2.2)', async () => {
    const conn = await RawConn.connect(pxEcho.port);
    try {
        await conn.write('GET http://api.example/abs?x=1 HTTP/1.1\r\nHost: other\r\n\r\n');
        const r = await conn.readResponse();
        assert.equal(r?.status, 200);
        const seen = JSON.parse(r.body.toString());
        assert.equal(seen.url, '/abs?x=1');
        assert.deepEqual(values(seen.rawHeaders, 'host'), ['api.example']);
    } finally {
        conn.destroy();
    }
});
