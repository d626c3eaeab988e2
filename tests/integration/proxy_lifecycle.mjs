/*
 * tests/integration/proxy_lifecycle.mjs: infertap's life as a process.
 * SIGTERM drains: /readyz turns 503, the listeners close, idle connections
 * go at once, a stream in flight finishes and the process exits 0;
 * timeouts.drain cuts what outlives it.  The admin server's /healthz and
 * /metrics (checked by promtool, nothing ignored).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
    startSim, startProxy, stopAll, request, RawConn, buildRequest, parseResponse, sseData,
    waitUntil, now, run, metricValue,
} from './lib/harness.mjs';

after(stopAll);

const chat = (content) => ({
    model: 'm', messages: [{ role: 'user', content }], stream: true,
});

/* 'refused' or 'open' for a new TCP connection to port. */
function tryConnect(port) {
    return new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => {
            s.destroy();
            resolve('open');
        });
        s.once('error', (e) => resolve(e.code === 'ECONNREFUSED' ? 'refused' : e.code));
    });
}

/* Start a stream through px and wait for its first event. */
async function streamStarted(px, id) {
    const conn = await RawConn.connect(px.port);
    await conn.write(buildRequest('POST', '/v1/chat/completions', {
        headers: { 'x-request-id': id }, body: chat(id),
    }));
    assert.ok(await conn.waitFor(() => conn.text().includes('data: '), 3000), 'the stream started');
    return conn;
}

test('SIGTERM drains: not ready, no new connections, the stream finishes, exit 0',
    async (t) => {
        const sim = await startSim(['--itl-ms', '100', '--tokens', '20']);
        const px = await startProxy({ upstreams: [sim], workers: 2 });
        t.after(() => Promise.all([px.kill(), sim.kill()]));
        assert.equal((await px.admin('/readyz')).status, 200);

        /* an idle keep-alive connection, and a stream in flight */
        const idle = await RawConn.connect(px.port);
        await idle.write(buildRequest('GET', '/v1/models'));
        assert.equal((await idle.readResponse())?.status, 200);
        const conn = await streamStarted(px, 'drain-1');

        const t0 = now();
        px.proc.kill('SIGTERM');
        assert.ok(await waitUntil(async () => (await px.admin('/readyz')).status === 503,
            { timeoutMs: 1000 }), '/readyz turns 503');
        assert.equal((await px.admin('/healthz')).status, 200, 'still alive while draining');
        assert.ok(await waitUntil(async () => (await tryConnect(px.port)) === 'refused',
            { timeoutMs: 1000 }), 'new connections are refused');
        assert.ok(await idle.waitClose(1000), 'the idle connection is closed at once');
        idle.destroy();

        assert.ok(await conn.waitClose(5000), 'the stream ends');
        const tEnd = now();
        const r = parseResponse(conn.buf, { closed: true });
        conn.destroy();
        assert.equal(r.status, 200);
        assert.equal(r.complete, true, 'the stream finished whole');
        assert.equal(sseData(r.body.toString()).at(-1), '[DONE]');
        assert.ok(tEnd - t0 > 1000, 'it was not cut short');

        const res = await px.waitExit({ timeoutMs: 5000 });
        assert.equal(res.code, 0);
        t.diagnostic(`exit ${(now() - tEnd).toFixed(0)} ms after the stream ended`);
        assert.ok(now() - tEnd < 1500, 'exits once nothing is in flight');
        const rec = px.logs().find((l) => l.request_id === 'drain-1');
        assert.equal(rec?.status, 200);
        assert.equal(rec.error, null);
        await sim.stop();
    });

test('timeouts.drain cuts a stream that outlives it; still exit 0', async (t) => {
    const sim = await startSim(['--itl-ms', '100', '--tokens', '60']);
    const px = await startProxy({ upstreams: [sim], args: ['--set', 'timeouts.drain=500ms'] });
    t.after(() => Promise.all([px.kill(), sim.kill()]));
    const conn = await streamStarted(px, 'drain-cut');
    const t0 = now();
    px.proc.kill('SIGTERM');
    assert.ok(await conn.waitClose(3000), 'the stream is cut');
    const ms = now() - t0;
    const r = parseResponse(conn.buf, { closed: true });
    conn.destroy();
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, 'no terminal chunk');
    assert.ok(ms >= 400 && ms < 2000, `cut at the drain timeout (${ms} ms)`);
    const res = await px.waitExit({ timeoutMs: 3000 });
    assert.equal(res.code, 0);
    const rec = px.logs().find((l) => l.request_id === 'drain-cut');
    assert.ok(rec, 'the cut exchange is logged');
    assert.equal(rec.error, 'drain_timeout');
    await sim.stop();
});

test('SIGTERM with nothing in flight exits at once', async () => {
    const sim = await startSim([]);
    const px = await startProxy({ upstreams: [sim] });
    try {
        assert.equal((await request(`${px.url}/v1/models`)).status, 200);
        const t0 = now();
        await px.stop();
        assert.ok(now() - t0 < 1000, `exit took ${now() - t0} ms`);
    } finally {
        await px.kill();
        await sim.stop();
    }
});

test('admin: /healthz, /readyz, and /metrics that promtool accepts', async (t) => {
    const sim = await startSim([]);
    const px = await startProxy({ upstreams: [sim] });
    t.after(() => Promise.all([px.kill(), sim.kill()]));

    const h = await px.admin('/healthz');
    assert.equal(h.status, 200);
    assert.equal((await px.admin('/readyz')).status, 200);

    /* some traffic, including a refused request, so counters move */
    for (let i = 0; i < 3; i++) {
        await request(`${px.url}/v1/models`);
    }
    const conn = await RawConn.connect(px.port);
    await conn.write('GET / HTTP/1.1\r\n\r\n');
    await conn.waitClose(2000);
    conn.destroy();

    const m = await px.admin('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.headers['content-type'] ?? '', /^text\/plain/);
    const pc = await run('promtool', ['check', 'metrics'], { input: m.body });
    assert.equal(pc.code, 0, `promtool: ${pc.stdout}${pc.stderr}`);
    assert.equal((pc.stdout + pc.stderr).trim(), '', 'promtool reports nothing');

    const samples = await px.metrics();
    assert.ok(metricValue(samples, 'infertap_requests_total', { code: '2xx' }) >= 3);
    assert.ok(metricValue(samples, 'infertap_requests_total', { code: '4xx' }) >= 1);
    assert.ok(metricValue(samples, 'infertap_connections_accepted_total') >= 4);

    assert.equal((await px.admin('/nope')).status, 404);
    assert.equal((await px.admin('/metrics', { method: 'POST', body: 'x' })).status, 405);
    await px.stop();
    await sim.stop();
});

test('admin_token: /metrics wants the bearer token; the probes stay open', async () => {
    const sim = await startSim([]);
    const px = await startProxy({ upstreams: [sim], args: ['--set', 'admin_token=s3cret'] });
    try {
        let r = await request(`${px.adminUrl}/metrics`);
        assert.equal(r.status, 401);
        assert.equal(JSON.parse(r.body).error.code, 'unauthorized');
        r = await request(`${px.adminUrl}/metrics`, { headers: { authorization: 'Bearer wrong!' } });
        assert.equal(r.status, 401);
        r = await request(`${px.adminUrl}/metrics`, { headers: { authorization: 'Bearer s3cret' } });
        assert.equal(r.status, 200);
        assert.match(r.body, /^# HELP infertap_/m);
        assert.equal((await request(`${px.adminUrl}/healthz`)).status, 200);
        assert.equal((await request(`${px.adminUrl}/readyz`)).status, 200);
    } finally {
        await px.stop();
        await sim.stop();
    }
});
