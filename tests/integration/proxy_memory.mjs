/*
 * tests/integration/proxy_memory.mjs: infertap's resident memory, idle and
 * holding 10,000 idle keep-alive client connections (each of which has
 * carried one request).  Both figures are printed as TAP diagnostics.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import {
    startSim, startProxy, stopAll, RawConn, buildRequest, sleep, waitUntil, now, metricValue,
    SANITIZED,
} from './lib/harness.mjs';

after(stopAll);

const MB = 1024 * 1024;
const CONNS = 10000;

function nofile(pid = 'self') {
    const m = fs.readFileSync(`/proc/${pid}/limits`, 'utf8').match(/^Max open files\s+(\S+)/m);
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
}

const RSS_SKIP = SANITIZED && 'RSS means nothing under ASan (shadow memory, quarantine)';

test('an idle infertap stays under 10 MB', { skip: RSS_SKIP }, async (t) => {
    const sim = await startSim([]);
    /* the default number of workers (one per core), as users run it */
    /* without the suite's MALLOC_PERTURB_, which writes every byte calloc hands out and so
     * makes the untouched telemetry ring and latency series resident */
    const px = await startProxy({ upstreams: [sim], workers: null, env: { MALLOC_PERTURB_: '0' } });
    t.after(() => Promise.all([px.kill(), sim.kill()]));
    await sleep(300);
    const rss = px.rss();
    t.diagnostic(`idle RSS: ${(rss / MB).toFixed(1)} MB`);
    assert.ok(rss < 10 * MB, `idle RSS ${rss} bytes`);
    await px.stop();
    await sim.stop();
});

test(`${CONNS} idle keep-alive connections stay under 100 MB`, { skip: RSS_SKIP }, async (t) => {
    if (nofile() < CONNS + 500) {
        t.skip(`this process may open ${nofile()} files, ${CONNS} connections need more`);
        return;
    }
    const sim = await startSim([]);
    const px = await startProxy({
        upstreams: [sim], nofile: 65536,
        args: ['--set', `limits.max_connections=${CONNS * 2}`],
    });
    const conns = [];
    t.after(async () => {
        conns.forEach((c) => c.destroy());
        await Promise.all([px.kill(), sim.kill()]);
    });
    if (nofile(px.proc.pid) < CONNS + 500) {
        t.skip(`infertap may open ${nofile(px.proc.pid)} files only`);
        return;
    }
    const rss0 = px.rss();
    const req = buildRequest('GET', '/v1/models');
    const t0 = now();
    const BATCH = 100;
    for (let i = 0; i < CONNS; i += BATCH) {
        const batch = await Promise.all(Array.from({ length: Math.min(BATCH, CONNS - i) },
            () => RawConn.connect(px.port)));
        conns.push(...batch);
        await Promise.all(batch.map(async (c) => {
            await c.write(req);
            const r = await c.readResponse({ timeoutMs: 10000 });
            assert.equal(r?.status, 200);
            assert.equal(c.closed, false);
        }));
    }
    const openMs = now() - t0;
    await sleep(200);
    const m = await px.metrics();
    assert.equal(metricValue(m, 'infertap_active_connections'), CONNS);
    assert.ok(conns.every((c) => !c.closed), 'every connection is still open');
    const rss = px.rss();
    t.diagnostic(`RSS with ${CONNS} idle keep-alive connections: ${(rss / MB).toFixed(1)} MB ` +
        `(${(rss0 / MB).toFixed(1)} MB before, ${((rss - rss0) / CONNS).toFixed(0)} bytes ` +
        `per connection; opened in ${openMs.toFixed(0)} ms)`);
    assert.ok(rss < 100 * MB, `RSS ${rss} bytes`);

    /* they go away cleanly */
    conns.forEach((c) => c.destroy());
    assert.ok(await waitUntil(async () => metricValue(await px.metrics(),
        'infertap_active_connections') === 0, { timeoutMs: 5000 }));
    await px.stop();
    await sim.stop();
});
