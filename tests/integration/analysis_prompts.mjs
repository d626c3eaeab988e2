/*
 * analysis_prompts.mjs: prompt ranking and anomalies through infertap, with
 * infertap-sim's knobs as the ground truth.
 *
 * /stats/prompts ranks exactly what was sent while the prompts fit the
 * table (counts, order, hashes equal to the access log's prompt_hash); a
 * prompt the simulator answers slowly (--slow-prompt) ranks first by
 * latency; the same prompt answered slowly by one server of seven is
 * flagged as a resource anomaly, and a temperature-0 prompt whose answers
 * differ (--nondeterminism) as nondeterministic: on the span (attribute and
 * event), the OTLP log record and in /metrics.  A bad query is a 400.
 */

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import {
    startSim, startProxy, stopAll, getJSON, parseMetrics, metricValue,
} from './lib/harness.mjs';
import { startReceiver } from './lib/otlp.mjs';

const receivers = [];

after(async () => {
    await stopAll();
    for (const r of receivers) {
        await r.close();
    }
});

function client(h) {
    return new OpenAI({ baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 20000 });
}

function chat(h, content, extra = {}) {
    return client(h).chat.completions.create({
        model: 'sim-model', messages: [{ role: 'user', content }], max_tokens: 4, ...extra,
    });
}

/* the ranking once the table has seen n exchanges (it may lag the client by one) */
async function prompts(h, q = '', n = 0) {
    let r;
    for (let i = 0; i < 100; i++) {
        r = await getJSON(`${h.adminUrl}/stats/prompts${q}`);
        assert.equal(r.status, 200, r.body);
        if (r.json.observations >= n) {
            break;
        }
        await new Promise((res) => setTimeout(res, 20));
    }
    return r.json;
}

test('the ranking by count is exact while the prompts fit, with the access log\'s hashes', async () => {
    const sim = await startSim(['--tokens', '4']);
    const px = await startProxy({ upstreams: [sim] });
    for (const [text, n] of [['alpha prompt', 5], ['beta prompt', 3], ['gamma prompt', 1]]) {
        for (let i = 0; i < n; i++) {
            await chat(px, text);
        }
    }
    let logs = px.logs();
    for (let i = 0; i < 100 && logs.length < 9; i++) {
        await new Promise((res) => setTimeout(res, 20));
        logs = px.logs();
    }
    assert.equal(logs.length, 9, JSON.stringify(logs.map((l) => l.prompt_hash)));
    const hashOf = (n) => {
        const counts = new Map();
        for (const l of logs) {
            counts.set(l.prompt_hash, (counts.get(l.prompt_hash) || 0) + 1);
        }
        return [...counts].find(([, c]) => c === n)[0];
    };
    const r = await prompts(px, '?by=count&limit=10', 9);
    assert.equal(r.by, 'count');
    assert.equal(r.observations, 9);
    assert.deepEqual(r.prompts.map((p) => p.count), [5, 3, 1]);
    assert.deepEqual(r.prompts.map((p) => p.prompt_hash), [hashOf(5), hashOf(3), hashOf(1)]);
    for (const p of r.prompts) {
        assert.equal(p.error_bound, 0, 'exact while they fit');
        assert.equal(p.model, 'sim-model');
        assert.equal(p.errors, 0);
        assert.ok(p.e2e_ms.mean > 0);
        assert.equal(p.distinct_completions, 1, 'the simulator is deterministic by default');
    }
    const top = r.prompts[0];
    const mine = logs.filter((l) => l.prompt_hash === top.prompt_hash);
    const mean = mine.reduce((s, l) => s + l.duration_ms, 0) / mine.length;
    assert.ok(Math.abs(top.e2e_ms.mean - mean) <= 0.01 * mean + 0.01,
        `mean e2e ${top.e2e_ms.mean} vs the access log's ${mean}`);

    /* the top prompts as bounded gauges on /metrics */
    const samples = parseMetrics((await getJSON(`${px.adminUrl}/metrics`)).body);
    const tops = samples.filter((x) => x.name === 'infertap_prompt_top_requests');
    assert.deepEqual(tops.map((x) => [x.labels.prompt_hash, x.value]).sort((x, y) => y[1] - x[1]),
        r.prompts.map((p) => [p.prompt_hash, p.count]));

    const two = await prompts(px, '?limit=2');
    assert.equal(two.prompts.length, 2);
    const bad = await getJSON(`${px.adminUrl}/stats/prompts?by=nonsense`);
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'bad_request');
    const tpl = await getJSON(`${px.adminUrl}/stats/templates`);
    assert.equal(tpl.status, 200);
    assert.ok(Array.isArray(tpl.json.templates));
});

test('the slow-prompt knob: first by latency, and flagged when one server of seven is slow', async () => {
    const fast = await startSim(['--tokens', '4', '--ttft-ms', '5', '--itl-ms', '1']);
    const slow = await startSim(['--tokens', '4', '--ttft-ms', '5', '--itl-ms', '1',
        '--slow-prompt', 'SLOWME', '--slow-factor', '40']);
    const rx = await startReceiver();
    receivers.push(rx);
    const px = await startProxy({
        upstreams: [fast, fast, fast, fast, fast, fast, slow],
        args: ['--set', 'balance=round_robin', '--otlp-endpoint', rx.url,
            '--set', 'otlp.traces_batch.delay=50ms', '--set', 'otlp.logs_batch.delay=50ms'],
    });
    /* round robin: six fast answers, then the slow server's */
    for (let i = 0; i < 7; i++) {
        await chat(px, 'please SLOWME down');
    }
    for (let i = 0; i < 3; i++) {
        await chat(px, 'a quick one');
    }
    const byLatency = await prompts(px, '?by=latency&limit=1', 10);
    /* the access-log lines follow the table by a moment */
    for (let i = 0; i < 100 && px.logs().length < 10; i++) {
        await new Promise((res) => setTimeout(res, 20));
    }
    const rec = px.logs().find((l) => l.upstream === `127.0.0.1:${slow.port}`
        && l.prompt_hash === byLatency.prompts[0].prompt_hash);
    assert.ok(rec, 'the prompt ranked slowest is the one the slow server answered');
    assert.match(rec.anomaly, /^(e2e|ttft)$/, 'flagged in the access log');
    /* (a loaded machine may make one of the fast answers an outlier too: not asserted) */
    assert.ok(byLatency.anomalies.e2e >= 1, `flagged: ${JSON.stringify(byLatency.anomalies)}`);

    const span = await rx.waitFor(() => rx.spans().find((s) => s.kind === 3
        && s.attrs['server.port'] === slow.port && s.attrs['infertap.anomaly.kind'] !== undefined));
    assert.equal(span.attrs['infertap.anomaly'], true);
    assert.match(span.attrs['infertap.anomaly.kind'], /^(e2e|ttft)$/);
    assert.ok(span.events.some((e) => e.name === 'infertap.anomaly'), 'anomaly event');
    assert.equal(span.attrs['server.port'], slow.port, 'the slow server answered it');
    const log = await rx.waitFor(() => rx.logs().find((l) => l.attrs.anomaly
        && l.traceId === span.traceId));
    assert.equal(log.attrs.anomaly, span.attrs['infertap.anomaly.kind']);
    const samples = parseMetrics((await getJSON(`${px.adminUrl}/metrics`)).body);
    assert.ok(metricValue(samples, 'infertap_analysis_anomalies_total', { kind: 'e2e' }) >= 1);
});

test('the nondeterminism knob: a temperature-0 prompt with a second completion is flagged', async () => {
    const sim = await startSim(['--tokens', '6', '--nondeterminism', '1']);
    const rx = await startReceiver();
    receivers.push(rx);
    const px = await startProxy({
        upstreams: [sim],
        args: ['--otlp-endpoint', rx.url, '--set', 'otlp.traces_batch.delay=50ms',
            '--set', 'otlp.logs_batch.delay=50ms'],
    });
    const a = await chat(px, 'same question', { temperature: 0 });
    const b = await chat(px, 'same question', { temperature: 0 });
    assert.notEqual(a.choices[0].message.content, b.choices[0].message.content,
        'the simulator answered differently');
    await chat(px, 'sampled question', { temperature: 0.9 });
    await chat(px, 'sampled question', { temperature: 0.9 });

    const r = await prompts(px, '?by=diversity', 4);
    assert.equal(r.anomalies.nondeterministic, 1, 'only the temperature-0 prompt');
    let flagged = [];
    for (let i = 0; i < 100 && flagged.length === 0; i++) {
        await new Promise((res) => setTimeout(res, 20));
        flagged = px.logs().filter((l) => l.anomaly);
    }
    assert.deepEqual(flagged.map((l) => [l.anomaly, l.response_id]), [['nondeterministic', b.id]],
        'the access log flags the second answer');
    assert.equal(r.prompts[0].distinct_completions, 2);
    const span = await rx.waitFor(() => rx.spans().find((s) => s.attrs['infertap.anomaly.kind']
        === 'nondeterministic'));
    assert.equal(span.attrs['gen_ai.request.temperature'], 0);
    assert.equal(span.attrs['gen_ai.response.id'], b.id, 'the second answer is the one flagged');
    const samples = parseMetrics((await getJSON(`${px.adminUrl}/metrics`)).body);
    assert.equal(metricValue(samples, 'infertap_analysis_anomalies_total',
        { kind: 'nondeterministic' }), 1);
});
