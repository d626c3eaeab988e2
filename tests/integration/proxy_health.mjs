/*
 * Active health checks: infertap asks each upstream for GET health.path every
 * health.interval; health.fails failed checks in a row (5xx, no answer)
 * take a server out of rotation and /readyz follows; one good check brings
 * it back.  A 404 means "alive, no health endpoint".
 */

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';

import { startProxy, stopAll, getJSON, request, waitUntil } from './lib/harness.mjs';

after(stopAll);

/* An upstream whose /health answers `health.status`; counts what it serves. */
function startUpstream(name) {
    return new Promise((resolve) => {
        const up = { name, status: 200, checks: 0, served: 0 };
        up.srv = http.createServer((req, res) => {
            if (req.url === '/health') {
                up.checks++;
                res.statusCode = up.status;
                res.end();
                return;
            }
            up.served++;
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({ name }));
        });
        up.srv.listen(0, '127.0.0.1', () => {
            up.port = up.srv.address().port;
            up.url = `http://127.0.0.1:${up.port}`;
            resolve(up);
        });
    });
}

/* infertap with fast health checks: every 100 ms, down after 2 failures. */
function startTap(upstreams, extra = []) {
    return startProxy({
        upstreams,
        args: ['--set', 'health.interval=100ms', '--set', 'health.timeout=200ms',
            '--set', 'health.fails=2', ...extra],
    });
}


/* Wait for fn() to hold, failing the test if it does not within 3 s. */
async function until(fn, what) {
    assert.ok(await waitUntil(fn, { timeoutMs: 3000 }), `timed out waiting for ${what}`);
}

async function readyz(tap) {
    return (await request(`${tap.adminUrl}/readyz`)).status;
}

test('a server failing its checks leaves rotation and comes back; /readyz follows', async () => {
    const a = await startUpstream('a');
    const b = await startUpstream('b');
    const tap = await startTap([a, b]);
    try {
        await until(() => a.checks >= 2 && b.checks >= 2, 'two checks of each server');
        assert.equal(await readyz(tap), 200);

        b.status = 503;
        await until(() => /upstream 127\.0\.0\.1:\d+ is down: status 503/.test(tap.stderr),
            'b marked down');
        const before = b.served;
        for (let i = 0; i < 10; i++) {
            const r = await getJSON(`${tap.url}/v1/models`);
            assert.equal(r.status, 200);
            assert.equal(r.json.name, 'a');
        }
        assert.equal(b.served, before, 'no request went to the server that is down');
        assert.equal(await readyz(tap), 200, 'one healthy server is enough to be ready');

        a.status = 500;
        await until(async () => (await readyz(tap)) === 503, '/readyz 503');
        const r = await getJSON(`${tap.url}/v1/models`);
        assert.equal(r.status, 503);
        assert.equal(r.json.error.code, 'no_healthy_upstream');

        a.status = 200;
        b.status = 200;
        await until(async () => (await readyz(tap)) === 200, '/readyz 200');
        await until(() => (tap.stderr.match(/is up again/g) || []).length >= 2,
            'both servers up again');
        const seen = new Set();
        for (let i = 0; i < 6; i++) {
            seen.add((await getJSON(`${tap.url}/v1/models`)).json.name);
        }
        assert.deepEqual([...seen].sort(), ['a', 'b'], 'both servers serve again');

        const m = (await request(`${tap.adminUrl}/metrics`)).body;
        assert.match(m, /infertap_upstream_healthy\{upstream="127\.0\.0\.1:\d+"\} 1/);
    } finally {
        await tap.stop();
        a.srv.close();
        b.srv.close();
    }
});

test('a server that does not answer its checks within health.timeout is marked down', async () => {
    /* accepts connections and never answers */
    const mute = net.createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((r) => mute.on('listening', r));
    const up = { url: `http://127.0.0.1:${mute.address().port}` };
    const tap = await startTap([up]);
    try {
        await until(() => /is down: timed out/.test(tap.stderr), 'a timed-out check');
        assert.equal(await readyz(tap), 503);
    } finally {
        await tap.stop();
        mute.close();
    }
});

test('a 404 on the health path counts as alive (server without a health endpoint)', async () => {
    const a = await startUpstream('a');
    a.status = 404;
    const tap = await startTap([a]);
    try {
        await until(() => a.checks >= 4, 'four checks');
        assert.equal(await readyz(tap), 200);
        assert.doesNotMatch(tap.stderr, /is down/);
        assert.equal((await getJSON(`${tap.url}/v1/models`)).status, 200);
    } finally {
        await tap.stop();
        a.srv.close();
    }
});

test('health.path is configurable', async () => {
    const a = await startUpstream('a');
    const paths = [];
    a.srv.removeAllListeners('request');
    a.srv.on('request', (req, res) => {
        paths.push(req.url);
        res.end();
    });
    const tap = await startTap([a], ['--set', 'health.path=/v2/health/ready']);
    try {
        await until(() => paths.length >= 2, 'two checks');
        assert.ok(paths.every((p) => p === '/v2/health/ready'), JSON.stringify(paths));
    } finally {
        await tap.stop();
        a.srv.close();
    }
});
