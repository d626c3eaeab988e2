/*
 * telemetry_prometheus.mjs: infertap's /metrics as Prometheus reads it.
 *
 * After real model traffic (plain and streamed chat through the openai SDK)
 * the exposition passes `promtool check metrics`, histograms are well formed
 * (cumulative buckets in increasing le order, +Inf equal to _count, series
 * unique: promtool 2.42 does not check those), OpenMetrics is served when
 * asked for, and a real Prometheus server scrapes it with the admin bearer
 * token and finds the series with the values infertap counted.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import {
    startSim, startProxy, stopAll, request, parseMetrics, metricValue, promtoolCheck,
} from './lib/harness.mjs';
import { startPrometheus } from './lib/prometheus.mjs';

const TOKEN = 'scrape-secret';
let sim;
let px;

before(async () => {
    sim = await startSim(['--tokens', '8', '--threads', '2']);
    px = await startProxy({ upstreams: [sim], args: ['--set', `admin_token=${TOKEN}`] });
    const c = new OpenAI({ baseURL: `${px.url}/v1`, apiKey: 'x', maxRetries: 0 });
    const messages = [{ role: 'user', content: 'Count to three.' }];
    for (let i = 0; i < 3; i++) {
        await c.chat.completions.create({ model: 'prom-model', messages, max_tokens: 4 });
        const s = await c.chat.completions.create({
            model: 'prom-model', messages, max_tokens: 4, stream: true,
        });
        for await (const ch of s) {
            assert.ok(ch);
        }
    }
    /* the telemetry thread may see the last exchange a moment after the client */
    for (let i = 0; i < 100; i++) {
        const text = (await scrape()).body.toString();
        if (metricValue(parseMetrics(text), 'gen_ai_server_request_duration_seconds_count',
            { gen_ai_request_model: 'prom-model' }) === 6) {
            break;
        }
        await new Promise((r) => setTimeout(r, 20));
    }
});

after(stopAll);

async function scrape(accept) {
    const headers = { authorization: `Bearer ${TOKEN}` };
    if (accept) {
        headers.accept = accept;
    }
    return request(`${px.adminUrl}/metrics`, { headers });
}

test('promtool accepts /metrics, and the histograms are well formed', async () => {
    const r = await scrape();
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const text = r.body.toString();
    const check = await promtoolCheck(text);
    assert.equal(check.code, 0, check.problems.join('\n'));

    const samples = parseMetrics(text);
    const seen = new Set();
    for (const s of samples) {
        const key = `${s.name}{${Object.entries(s.labels).sort().map(([k, v]) => `${k}=${v}`)}}`;
        assert.ok(!seen.has(key), `duplicate series ${key}`);
        seen.add(key);
    }
    const families = new Set(samples.filter((s) => s.name.endsWith('_bucket'))
        .map((s) => s.name.slice(0, -7)));
    assert.ok(families.has('gen_ai_client_operation_duration_seconds'));
    assert.ok(families.has('gen_ai_server_time_to_first_token_seconds'));
    for (const f of families) {
        const groups = new Map();
        for (const s of samples.filter((x) => x.name === `${f}_bucket`)) {
            const { le, ...rest } = s.labels;
            const k = JSON.stringify(Object.entries(rest).sort());
            if (!groups.has(k)) {
                groups.set(k, { labels: rest, buckets: [] });
            }
            groups.get(k).buckets.push([le === '+Inf' ? Infinity : Number(le), s.value]);
        }
        for (const { labels, buckets } of groups.values()) {
            for (let i = 1; i < buckets.length; i++) {
                assert.ok(buckets[i][0] > buckets[i - 1][0], `${f}: le increasing`);
                assert.ok(buckets[i][1] >= buckets[i - 1][1], `${f}: cumulative`);
            }
            assert.equal(buckets.at(-1)[0], Infinity, `${f}: +Inf last`);
            assert.equal(buckets.at(-1)[1], metricValue(samples, `${f}_count`, labels),
                `${f}: +Inf == _count`);
        }
    }
    const lbl = { gen_ai_request_model: 'prom-model', gen_ai_operation_name: 'chat' };
    assert.equal(metricValue(samples, 'gen_ai_server_request_duration_seconds_count', lbl), 6);
    assert.equal(metricValue(samples, 'gen_ai_server_time_to_first_token_seconds_count', lbl), 3,
        'TTFT of the streams');
    assert.equal(metricValue(samples, 'infertap_requests_total', { code: '2xx' }), 6);
});

test('OpenMetrics when the scraper asks for it', async () => {
    const r = await scrape('application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.2');
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'], /^application\/openmetrics-text; version=1\.0\.0/);
    const text = r.body.toString();
    assert.ok(text.endsWith('# EOF\n'), 'ends with # EOF');
    assert.match(text, /^# TYPE infertap_requests counter$/m);
    assert.match(text, /^infertap_requests_total\{code="2xx"\} 6$/m);
    assert.match(text, /^# UNIT gen_ai_client_operation_duration_seconds seconds$/m);
    assert.match(text, /le="1\.0"/, 'canonical le values');
});

test('/metrics wants the bearer token', async () => {
    const r = await request(`${px.adminUrl}/metrics`);
    assert.equal(r.status, 401);
});

test('a Prometheus server scrapes infertap with the bearer token', async (t) => {
    const prom = await startPrometheus({ targets: [px], bearerToken: TOKEN, scrapeIntervalMs: 500 });
    if (prom === null) {
        t.skip('no /usr/bin/prometheus');
        return;
    }
    try {
        await prom.waitUp(20000);
        const res = await prom.waitQuery('infertap_requests_total{code="2xx"}',
            (r) => r.length === 1 && Number(r[0].value[1]) === 6, 20000);
        assert.equal(Number(res[0].value[1]), 6);
        const h = await prom.query(
            'gen_ai_client_token_usage_count{gen_ai_request_model="prom-model",gen_ai_token_type="output"}');
        assert.equal(h.length, 1);
        assert.equal(Number(h[0].value[1]), 6);
    } finally {
        await prom.close();
    }
});
