/*
 * telemetry_collector.mjs: collectors that fail never hurt traffic.
 *
 * A collector that answers 503 or 429 gets the same batch again, after the
 * backoff or the Retry-After it asked for; 400 is not retried; one that is
 * down, or too slow, leaves request latency where it was (measured against
 * the same proxy without export), memory bounded and the drops counted on
 * /metrics; export resumes when it comes back.  Two endpoints at once: a
 * dead one does not stall the live one.
 */

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import {
    startProxy, startUpstream, stopAll, getJSON, parseMetrics, metricValue, freePort, SANITIZED,
    now,
} from './lib/harness.mjs';
import { startReceiver } from './lib/otlp.mjs';

const FAST = [
    '--set', 'otlp.traces_batch.delay=20ms', '--set', 'otlp.logs_batch.delay=20ms',
    '--set', 'otlp.metrics_interval=100ms', '--set', 'otlp.retry.backoff=50ms',
    '--set', 'otlp.retry.backoff_max=2s', '--set', 'otlp.timeout=300ms',
];

const receivers = [];
const upstreams = [];

after(async () => {
    await stopAll();
    for (const r of receivers) {
        await r.close();
    }
    for (const u of upstreams) {
        await u.close();
    }
});

async function receiver(opts) {
    const r = await startReceiver(opts);
    receivers.push(r);
    return r;
}

async function upstream() {
    const up = await startUpstream();
    upstreams.push(up);
    return up;
}

async function metrics(px) {
    return parseMetrics((await getJSON(`${px.adminUrl}/metrics`)).body);
}

/* a request of this signal was answered with this status */
function answered(rx, signal, status) {
    return rx.requests.some((r) => r.signal === signal && r.answer && r.answer.status === status);
}

function tel(samples, name, signal, endpoint) {
    const labels = { signal };
    if (endpoint) {
        labels.endpoint = endpoint;
    }
    return metricValue(samples, `infertap_telemetry_${name}`, labels) || 0;
}

test('503 twice, then 200: the same batch is retried with backoff and arrives', async () => {
    const rx = await receiver();
    rx.queue({ status: 503, signal: 'traces' }, { status: 503, signal: 'traces' });
    const px = await startProxy({ upstreams: [await upstream()], args: ['--otlp-endpoint', rx.url, ...FAST] });
    await fetch(`${px.url}/one`);
    await rx.waitFor(() => answered(rx, 'traces', 200));
    const tr = rx.requests.filter((r) => r.signal === 'traces');
    assert.equal(tr.length, 3);
    assert.deepEqual(tr.map((r) => r.answer.status), [503, 503, 200]);
    assert.ok(tr[1].raw.equals(tr[0].raw) && tr[2].raw.equals(tr[0].raw), 'the same body each time');
    assert.ok(tr[1].at - tr[0].at >= 0, 'waited');
    const s = await metrics(px);
    assert.equal(tel(s, 'retried_total', 'traces', rx.endpoint('traces')), 4, 'two spans, twice');
    assert.equal(tel(s, 'exported_total', 'traces', rx.endpoint('traces')), 2);
    assert.equal(tel(s, 'failed_total', 'traces', rx.endpoint('traces')), 0);
});

test('429 with Retry-After: 1 waits a second; 400 is not retried and counts as failed', async () => {
    const rx = await receiver();
    rx.queue({ status: 429, retryAfter: '1', signal: 'logs' }, { status: 400, signal: 'traces' });
    const px = await startProxy({ upstreams: [await upstream()], args: ['--otlp-endpoint', rx.url, ...FAST] });
    await fetch(`${px.url}/two`);
    await rx.waitFor(() => answered(rx, 'logs', 200), 5000);
    const logs = rx.requests.filter((r) => r.signal === 'logs');
    assert.equal(logs.length, 2);
    const wait = logs[1].at - logs[0].answered;
    assert.ok(wait >= 950 && wait < 3000, `Retry-After honoured: ${wait} ms`);
    await new Promise((r) => setTimeout(r, 300));
    const tr = rx.requests.filter((r) => r.signal === 'traces');
    assert.equal(tr.length, 1, '400 is final');
    const s = await metrics(px);
    assert.equal(tel(s, 'failed_total', 'traces', rx.endpoint('traces')), 2);
    assert.equal(tel(s, 'exported_total', 'logs', rx.endpoint('logs')), 1);
});

test('partial success counts the rejected items', async () => {
    const rx = await receiver();
    rx.queue({ partial: { rejected: 1, message: 'one span too many' }, signal: 'traces' });
    const px = await startProxy({ upstreams: [await upstream()], args: ['--otlp-endpoint', rx.url, ...FAST] });
    await fetch(`${px.url}/three`);
    await rx.waitFor(() => answered(rx, 'traces', 200));
    await new Promise((r) => setTimeout(r, 100));
    const s = await metrics(px);
    assert.equal(tel(s, 'rejected_total', 'traces', rx.endpoint('traces')), 1);
    assert.equal(tel(s, 'exported_total', 'traces', rx.endpoint('traces')), 1);
    assert.equal(rx.requests.filter((r) => r.signal === 'traces').length, 1, 'not retried');
});

/* median of n GETs, alternating between proxies a and b */
async function latencies(a, b, n) {
    const la = [];
    const lb = [];
    for (let i = 0; i < n; i++) {
        for (const [px, out] of [[a, la], [b, lb]]) {
            const t = now();
            const r = await fetch(`${px.url}/lat${i}`);
            await r.arrayBuffer();
            out.push(now() - t);
        }
    }
    const med = (v) => v.sort((x, y) => x - y)[Math.floor(v.length / 2)];
    return [med(la), med(lb)];
}

test('a dead collector: latency unchanged, memory bounded, drops counted; a live one still gets everything', async () => {
    const dead = await freePort();
    const live = await receiver();
    const up = await upstream();
    const base = await startProxy({ upstreams: [up] });
    const px = await startProxy({
        upstreams: [up],
        args: ['--otlp-endpoint', `http://127.0.0.1:${dead}`, '--otlp-endpoint', live.url,
            '--set', 'otlp.traces_batch.max_queue=64', '--set', 'otlp.traces_batch.max_batch=16',
            '--set', 'otlp.logs_batch.max_queue=20000', '--set', 'otlp.logs_batch.max_batch=256',
            '--set', 'otlp.retry.max_attempts=100', ...FAST],
    });
    const [lb0, lp0] = await latencies(base, px, 100);
    const rss0 = px.rss();
    const N = SANITIZED ? 1500 : 4000;
    const conc = 8;
    let next = 0;
    await Promise.all(Array.from({ length: conc }, async () => {
        while (next < N) {
            next++;
            const r = await fetch(`${px.url}/load`);
            await r.arrayBuffer();
        }
    }));
    const [lb, lp] = await latencies(base, px, 100);
    const rss1 = px.rss();
    assert.ok(lp <= lb * 1.5 + 2, `median latency with a dead collector ${lp} ms vs ${lb} ms without export`);
    assert.ok(lp0 <= lb0 * 1.5 + 2, `before the load: ${lp0} ms vs ${lb0} ms`);
    if (!SANITIZED) {
        /* under ASan RSS means nothing (shadow memory, quarantine) */
        assert.ok(rss1 - rss0 < 32 * 1024 * 1024, `RSS grew by ${(rss1 - rss0) >> 10} KiB`);
    }

    const deadTraces = `http://127.0.0.1:${dead}/v1/traces`;
    const total = N + 200;
    await live.waitFor(() => live.logs().length >= total, 10000);
    const s = await metrics(px);
    assert.ok(tel(s, 'dropped_total', 'traces', deadTraces) > 0, 'drops counted for the dead one');
    assert.ok(tel(s, 'queued', 'traces', deadTraces) <= 64, 'its queue stays bounded');
    assert.equal(tel(s, 'dropped_total', 'logs', live.endpoint('logs')), 0, 'no log dropped for the live one');
    assert.equal(live.logs().length, total, 'the live collector got every log record');
});

test('a collector slower than otlp.timeout: traffic unaffected, the timeout is retried', async () => {
    const rx = await receiver({ respond: { delayMs: 2000 } });
    const up = await upstream();
    const base = await startProxy({ upstreams: [up] });
    const px = await startProxy({ upstreams: [up], args: ['--otlp-endpoint', rx.url, ...FAST] });
    const [lb, lp] = await latencies(base, px, 60);
    assert.ok(lp <= lb * 1.5 + 2, `median ${lp} ms vs ${lb} ms`);
    let retried = 0;
    for (let i = 0; i < 100 && retried === 0; i++) {
        retried = tel(await metrics(px), 'retried_total', 'traces', rx.endpoint('traces'));
        await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(retried > 0, 'timeouts retried');
});

test('export resumes when the collector comes back', async () => {
    const port = await freePort();
    const px = await startProxy({
        upstreams: [await upstream()],
        args: ['--otlp-endpoint', `http://127.0.0.1:${port}`, '--set', 'otlp.retry.max_attempts=100',
            ...FAST],
    });
    for (let i = 0; i < 5; i++) {
        await fetch(`${px.url}/before${i}`);
    }
    await new Promise((r) => setTimeout(r, 300));
    const rx = await receiver({ port });
    await fetch(`${px.url}/after`);
    const log = await rx.waitFor(() => rx.logs().find((l) => l.attrs.path === '/after'), 5000);
    assert.ok(log);
    /* the earlier ones were retried (backoff up to 2 s), not lost */
    await rx.waitFor(() => rx.logs().length >= 6, 8000);
});
