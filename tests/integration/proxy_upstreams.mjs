/*
 * tests/integration/proxy_upstreams.mjs: several upstream servers behind one
 * infertap.  Round robin spreads requests evenly; least_request sends them
 * to the idle server; a dead server is ejected after health.fails
 * consecutive failures while requests keep succeeding on the others;
 * retries happen only for connect failures and are bounded by retries;
 * /readyz follows upstream health; pooled upstream connections are reused.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
    startSim, startProxy, startUpstream, startRawUpstream, stopAll, request, getJSON, freePort,
    sleep, waitUntil, metricValue,
} from './lib/harness.mjs';

after(stopAll);

const chat = (content, extra = {}) => ({
    model: 'm', messages: [{ role: 'user', content }], ...extra,
});

const stats = async (sim) => (await getJSON(`${sim.url}/sim/stats`)).json;

/* No active health check during the test (the first one runs at start). */
const NO_CHECKS = ['--set', 'health.interval=1h'];

test('round_robin spreads requests evenly', async (t) => {
    const sims = await Promise.all([0, 1, 2].map(() => startSim([])));
    const px = await startProxy({ upstreams: sims, args: ['--set', 'balance=round_robin'] });
    t.after(() => Promise.all([px.kill(), ...sims.map((s) => s.kill())]));

    for (let i = 0; i < 30; i++) {
        const r = await request(`${px.url}/v1/chat/completions`, {
            method: 'POST', body: chat(`rr ${i}`), headers: { 'x-request-id': `rr-${i}` },
        });
        assert.equal(r.status, 200);
    }
    for (const s of sims) {
        assert.equal((await stats(s)).requests, 10, `sim ${s.port} got a third`);
    }
    const logs = (await px.waitLogs(30)).filter((l) => l.request_id.startsWith('rr-'));
    const order = logs.map((l) => l.upstream);
    for (let i = 3; i < order.length; i++) {
        assert.equal(order[i], order[i - 3], 'a fixed rotation');
    }
    assert.equal(new Set(order.slice(0, 3)).size, 3);
    await px.stop();
    await Promise.all(sims.map((s) => s.stop()));
});

test('least_request prefers the idle server', async (t) => {
    const slow = ['--itl-ms', '50', '--tokens', '40'];
    const sims = await Promise.all([0, 1].map(() => startSim(slow)));
    const px = await startProxy({ upstreams: sims, args: ['--set', 'balance=least_request'] });
    t.after(() => Promise.all([px.kill(), ...sims.map((s) => s.kill())]));

    /* one long stream keeps a server busy */
    const long = request(`${px.url}/v1/chat/completions`, {
        method: 'POST', body: chat('long one', { stream: true }),
    });
    let busy;
    assert.ok(await waitUntil(async () => {
        for (const s of sims) {
            if ((await stats(s)).running === 1) {
                busy = s;
                return true;
            }
        }
        return false;
    }), 'the long stream is running on one server');
    const idle = sims.find((s) => s !== busy);

    for (let i = 0; i < 10; i++) {
        const r = await request(`${px.url}/v1/chat/completions`, {
            method: 'POST', body: chat(`short ${i}`, { max_tokens: 1 }),
        });
        assert.equal(r.status, 200);
    }
    assert.equal((await stats(busy)).requests, 1, 'nothing more went to the busy server');
    assert.equal((await stats(idle)).requests, 10, 'every short request went to the idle one');
    assert.equal((await long).status, 200);
    await px.stop();
    await Promise.all(sims.map((s) => s.stop()));
});

test('a dead server is ejected after health.fails failures; requests keep succeeding',
    async (t) => {
        const sims = await Promise.all([0, 1].map(() => startSim([])));
        const dead = await freePort();
        const deadName = `127.0.0.1:${dead}`;
        const px = await startProxy({
            upstreams: [sims[0], dead, sims[1]],
            args: ['--set', 'balance=round_robin', '--set', 'health.fails=3',
                '--set', 'health.backoff=60s', ...NO_CHECKS],
        });
        t.after(() => Promise.all([px.kill(), ...sims.map((s) => s.kill())]));

        for (let i = 0; i < 15; i++) {
            const r = await request(`${px.url}/v1/models`, {
                headers: { 'x-request-id': `ej-${i}` },
            });
            assert.equal(r.status, 200, `request ${i}`);
        }
        const logs = (await px.waitLogs(15)).filter((l) => l.request_id.startsWith('ej-'));
        assert.ok(logs.every((l) => l.status === 200 && l.upstream !== deadName
            && l.error === null));
        const retried = logs.filter((l) => l.retries > 0);
        assert.equal(retried.length, 3, 'the dead server was tried exactly health.fails times');
        assert.ok(retried.every((l) => l.retries === 1));

        const m = await px.metrics();
        assert.equal(metricValue(m, 'infertap_upstream_healthy', { upstream: deadName }), 0);
        for (const s of sims) {
            assert.equal(metricValue(m, 'infertap_upstream_healthy',
                { upstream: `127.0.0.1:${s.port}` }), 1);
        }
        assert.equal(metricValue(m, 'infertap_upstream_retries_total'), 3);
        assert.equal((await px.admin('/readyz')).status, 200, 'still ready');
        const total = (await stats(sims[0])).requests + (await stats(sims[1])).requests;
        assert.equal(total, 0, '/v1/models is not a generation request');
        await px.stop();
        await Promise.all(sims.map((s) => s.stop()));
    });

test('a connect failure is retried on another server, at most `retries` times', async (t) => {
    const sim = await startSim([]);
    const dead1 = await freePort();
    const dead2 = await freePort();
    const common = ['--set', 'balance=round_robin', '--set', 'health.fails=1000', ...NO_CHECKS];
    t.after(() => sim.kill());

    /* dead first, then the live one */
    let px = await startProxy({ upstreams: [dead1, sim], args: common });
    let r = await request(`${px.url}/v1/chat/completions`, {
        method: 'POST', body: chat('retry me'), headers: { 'x-request-id': 'rt-1' },
    });
    assert.equal(r.status, 200, 'the request with a body was retried');
    let rec = (await px.waitLogs(1)).find((l) => l.request_id === 'rt-1');
    assert.equal(rec.retries, 1);
    assert.equal(rec.upstream, `127.0.0.1:${sim.port}`);
    await px.stop();

    /* nothing alive: bounded */
    for (const n of [0, 1, 3]) {
        px = await startProxy({
            upstreams: [dead1, dead2], args: [...common, '--set', `retries=${n}`],
        });
        try {
            r = await request(`${px.url}/x`, { headers: { 'x-request-id': `rb-${n}` } });
            assert.equal(r.status, 502);
            rec = (await px.waitLogs(1)).find((l) => l.request_id === `rb-${n}`);
            assert.equal(rec.retries, n, `retries=${n}`);
            assert.equal(metricValue(await px.metrics(), 'infertap_upstream_retries_total'), n);
            await px.stop();
        } finally {
            await px.kill();
        }
    }
    await sim.stop();
});

test('no retry once the request may have been used: reset after sending, or a 5xx', async (t) => {
    const sim = await startSim([]);
    const reset = await startRawUpstream((sock) => {
        sock.once('data', () => setTimeout(() => sock.resetAndDestroy(), 20));
    });
    const failing = await startSim(['--error-rate', '1', '--error-kind', '500']);
    t.after(async () => {
        await Promise.all([sim.kill(), failing.kill()]);
        await reset.close();
    });
    const common = ['--set', 'balance=round_robin', '--set', 'health.fails=1000', ...NO_CHECKS];

    /* the first pick of a fresh proxy is the first server */
    let px;
    for (const [name, opts] of [['body', { method: 'POST', body: chat('reset me') }],
        ['nobody', { method: 'GET' }]])
    {
        px = await startProxy({ upstreams: [reset, sim], args: common });
        try {
            const r = await request(`${px.url}/v1/chat/completions`, {
                ...opts, headers: { 'x-request-id': `nr-${name}` },
            });
            assert.equal(r.status, 502, name);
            assert.equal(JSON.parse(r.body).error.code, 'upstream_bad_response');
            const rec = (await px.waitLogs(1)).find((l) => l.request_id === `nr-${name}`);
            assert.equal(rec.retries, 0, `${name}: not retried`);
            assert.equal(rec.upstream, `127.0.0.1:${reset.port}`);
            await px.stop();
        } finally {
            await px.kill();
        }
    }
    assert.equal(reset.conns.length, 2, 'both requests reached the resetting server');
    assert.equal((await stats(sim)).requests, 0, 'the other server never saw a retry');

    px = await startProxy({ upstreams: [failing, sim], args: common });
    try {
        const r = await request(`${px.url}/v1/chat/completions`, {
            method: 'POST', body: chat('5xx'),
        });
        assert.equal(r.status, 500, 'the upstream\'s 500 is passed on');
        assert.equal((await stats(sim)).requests, 0, 'and not retried elsewhere');
        await px.stop();
    } finally {
        await px.kill();
    }
    await sim.stop();
    await failing.stop();
    await reset.close();
});

test('/readyz: 200 while an upstream is healthy, 503 when none is', async (t) => {
    const sim = await startSim([]);
    const dead = await freePort();
    t.after(() => sim.kill());
    const common = ['--set', 'health.fails=1', '--set', 'health.backoff=60s', '--set',
        'retries=0', ...NO_CHECKS];

    let px = await startProxy({ upstreams: [sim, dead], args: common });
    assert.equal((await px.admin('/readyz')).status, 200);
    for (let i = 0; i < 4; i++) {
        await request(`${px.url}/v1/models`);
    }
    assert.equal(metricValue(await px.metrics(), 'infertap_upstream_healthy',
        { upstream: `127.0.0.1:${dead}` }), 0, 'the dead one is out');
    assert.equal((await px.admin('/readyz')).status, 200, 'one healthy upstream is enough');
    await px.stop();

    px = await startProxy({ upstreams: [dead], args: common });
    try {
        /* 502 when the request finds it dead, 503 when the first health
         * check (run at start) already did */
        const r = await request(`${px.url}/v1/models`);
        assert.ok([502, 503].includes(r.status), `status ${r.status}`);
        const rz = await px.admin('/readyz');
        assert.equal(rz.status, 503, 'no healthy upstream: not ready');
        const r2 = await request(`${px.url}/v1/models`);
        assert.equal(r2.status, 503);
        assert.equal(JSON.parse(r2.body).error.code, 'no_healthy_upstream');
        await px.stop();
    } finally {
        await px.kill();
    }
    await sim.stop();
});

test('/readyz follows active health checks without traffic', async (t) => {
    const port = await freePort();
    const px = await startProxy({
        upstreams: [port],
        args: ['--set', 'health.interval=200ms', '--set', 'health.fails=1',
            '--set', 'health.timeout=200ms'],
    });
    let up;
    t.after(async () => {
        await px.kill();
        await up?.close();
    });
    assert.ok(await waitUntil(async () => (await px.admin('/readyz')).status === 503,
        { timeoutMs: 2000 }), 'a dead upstream makes /readyz 503 with no request sent');

    /* the server comes up on that port: ready again */
    up = await startUpstream();
    await new Promise((resolve) => {
        up.server.close(() => up.server.listen(port, '127.0.0.1', resolve));
    });
    assert.ok(await waitUntil(async () => (await px.admin('/readyz')).status === 200,
        { timeoutMs: 3000 }), 'back to 200 once the upstream answers its checks');
    const r = await request(`${px.url}/back`);
    assert.equal(r.status, 200);
    await px.stop();
    await up.close();
});

test('upstream connections are pooled and reused', async (t) => {
    const up = await startUpstream();
    const px = await startProxy({ upstreams: [up] });
    const nopool = await startProxy({ upstreams: [up], args: ['--set', 'pool.max_idle=0'] });
    t.after(async () => {
        await Promise.all([px.kill(), nopool.kill()]);
        await up.close();
    });

    for (let i = 0; i < 20; i++) {
        const r = await request(`${px.url}/seq/${i}`, i % 2 ? { method: 'POST', body: 'b' } : {});
        assert.equal(r.status, 200);
    }
    assert.equal(up.requests.length, 20);
    assert.equal(up.connections, 1, 'sequential requests share one upstream connection');

    /* five at a time, four rounds: at most five connections */
    const c0 = up.connections;
    for (let round = 0; round < 4; round++) {
        const rs = await Promise.all([0, 1, 2, 3, 4].map((k) => request(`${px.url}/par/${k}`)));
        assert.ok(rs.every((r) => r.status === 200));
    }
    assert.ok(up.connections - c0 <= 5, `${up.connections - c0} new connections for 20 requests`);

    /* control: without a pool every request opens a connection */
    const c1 = up.connections;
    for (let i = 0; i < 5; i++) {
        assert.equal((await request(`${nopool.url}/np/${i}`)).status, 200);
    }
    assert.equal(up.connections - c1, 5);
    await px.stop();
    await nopool.stop();
    await up.close();
});

test('a pooled connection the upstream closed is not reused', async (t) => {
    /* answers, then closes the idle connection 100 ms later */
    const up = await startRawUpstream((sock) => {
        sock.on('data', () => {
            sock.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
            setTimeout(() => sock.end(), 100);
        });
    });
    const px = await startProxy({ upstreams: [up], args: NO_CHECKS });
    t.after(async () => {
        await px.kill();
        await up.close();
    });
    for (let i = 0; i < 6; i++) {
        const r = await request(`${px.url}/stale/${i}`,
            i % 2 ? { method: 'POST', body: `body ${i}` } : {});
        assert.equal(r.status, 200, `request ${i} after the upstream closed the idle connection`);
        await sleep(300);
    }
    assert.equal(up.conns.length, 6, 'a new connection each time');
    const logs = await px.waitLogs(6);
    assert.ok(logs.every((l) => l.retries === 0 && l.error === null),
        'found closed while idle, not by failing a request');
    await px.stop();
    await up.close();
});

test('a reused pooled connection does not keep the pool\'s idle timeout while it waits', async () => {
    /* pool.idle_timeout (300 ms) bounds the idle time in the pool only: a
     * request on a reused connection may wait longer than that for its answer */
    const up = await startUpstream((req, res, rec) => {
        const ms = rec.url === '/slow' ? 900 : 0;
        setTimeout(() => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ url: rec.url }));
        }, ms);
    });
    const px = await startProxy({ upstreams: [up], args: ['--set', 'pool.idle_timeout=300ms'] });
    try {
        assert.equal((await getJSON(`${px.url}/fast`)).status, 200);
        const r = await getJSON(`${px.url}/slow`);
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.deepEqual(r.json, { url: '/slow' });
        assert.equal(up.connections, 1, 'the second request reused the pooled connection');
    } finally {
        await px.stop();
        await up.close();
    }
});
