/*
 * analysis_stats.mjs: GET /stats against the access log.
 *
 * Through infertap-sim with latency jitter, the percentiles /stats reports
 * for a series agree within 1% with the nearest-rank percentiles of the
 * access log's own durations over the same requests; counts are exact and
 * the two workers' shards are merged; TTFT and TPOT come from the streams;
 * windows hold what was just sent; series beyond analysis.max_series fold
 * into "other".
 */

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import {
    startSim, startProxy, stopAll, getJSON, postJSON, parseMetrics, metricValue, promtoolCheck,
} from './lib/harness.mjs';

after(stopAll);

/* nearest rank: the smallest value with at least p% of the values <= it */
function rank(sorted, p) {
    const r = Math.max(1, Math.ceil((p / 100) * sorted.length));
    return sorted[r - 1];
}

async function logsOf(px, n) {
    for (let i = 0; i < 200; i++) {
        const l = px.logs();
        if (l.length >= n) {
            return l;
        }
        await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`fewer than ${n} access-log records`);
}

test('/stats percentiles agree within 1% with the access log, shards merged', async () => {
    const sim = await startSim(['--tokens', '8', '--ttft-ms', '2', '--itl-ms', '1',
        '--jitter-ms', '40', '--threads', '2']);
    const px = await startProxy({ upstreams: [sim], workers: 2 });
    const N = 240;
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < N) {
            const i = next++;
            const r = await postJSON(`${px.url}/v1/chat/completions`, {
                model: 'stats-model', stream: i % 2 === 0, max_tokens: 8,
                messages: [{ role: 'user', content: `question number ${i}` }],
            });
            assert.equal(r.status, 200);
        }
    }));
    const logs = await logsOf(px, N);
    const stats = (await getJSON(`${px.adminUrl}/stats`)).json;
    const series = stats.series.filter((s) => s.model === 'stats-model');
    assert.equal(series.length, 1, 'one series: both workers merged');
    const s = series[0];
    assert.equal(s.route, '/v1/chat/completions');
    assert.equal(s.status, '2xx');
    assert.equal(s.upstream, `127.0.0.1:${sim.port}`);

    const d = logs.map((l) => l.duration_ms).sort((a, b) => a - b);
    const all = s.e2e_ms.all;
    assert.equal(all.count, N);
    assert.ok(Math.abs(all.min - d[0]) <= 0.001, `min ${all.min} vs ${d[0]}`);
    assert.ok(Math.abs(all.max - d.at(-1)) <= 0.001, `max ${all.max} vs ${d.at(-1)}`);
    for (const [k, p] of [['p50', 50], ['p90', 90], ['p95', 95], ['p99', 99], ['p999', 99.9]]) {
        const exact = rank(d, p);
        assert.ok(Math.abs(all[k] - exact) <= 0.01 * exact + 0.001,
            `${k}: /stats ${all[k]} vs access log ${exact}`);
    }
    const mean = d.reduce((a, b) => a + b, 0) / N;
    assert.ok(Math.abs(all.mean - mean) <= 0.001 * mean + 0.001, `mean ${all.mean} vs ${mean}`);

    /* TTFT from the streams, against the access log too */
    const t = logs.filter((l) => l.ttft_ms !== null).map((l) => l.ttft_ms).sort((a, b) => a - b);
    assert.equal(s.ttft_ms.all.count, t.length);
    assert.ok(t.length >= N / 2);
    assert.ok(Math.abs(s.ttft_ms.all.p90 - rank(t, 90)) <= 0.01 * rank(t, 90) + 0.001);
    assert.ok(s.tpot_ms.all.count > 0);
    assert.equal(s.upstream_ms.all.count, N);
    assert.equal(s.overhead_ms.all.count, N);

    /* everything was just sent: the windows hold it all */
    assert.equal(s.e2e_ms['1m'].count, N);
    assert.equal(s.e2e_ms['5m'].count, N);

    /* the same histograms on /metrics (and OTLP): counts, sums, buckets */
    const text = (await getJSON(`${px.adminUrl}/metrics`)).body;
    assert.equal((await promtoolCheck(text)).code, 0);
    const samples = parseMetrics(text);
    const lbl = { model: 'stats-model', route: '/v1/chat/completions', status: '2xx' };
    assert.equal(metricValue(samples, 'infertap_latency_e2e_seconds_count', lbl), N);
    assert.equal(metricValue(samples, 'infertap_latency_ttft_seconds_count', lbl), t.length);
    const sum = metricValue(samples, 'infertap_latency_e2e_seconds_sum', lbl);
    assert.ok(Math.abs(sum * 1000 - mean * N) <= 0.001 * mean * N, `sum ${sum}`);
    const le1 = metricValue(samples, 'infertap_latency_e2e_seconds_bucket', { ...lbl, le: '0.08' });
    const exact = d.filter((x) => x <= 80).length;
    assert.ok(Math.abs(le1 - exact) <= Math.max(2, 0.02 * N), `le=0.08: ${le1} vs ${exact}`);
});

test('series beyond analysis.max_series fold into "other"', async () => {
    const sim = await startSim(['--tokens', '2']);
    const px = await startProxy({ upstreams: [sim], args: ['--set', 'analysis.max_series=2'] });
    for (const m of ['a', 'b', 'c', 'd']) {
        await postJSON(`${px.url}/v1/chat/completions`, {
            model: m, messages: [{ role: 'user', content: 'x' }],
        });
    }
    const stats = (await getJSON(`${px.adminUrl}/stats`)).json;
    assert.deepEqual(stats.series.map((s) => s.model), ['a', 'b', 'other']);
    assert.equal(stats.folded, 2);
    assert.equal(stats.series[2].e2e_ms.all.count, 2);
});
