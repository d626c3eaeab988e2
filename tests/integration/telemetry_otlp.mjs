/*
 * telemetry_otlp.mjs: what infertap exports, read by a real OTLP/HTTP
 * receiver that decodes with the decoder generated from the official
 * OpenTelemetry protos (lib/otlp.mjs), independent of infertap's own .proto.
 *
 * Each request gives exactly one SERVER span (parent: the caller's span) and
 * one CLIENT span under it, named and attributed per the GenAI conventions,
 * with values equal to what the simulator says it sent; the model server
 * receives a traceparent naming the CLIENT span; metric points equal what was
 * sent (request counts, token sums, bucket counts); log records carry the
 * SERVER span's ids; gzip and plain bodies both decode; head and tail
 * sampling decide which spans leave, and never touch metrics or logs.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

import {
    startSim, startProxy, startUpstream, stopAll, getJSON, parseMetrics, metricValue,
} from './lib/harness.mjs';
import { startReceiver } from './lib/otlp.mjs';

const FAST = [
    '--set', 'otlp.traces_batch.delay=50ms', '--set', 'otlp.logs_batch.delay=50ms',
    '--set', 'otlp.metrics_interval=200ms',
];

let sim;
let rx;
let px;
const receivers = [];
const upstreams = [];

before(async () => {
    sim = await startSim(['--tokens', '10', '--threads', '2']);
    rx = await startReceiver();
    receivers.push(rx);
    px = await startProxy({
        upstreams: [sim],
        args: ['--otlp-endpoint', rx.url, '--set', 'otlp.compression=none', ...FAST],
    });
});

after(async () => {
    await stopAll();
    for (const r of receivers) {
        await r.close();
    }
    for (const u of upstreams) {
        await u.close();
    }
});

function client(h, headers = {}) {
    return new OpenAI({
        baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10000, defaultHeaders: headers,
    });
}

let seq = 0;
function rid() {
    seq += 1;
    return `otlp-${process.pid}-${seq}`;
}

function randHex(n) {
    let s = '';
    while (s.length < n) {
        s += Math.floor(Math.random() * 16).toString(16);
    }
    return s.replace(/^0+$/, '1');
}

const messages = [{ role: 'user', content: 'Say something about lighthouses.' }];

async function accessRecord(h, id) {
    for (let i = 0; i < 200; i++) {
        const rec = h.logs().find((r) => r.request_id === id);
        if (rec) {
            return rec;
        }
        await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no access-log record for ${id}`);
}

async function simGen(id) {
    const gen = (await getJSON(`${sim.url}/sim/generations`)).json.find((g) => g.request_id === id);
    assert.ok(gen, `the simulator has no generation for ${id}`);
    return gen;
}

/* the spans of one trace, once both have arrived */
async function traceSpans(r, traceId, n = 2) {
    return r.waitFor(() => {
        const spans = r.spans().filter((s) => s.traceId === traceId);
        return spans.length >= n ? spans : null;
    });
}

test('a chat completion gives a SERVER span under the caller and a GenAI CLIENT span under it', async () => {
    const traceId = randHex(32);
    const parent = randHex(16);
    const id = rid();
    const res = await client(px, {
        'x-request-id': id, traceparent: `00-${traceId}-${parent}-01`,
    }).chat.completions.create({
        model: 'sim-model', messages, max_tokens: 6, temperature: 0.5, top_p: 0.9, seed: 7,
    });
    const rec = await accessRecord(px, id);
    const gen = await simGen(id);
    const spans = await traceSpans(rx, traceId);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(rx.spans().filter((s) => s.traceId === traceId).length, 2, 'exactly two spans');

    const srv = spans.find((s) => s.kind === 2);
    const cli = spans.find((s) => s.kind === 3);
    assert.ok(srv && cli, 'one SERVER and one CLIENT span');
    assert.equal(srv.parentSpanId, parent, 'SERVER span under the caller');
    assert.equal(srv.spanId, rec.span_id, 'SERVER span id is the record span id');
    assert.equal(cli.parentSpanId, srv.spanId, 'CLIENT span under the SERVER span');
    assert.equal(srv.name, 'POST /v1/chat/completions');
    assert.equal(cli.name, 'chat sim-model');
    assert.ok(srv.start <= cli.start && cli.end <= srv.end, 'CLIENT inside SERVER');
    assert.ok(srv.end > srv.start);
    assert.equal(srv.flags & 0xff, 1, 'sampled flag');
    assert.equal(srv.flags & 0x300, 0x300, 'parent is remote');
    assert.ok(!srv.status || !srv.status.code, 'status unset on success');

    assert.equal(srv.attrs['http.request.method'], 'POST');
    assert.equal(srv.attrs['http.response.status_code'], 200);
    assert.equal(srv.attrs['infertap.request_id'], id);

    const a = cli.attrs;
    assert.equal(a['gen_ai.operation.name'], 'chat');
    assert.equal(a['gen_ai.provider.name'], 'openai');
    assert.equal(a['gen_ai.request.model'], 'sim-model');
    assert.equal(a['gen_ai.request.max_tokens'], 6);
    assert.equal(a['gen_ai.request.temperature'], 0.5);
    assert.equal(a['gen_ai.request.top_p'], 0.9);
    assert.equal(a['gen_ai.request.seed'], 7);
    assert.equal(a['gen_ai.request.stream'], undefined, 'unset when not streaming');
    assert.equal(a['gen_ai.response.id'], res.id);
    assert.equal(a['gen_ai.response.model'], res.model);
    assert.deepEqual(a['gen_ai.response.finish_reasons'], [gen.finish_reason]);
    assert.equal(a['gen_ai.usage.input_tokens'], gen.prompt_tokens);
    assert.equal(a['gen_ai.usage.output_tokens'], gen.completion_tokens);
    assert.equal(a['server.address'], '127.0.0.1');
    assert.equal(a['server.port'], sim.port);
    assert.equal(a['infertap.prompt_hash'], rec.prompt_hash);
    assert.equal(a['infertap.completion_hash'], gen.text_hash);
    assert.equal(a['infertap.tokens_estimated'], false);
    assert.equal(a['error.type'], undefined);

    const res0 = srv.resource;
    assert.equal(res0['service.name'], 'infertap');
    assert.equal(cli.scope.name, 'infertap');
});

test('a stream marks its first token with an event and reports time to first chunk', async () => {
    const id = rid();
    const stream = await client(px, { 'x-request-id': id }).chat.completions.create({
        model: 'sim-model', messages, max_tokens: 5, stream: true,
    });
    for await (const chunk of stream) {
        assert.ok(chunk);
    }
    const rec = await accessRecord(px, id);
    const [cli] = await rx.waitFor(() => {
        const s = rx.spans().filter((x) => x.traceId === rec.trace_id && x.kind === 3);
        return s.length ? s : null;
    });
    assert.equal(cli.attrs['gen_ai.request.stream'], true);
    assert.equal(cli.attrs['gen_ai.usage.output_tokens'], rec.completion_tokens);
    assert.ok(Math.abs(cli.attrs['gen_ai.response.time_to_first_chunk'] * 1000 - rec.ttft_ms) < 0.01);
    const ev = cli.events.find((e) => e.name === 'infertap.first_token');
    assert.ok(ev, 'first-token event');
    assert.ok(ev.time > cli.start && ev.time <= cli.end, 'event inside the span');
});

test('the model server receives a traceparent naming the CLIENT span', async () => {
    const up = await startUpstream((req, res, r) => {
        r.done.then(() => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({
                id: 'chatcmpl-tp', object: 'chat.completion', model: 'tp-model',
                choices: [{ index: 0, message: { role: 'assistant', content: 'hi' },
                    finish_reason: 'stop' }],
                usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
            }));
        });
    });
    upstreams.push(up);
    const p2 = await startProxy({
        upstreams: [up], args: ['--otlp-endpoint', rx.url, '--set', 'otlp.compression=none', ...FAST],
    });
    const traceId = randHex(32);
    await client(p2, { traceparent: `00-${traceId}-${randHex(16)}-01` })
        .chat.completions.create({ model: 'tp-model', messages });
    const tp = up.requests.at(-1).headers.traceparent;
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(tp);
    assert.ok(m, `traceparent sent upstream: ${tp}`);
    assert.equal(m[1], traceId, 'the caller trace continues');
    const spans = await traceSpans(rx, traceId);
    const cli = spans.find((s) => s.kind === 3);
    assert.equal(m[2], cli.spanId, 'parent-id upstream = CLIENT span');
    assert.equal(cli.attrs['gen_ai.usage.input_tokens'], 3);
    assert.equal(cli.attrs['gen_ai.response.id'], 'chatcmpl-tp');
});

test('metric points equal what was sent: requests, token sums, bucket counts', async () => {
    const r2 = await startReceiver();
    receivers.push(r2);
    const p2 = await startProxy({ upstreams: [sim], args: ['--otlp-endpoint', r2.url, ...FAST] });
    const model = `metrics-model-${process.pid}`;
    const ids = [];
    for (let i = 0; i < 4; i++) {
        const id = rid();
        ids.push(id);
        await client(p2, { 'x-request-id': id }).chat.completions.create({
            model, messages, max_tokens: 3 + i,
        });
    }
    let inTok = 0;
    let outTok = 0;
    for (const id of ids) {
        const g = await simGen(id);
        inTok += g.prompt_tokens;
        outTok += g.completion_tokens;
    }

    /* cumulative: the newest export holds everything */
    const last = await r2.waitFor(() => {
        const pts = r2.metrics('gen_ai.client.token.usage') || [];
        const input = pts.filter((p) => p.attrs['gen_ai.token.type'] === 'input'
            && p.attrs['gen_ai.request.model'] === model);
        const mine = input.at(-1);
        return mine && Number(mine.count) === 4 ? pts : null;
    });
    const pick = (type) => last.filter((p) => p.attrs['gen_ai.token.type'] === type
        && p.attrs['gen_ai.request.model'] === model).at(-1);
    const input = pick('input');
    const output = pick('output');
    assert.equal(input.sum, inTok, 'input token sum');
    assert.equal(output.sum, outTok, 'output token sum');
    assert.equal(Number(output.count), 4);
    assert.equal(input.temporality, 2, 'cumulative');
    assert.deepEqual(input.bounds, [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144,
        1048576, 4194304, 16777216, 67108864]);
    assert.equal(input.buckets.reduce((s, b) => s + Number(b), 0), 4, 'bucket counts add up');
    assert.equal(input.attrs['gen_ai.operation.name'], 'chat');
    assert.equal(input.attrs['gen_ai.provider.name'], 'openai');
    assert.equal(input.attrs['server.port'], String(sim.port));

    const dur = (r2.metrics('gen_ai.client.operation.duration') || [])
        .filter((p) => p.attrs['gen_ai.request.model'] === model).at(-1);
    assert.equal(Number(dur.count), 4);
    assert.equal(dur.buckets.reduce((s, b) => s + Number(b), 0), 4);
    assert.ok(dur.sum > 0 && dur.min > 0 && dur.max >= dur.min);

    const reqs = await r2.waitFor(() => {
        const p = (r2.metrics('infertap.requests') || [])
            .filter((x) => x.attrs.code === '2xx').at(-1);
        return p && Number(p.value) === 4 ? p : null;
    });
    assert.equal(reqs.monotonic, true);

    /* Prometheus reads the same registry */
    const text = (await getJSON(`${p2.adminUrl}/metrics`)).body;
    const samples = parseMetrics(text);
    assert.equal(metricValue(samples, 'infertap_requests_total', { code: '2xx' }), 4);
    assert.equal(metricValue(samples, 'gen_ai_client_token_usage_sum',
        { gen_ai_request_model: model, gen_ai_token_type: 'input' }), inTok);
    assert.equal(metricValue(samples, 'gen_ai_client_token_usage_count',
        { gen_ai_request_model: model, gen_ai_token_type: 'output' }), 4);
});

test('log records mirror the access log and carry the SERVER span ids', async () => {
    const id = rid();
    await client(px, { 'x-request-id': id }).chat.completions.create({
        model: 'sim-model', messages, max_tokens: 4,
    });
    const rec = await accessRecord(px, id);
    const log = await rx.waitFor(() => rx.logs().find((l) => l.attrs.request_id === id));
    assert.equal(log.traceId, rec.trace_id);
    assert.equal(log.spanId, rec.span_id);
    assert.equal(log.severityNumber, 9);
    assert.equal(log.attrs.status, 200);
    assert.equal(log.attrs.prompt_tokens, rec.prompt_tokens);
    assert.equal(log.attrs.completion_tokens, rec.completion_tokens);
    assert.equal(log.attrs.prompt_hash, rec.prompt_hash);
    assert.equal(log.attrs.completion_hash, rec.completion_hash);
    assert.equal(log.attrs.model, 'sim-model');
    assert.equal(log.attrs.path, '/v1/chat/completions');
});

test('gzip and plain bodies both decode', async () => {
    const r2 = await startReceiver();
    receivers.push(r2);
    const p2 = await startProxy({
        upstreams: [sim], args: ['--otlp-endpoint', r2.url, '--set', 'otlp.compression=gzip', ...FAST],
    });
    await client(p2).chat.completions.create({ model: 'sim-model', messages, max_tokens: 2 });
    await r2.waitFor(() => ['traces', 'metrics', 'logs']
        .every((s) => r2.received(s).length > 0));
    for (const r of r2.requests) {
        assert.equal(r.gzip, true, `${r.signal} gzip`);
        assert.equal(r.headers['content-encoding'], 'gzip');
        assert.equal(r.contentType, 'application/x-protobuf');
    }
    assert.ok(rx.requests.length > 0);
    for (const r of rx.requests) {
        assert.equal(r.gzip, false, `${r.signal} plain (the default, set explicitly here)`);
    }
});

test('head sampling: always_off keeps only what the tail rules keep; metrics and logs stay whole', async () => {
    const r2 = await startReceiver();
    receivers.push(r2);
    const up = await startUpstream((req, res, r) => {
        r.done.then(() => {
            res.writeHead(req.url.includes('fail') ? 500 : 200, { 'content-type': 'application/json' });
            res.end('{"ok":true}');
        });
    });
    upstreams.push(up);
    const p2 = await startProxy({
        upstreams: [up],
        args: ['--otlp-endpoint', r2.url, '--set', 'sampling.sampler=always_off', ...FAST],
    });
    const okTrace = randHex(32);
    const failTrace = randHex(32);
    await fetch(`${p2.url}/ok`, { headers: { traceparent: `00-${okTrace}-${randHex(16)}-01` } });
    await fetch(`${p2.url}/fail`, { headers: { traceparent: `00-${failTrace}-${randHex(16)}-01` } });
    assert.match(up.requests[0].headers.traceparent, /-00$/, 'not sampled upstream');

    const spans = await traceSpans(r2, failTrace);
    assert.equal(spans.length, 2, 'the failed exchange is kept whole by the tail');
    const srv = spans.find((s) => s.kind === 2);
    assert.equal(srv.status.code, 2, 'ERROR status');
    assert.equal(srv.attrs['error.type'], '500');
    assert.equal(srv.flags & 0xff, 0, 'head said no');
    await r2.waitFor(() => r2.logs().length >= 2);
    assert.equal(r2.spans().filter((s) => s.traceId === okTrace).length, 0, 'no span for the ok one');
    assert.equal(r2.logs().length, 2, 'one log record each');

    const samples = parseMetrics((await getJSON(`${p2.adminUrl}/metrics`)).body);
    assert.equal(metricValue(samples, 'infertap_sampling_decisions_total', { decision: 'tail_error' }), 1);
    assert.equal(metricValue(samples, 'infertap_sampling_decisions_total', { decision: 'dropped' }), 1);
    assert.equal(metricValue(samples, 'infertap_requests_total', { code: '5xx' }), 1);
});

test('parent-based ratio sampling follows the caller flag, and the ratio when there is none', async () => {
    const r2 = await startReceiver();
    receivers.push(r2);
    const up = await startUpstream();
    upstreams.push(up);
    const p2 = await startProxy({
        upstreams: [up],
        args: ['--otlp-endpoint', r2.url, '--set', 'sampling.sampler=parentbased_traceidratio',
            '--set', 'sampling.ratio=0.5', '--set', 'sampling.tail.errors=false', ...FAST],
    });
    const off = randHex(32);
    const on = randHex(32);
    await fetch(`${p2.url}/a`, { headers: { traceparent: `00-${off}-${randHex(16)}-00` } });
    await fetch(`${p2.url}/b`, { headers: { traceparent: `00-${on}-${randHex(16)}-01` } });
    for (let i = 0; i < 200; i++) {
        await fetch(`${p2.url}/r${i}`);
    }
    const sent = up.requests.slice(2).map((r) => /-(0[01])$/.exec(r.headers.traceparent)[1]);
    const kept = sent.filter((f) => f === '01').length;
    assert.ok(kept > 60 && kept < 140, `about half of 200 root traces kept: ${kept}`);
    await r2.waitFor(() => r2.logs().length >= 202, 8000);
    await r2.waitFor(() => r2.spans().length >= 2 * (kept + 1));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(r2.spans().filter((s) => s.traceId === off).length, 0, 'caller said no');
    assert.equal(r2.spans().filter((s) => s.traceId === on).length, 2, 'caller said yes');
    assert.equal(r2.spans().length, 2 * (kept + 1), 'exactly the sampled ones');
    /* the decision is the trace id's: the kept ones have their 56 low bits under half */
    for (const s of r2.spans()) {
        if (s.traceId !== on) {
            assert.ok(parseInt(s.traceId.slice(18, 32), 16) < 2 ** 55, s.traceId);
        }
    }
});

test('delta temporality sends the change since the previous export', async () => {
    const r2 = await startReceiver();
    receivers.push(r2);
    const up = await startUpstream();
    upstreams.push(up);
    const p2 = await startProxy({
        upstreams: [up],
        args: ['--otlp-endpoint', r2.url, '--set', 'otlp.metrics_temporality=delta', ...FAST],
    });
    for (let i = 0; i < 3; i++) {
        await fetch(`${p2.url}/x${i}`);
    }
    const first = await r2.waitFor(() => (r2.metrics('infertap.requests') || [])
        .find((p) => p.attrs.code === '2xx' && Number(p.value) === 3));
    assert.equal(first.temporality, 1, 'delta');
    const n0 = r2.received('metrics').length;
    await r2.waitFor(() => r2.received('metrics').length > n0 + 1);
    await fetch(`${p2.url}/y`);
    const pts = await r2.waitFor(() => {
        const all = (r2.metrics('infertap.requests') || []).filter((p) => p.attrs.code === '2xx');
        return all.some((p) => Number(p.value) === 1) ? all : null;
    });
    const total = pts.reduce((s, p) => s + Number(p.value), 0);
    assert.equal(total, 4, `deltas add up to the total: ${pts.map((p) => p.value)}`);
});

test('label cardinality is capped: more models than the cap fold into "other", counted', async () => {
    const up = await startUpstream((req, res, r) => {
        r.done.then(() => {
            const model = JSON.parse(r.body.toString()).model;
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({
                id: 'c', object: 'chat.completion', model,
                choices: [{ index: 0, message: { role: 'assistant', content: 'ok' },
                    finish_reason: 'stop' }],
                usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 },
            }));
        });
    });
    upstreams.push(up);
    const p2 = await startProxy({ upstreams: [up], args: ['--set', 'metrics.max_label_values=2'] });
    for (const m of ['m-a', 'm-b', 'm-c', 'm-d', 'm-a']) {
        await client(p2).chat.completions.create({ model: m, messages });
    }
    const count = (model, x = samples) => metricValue(x,
        'gen_ai_server_request_duration_seconds_count', { gen_ai_request_model: model });
    const samples = await p2.metricsWhen((x) => count('other', x) === 2 && count('m-a', x) === 2);
    assert.equal(count('m-a'), 2);
    assert.equal(count('m-b'), 1);
    assert.equal(count('m-c'), undefined, 'beyond the cap');
    assert.equal(count('other'), 2, 'm-c and m-d fold into other');
    assert.ok(metricValue(samples, 'infertap_metrics_label_overflow_total',
        { metric: 'gen_ai.server.request.duration' }) >= 2);
});
