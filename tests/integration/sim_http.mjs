/*
 * tests/integration/sim_http.mjs: the simulator's HTTP/1.1 handling seen
 * through raw sockets and curl (keep-alive, pipelining, chunked request
 * bodies, malformed requests, error replies, size limits), its /metrics
 * exposition checked by promtool, the /sim/stats and /sim/requests
 * introspection endpoints, and accounting of clients that abort mid-stream.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
    startSim, withSim, stopAll, RawConn, buildRequest, rawExchange,
    parseResponses, request, postJSON, getJSON, curl, promtoolCheck, parseMetrics, metricSum,
    waitUntil, sleep,
} from './lib/harness.mjs';

let sim;

before(async () => {
    sim = await startSim(['--ttft-ms', '30', '--slow-prompt', 'SLOWPIPE', '--slow-factor', '5']);
});

after(stopAll);

const chat = (content, extra = {}) => ({
    model: 'm', messages: [{ role: 'user', content }], ...extra,
});

function assertBadRequest(r, what) {
    assert.equal(r.status, 400, `${what}: status ${r.status} body ${r.body}`);
    assert.match(r.headers['content-type'] ?? '', /application\/json/, what);
    const j = JSON.parse(r.body);
    assert.equal(j.object, 'error', what);
    assert.equal(typeof j.message, 'string', what);
    assert.ok(j.message.length > 0, what);
    assert.equal(j.type, 'BadRequestError', what);
    assert.equal(j.param, null, what);
    assert.equal(j.code, 400, what);
}

test('GET /health is 200', async () => {
    const r = await request(`${sim.url}/health`);
    assert.equal(r.status, 200);
});

test('unknown path is 404', async () => {
    const a = await request(`${sim.url}/no/such/path`);
    assert.equal(a.status, 404);
    const b = await postJSON(`${sim.url}/v1/nothing-here`, { x: 1 });
    assert.equal(b.status, 404);
});

test('broken JSON body is a 400 with the error shape', async () => {
    for (const p of ['/v1/chat/completions', '/v1/completions', '/v1/embeddings']) {
        const r = await request(`${sim.url}${p}`, { method: 'POST', body: '{"model": "m", ' });
        assertBadRequest(r, p);
    }
});

test('a non-object JSON body is a 400', async () => {
    for (const body of ['[1, 2, 3]', '"just a string"', '42', 'null']) {
        const r = await request(`${sim.url}/v1/chat/completions`, { method: 'POST', body });
        assertBadRequest(r, body);
    }
});

test('missing messages / prompt is a 400', async () => {
    assertBadRequest(await postJSON(`${sim.url}/v1/chat/completions`, { model: 'm' }),
        'chat without messages');
    assertBadRequest(await postJSON(`${sim.url}/v1/completions`, { model: 'm' }),
        'completion without prompt');
});

const BIG = 8 * 1024 * 1024 + 1;

test('a declared Content-Length over 8 MiB is refused with 413', async () => {
    const conn = await RawConn.connect(sim.port);
    try {
        await conn.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${BIG}\r\n\r\n`);
        const res = await conn.readResponse({ timeoutMs: 3000 });
        assert.ok(res, `a response arrived: ${JSON.stringify(conn.text().slice(0, 200))}`);
        assert.equal(res.status, 413);
    } finally {
        conn.destroy();
    }
});

test('a chunked body growing over 8 MiB is refused with 413', async () => {
    const conn = await RawConn.connect(sim.port);
    try {
        await conn.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
            'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
        const piece = Buffer.concat([Buffer.from('10000\r\n'), Buffer.alloc(0x10000, 0x20),
            Buffer.from('\r\n')]);
        let sent = 0;
        while (sent <= BIG && conn.buf.length === 0 && !conn.closed) {
            if (!(await conn.write(piece))) {
                break;
            }
            sent += 0x10000;
        }
        const res = await conn.readResponse({ timeoutMs: 3000 });
        assert.ok(res, `a response arrived after ${sent} bytes: ` +
            `${JSON.stringify(conn.text().slice(0, 200))} (${conn.error?.code ?? 'no error'})`);
        assert.equal(res.status, 413);
    } finally {
        conn.destroy();
    }
});

test('the 413 reaches a client that sent its whole oversized body at once', async () => {
    const conn = await RawConn.connect(sim.port);
    try {
        await conn.write(Buffer.concat([Buffer.from('POST /v1/chat/completions HTTP/1.1\r\n' +
            `Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${BIG}` +
            '\r\n\r\n'), Buffer.alloc(BIG, 0x20)]));
        const res = await conn.readResponse({ timeoutMs: 3000 });
        assert.ok(res, `a response arrived: ${JSON.stringify(conn.text().slice(0, 200))} ` +
            `(${conn.error?.code ?? 'no error'})`);
        assert.equal(res.status, 413);
    } finally {
        conn.destroy();
    }
});

test('a 1 MiB body is accepted', async () => {
    const r = await postJSON(`${sim.url}/v1/chat/completions`,
        chat('x'.repeat(1024 * 1024), { max_tokens: 2 }));
    assert.equal(r.status, 200);
    assert.equal(r.json.usage.completion_tokens, 2);
});

test('malformed HTTP is answered 400 and the connection closed', async () => {
    for (const junk of ['THIS IS NOT HTTP\r\n\r\n',
        'GET /health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n',
        'GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n']) {
        const r = await rawExchange(sim.port, junk, { timeoutMs: 3000 });
        assert.match(r.text, /^HTTP\/1\.1 400 /, `reply to ${JSON.stringify(junk)}: ` +
            JSON.stringify(r.text.slice(0, 100)));
        assert.equal(r.closed, true, `connection closed after ${JSON.stringify(junk)}`);
    }
});

test('keep-alive: several requests on one connection', async () => {
    const conn = await RawConn.connect(sim.port);
    try {
        await conn.write(buildRequest('GET', '/health'));
        const a = await conn.readResponse();
        assert.ok(a && a.status === 200);
        await conn.write(buildRequest('POST', '/v1/chat/completions',
            { body: chat('keep alive', { max_tokens: 2 }) }));
        const b = await conn.readResponse();
        assert.ok(b && b.status === 200);
        assert.equal(JSON.parse(b.body).usage.completion_tokens, 2);
        await conn.write(buildRequest('POST', '/v1/chat/completions',
            { body: chat('keep alive stream', { max_tokens: 2, stream: true }) }));
        const c = await conn.readResponse();
        assert.ok(c && c.status === 200 && c.complete);
        assert.match(c.body.toString(), /data: \[DONE\]/);
        await conn.write(buildRequest('GET', '/v1/models'));
        const d = await conn.readResponse();
        assert.ok(d && d.status === 200);
        assert.equal(conn.closed, false, 'connection still open');
    } finally {
        conn.destroy();
    }
});

test('curl --http1.1 reuses the connection for two URLs', async () => {
    const r = await curl(['-sv', '--http1.1', '-o', '/dev/null', '-o', '/dev/null',
        `${sim.url}/health`, `${sim.url}/v1/models`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /Re-using existing connection/i);
    assert.equal((r.stderr.match(/^< HTTP\/1\.1 200/gm) || []).length, 2);
});

test('pipelining: two requests in one write are answered in order', async () => {
    const first = buildRequest('POST', '/v1/chat/completions',
        { body: chat('SLOWPIPE first', { max_tokens: 2 }) });
    const second = buildRequest('POST', '/v1/chat/completions',
        { body: chat('fast second', { max_tokens: 3 }) });
    const third = buildRequest('GET', '/health');
    const conn = await RawConn.connect(sim.port);
    try {
        await conn.write(Buffer.concat([first, second, third]));
        const ok = await conn.waitFor(() => parseResponses(conn.buf).length >= 3, 5000);
        const rs = parseResponses(conn.buf);
        assert.ok(ok, `three responses, got ${rs.length}`);
        assert.equal(rs[0].status, 200);
        assert.equal(rs[1].status, 200);
        assert.equal(rs[2].status, 200);
        assert.equal(JSON.parse(rs[0].body).usage.completion_tokens, 2, 'first answer first');
        assert.equal(JSON.parse(rs[1].body).usage.completion_tokens, 3);
    } finally {
        conn.destroy();
    }
});

test('chunked request body is accepted', async () => {
    const json = JSON.stringify(chat('chunked upload', { max_tokens: 4 }));
    const parts = [json.slice(0, 7), json.slice(7, 20), json.slice(20)];
    const head = 'POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n';
    const conn = await RawConn.connect(sim.port);
    try {
        await conn.write(head);
        for (const p of parts) {
            await sleep(10);
            await conn.write(`${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`);
        }
        await conn.write('0\r\n\r\n');
        const res = await conn.readResponse();
        assert.ok(res, conn.text());
        assert.equal(res.status, 200, res.body.toString());
        assert.equal(JSON.parse(res.body).usage.completion_tokens, 4);
    } finally {
        conn.destroy();
    }
});

test('/metrics: vLLM metrics, promtool clean, counters follow traffic', async () => {
    await withSim([], async (s) => {
        let prompt = 0;
        for (let i = 0; i < 3; i++) {
            const r = await postJSON(`${s.url}/v1/chat/completions`,
                chat(`metrics ${i}`, { max_tokens: 4 }));
            prompt += r.json.usage.prompt_tokens;
        }
        const m = await request(`${s.url}/metrics`);
        assert.equal(m.status, 200);
        assert.match(m.headers['content-type'] ?? '', /^text\/plain/);
        const pc = await promtoolCheck(m.body);
        assert.ok(pc.code === 0 || (pc.code === 3 && pc.errors.length === 0),
            `promtool exit ${pc.code}:\n${pc.problems.join('\n')}`);
        const samples = parseMetrics(m.body);
        for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting',
            'vllm:kv_cache_usage_perc', 'vllm:prompt_tokens_total',
            'vllm:generation_tokens_total', 'vllm:request_success_total',
            'vllm:time_to_first_token_seconds_bucket', 'vllm:time_to_first_token_seconds_sum',
            'vllm:time_to_first_token_seconds_count']) {
            assert.ok(samples.some((x) => x.name === name), `${name} present`);
        }
        assert.match(m.body, /^# TYPE vllm:time_to_first_token_seconds histogram$/m);
        assert.match(m.body, /^# TYPE vllm:num_requests_running gauge$/m);
        assert.match(m.body, /^# TYPE vllm:generation_tokens_total counter$|^# TYPE vllm:generation_tokens counter$/m);
        assert.equal(metricSum(samples, 'vllm:generation_tokens_total'), 12);
        assert.equal(metricSum(samples, 'vllm:prompt_tokens_total'), prompt);
        assert.equal(metricSum(samples, 'vllm:request_success_total'), 3);
        assert.equal(metricSum(samples, 'vllm:num_requests_running'), 0);
        assert.equal(metricSum(samples, 'vllm:num_requests_waiting'), 0);
        assert.equal(metricSum(samples, 'vllm:time_to_first_token_seconds_count'), 3);
        const inf = samples.filter((x) => x.name === 'vllm:time_to_first_token_seconds_bucket' &&
            x.labels.le === '+Inf');
        assert.equal(inf.reduce((a, x) => a + x.value, 0), 3, '+Inf bucket equals count');
        const kv = metricSum(samples, 'vllm:kv_cache_usage_perc');
        assert.ok(kv >= 0 && kv <= 1, `kv_cache_usage_perc ${kv}`);
    });
});

test('/sim/stats reports the request counters', async () => {
    await withSim([], async (s) => {
        const st0 = await getJSON(`${s.url}/sim/stats`);
        assert.equal(st0.status, 200);
        for (const k of ['requests', 'completed', 'aborted', 'running', 'waiting',
            'max_running', 'errors_injected']) {
            assert.equal(typeof st0.json[k], 'number', `${k} is a number`);
            assert.ok(Number.isInteger(st0.json[k]) && st0.json[k] >= 0, k);
        }
        assert.equal(st0.json.completed, 0);
        for (let i = 0; i < 3; i++) {
            await postJSON(`${s.url}/v1/completions`, { model: 'm', prompt: `p${i}` });
        }
        const st = (await getJSON(`${s.url}/sim/stats`)).json;
        assert.equal(st.completed, 3);
        assert.ok(st.requests >= 3);
        assert.equal(st.running, 0);
        assert.equal(st.waiting, 0);
        assert.equal(st.aborted, 0);
        assert.equal(st.errors_injected, 0);
        assert.equal(st.max_running, 1);
    });
});

test('/sim/requests shows the heads of recent requests (at most 64)', async () => {
    await withSim([], async (s) => {
        await postJSON(`${s.url}/v1/chat/completions`, chat('probe', { max_tokens: 1 }),
            { headers: { 'X-Tap-Probe': 'Probe-Value-123', traceparent: 'abc' } });
        const r = await getJSON(`${s.url}/sim/requests`);
        assert.equal(r.status, 200);
        assert.ok(Array.isArray(r.json));
        const hit = r.json.find((h) => h.headers?.['x-tap-probe'] === 'Probe-Value-123');
        assert.ok(hit, `probe header recorded: ${r.body.slice(0, 400)}`);
        assert.equal(hit.method, 'POST');
        assert.equal(hit.path, '/v1/chat/completions');
        assert.equal(hit.headers.traceparent, 'abc');
        assert.ok(!('X-Tap-Probe' in hit.headers), 'header names are lowercased');

        const conn = await RawConn.connect(s.port);
        for (let i = 0; i < 70; i++) {
            await conn.write(buildRequest('GET', `/health?n=${i}`));
            assert.ok(await conn.readResponse());
        }
        conn.destroy();
        const r2 = await getJSON(`${s.url}/sim/requests`);
        assert.equal(r2.json.length, 64);
        assert.ok(!r2.json.some((h) => h.headers?.['x-tap-probe']), 'old heads dropped');
        assert.ok(r2.json.some((h) => h.path === '/health?n=69' || h.path === '/health'));
    });
});

test('a client that disconnects mid-stream is counted as aborted', async () => {
    await withSim(['--itl-ms', '50', '--tokens', '40'], async (s) => {
        const conn = await RawConn.connect(s.port);
        await conn.write(buildRequest('POST', '/v1/chat/completions',
            { body: chat('abandon me', { stream: true }) }));
        const got = await conn.waitFor(() => /data: \{/.test(conn.text()), 3000);
        assert.ok(got, 'stream started');
        conn.destroy();
        const st = await waitUntil(async () => {
            const j = (await getJSON(`${s.url}/sim/stats`)).json;
            return j.aborted >= 1 && j.running === 0 ? j : null;
        }, { timeoutMs: 3000 });
        assert.ok(st, 'aborted counted and nothing left running');
        assert.equal(st.aborted, 1);
        assert.equal(st.completed, 0);
    });
});

test('simulator exits 0 on SIGTERM', async () => {
    await sim.stop();
});

