/*
 * filters_openai.mjs: what infertap learns from OpenAI traffic, checked
 * against what the simulator knows it sent (/sim/generations), with the
 * official openai SDK as the client.
 *
 * Plain and streamed chat, completions and embeddings: tokens, finish
 * reason, text hash, model and ids in the access log equal the simulator's;
 * usage injection is invisible to the SDK (same chunks as straight to the
 * simulator) yet gives reported token counts; turned off, tokens come from
 * the stream.  TTFT and TPOT follow the simulator's latency knobs; bodies
 * infertap cannot read are forwarded untouched and say why.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import OpenAI from 'openai';

import {
    startSim, startProxy, startUpstream, stopAll, getJSON, request, SANITIZED, metricValue,
    promtoolCheck, curl, freePort,
} from './lib/harness.mjs';

let sim;
let px;
let pxOff;

before(async () => {
    sim = await startSim(['--tokens', '12', '--threads', '2']);
    px = await startProxy({ upstreams: [sim] });
    pxOff = await startProxy({ upstreams: [sim], args: ['--set', 'inject_usage=false'] });
});

after(stopAll);

function client(h, headers = {}) {
    return new OpenAI({
        baseURL: `${h.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10000, defaultHeaders: headers,
    });
}

let seq = 0;
function rid() {
    seq += 1;
    return `t-${process.pid}-${seq}-${Date.now()}`;
}

/* the access-log record and the simulator's entry of one request id */
async function records(h, id) {
    let rec;
    for (let i = 0; i < 200 && !rec; i++) {
        rec = h.logs().find((r) => r.request_id === id);
        if (!rec) {
            await new Promise((r) => setTimeout(r, 25));
        }
    }
    assert.ok(rec, `no access-log record for ${id}:\n${h.stdout}`);
    const gens = (await getJSON(`${sim.url}/sim/generations`)).json;
    const gen = gens.find((g) => g.request_id === id);
    assert.ok(gen, `the simulator has no generation for ${id}`);
    return { rec, gen };
}

function sameAsSim(rec, gen) {
    assert.equal(rec.completion_tokens, gen.completion_tokens, 'completion tokens');
    assert.equal(rec.prompt_tokens, gen.prompt_tokens, 'prompt tokens');
    assert.equal(rec.finish_reason, gen.finish_reason, 'finish reason');
    assert.equal(rec.completion_hash, gen.text_hash, 'completion hash');
    assert.equal(rec.tokens_estimated, false);
    assert.match(rec.prompt_hash, /^[0-9a-f]{16}$/);
    assert.match(rec.params_hash, /^[0-9a-f]{16}$/);
    assert.equal(rec.request_parse, 'ok');
    assert.equal(rec.response_parse, 'ok');
    assert.equal(rec.provider, 'openai');
}

const messages = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Describe the sea in a few words.' },
];

test('plain chat: the record matches the simulator', async () => {
    const id = rid();
    const r = await client(px, { 'x-request-id': id }).chat.completions.create({
        model: 'sim-model', messages, max_tokens: 7, logprobs: true,
    });
    const { rec, gen } = await records(px, id);
    sameAsSim(rec, gen);
    assert.equal(rec.operation, 'chat');
    assert.equal(rec.stream, false);
    assert.equal(rec.model, 'sim-model');
    assert.equal(rec.response_id, r.id);
    assert.equal(rec.completion_tokens, r.usage.completion_tokens);
    assert.equal(rec.finish_reason, r.choices[0].finish_reason);
    const lps = r.choices[0].logprobs.content.map((e) => e.logprob);
    const mean = lps.reduce((a, b) => a + b, 0) / lps.length;
    assert.equal(rec.confidence.tokens, lps.length);
    assert.ok(Math.abs(rec.confidence.mean_logprob - mean) < 1e-5);
    assert.ok(Math.abs(rec.confidence.min_logprob - Math.min(...lps)) < 1e-5);
    assert.ok(Math.abs(rec.confidence.perplexity - Math.exp(-mean)) / Math.exp(-mean) < 1e-5);
    assert.ok(Math.abs(gen.logprob_sum - lps.reduce((a, b) => a + b, 0)) < 1e-4);
    assert.equal(rec.ttft_ms, null, 'no first token for a plain answer');
});

async function collect(stream) {
    const chunks = [];
    for await (const c of stream) {
        chunks.push(c);
    }
    return chunks;
}

/* chunks without the fields that differ between two requests */
function shape(chunks) {
    return chunks.map((c) => ({ ...c, id: undefined, created: undefined }));
}

test('streamed chat: usage injection is invisible to the SDK, counts are reported', async () => {
    const id = rid();
    const params = { model: 'sim-model', messages, max_tokens: 9, stream: true };
    const via = await collect(await client(px, { 'x-request-id': id })
        .chat.completions.create(params));
    const direct = await collect(await new OpenAI({
        baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0,
    }).chat.completions.create(params));

    assert.deepEqual(shape(via), shape(direct), 'the SDK sees the same chunks as without infertap');
    assert.ok(via.every((c) => c.usage === undefined && c.choices.length > 0), 'no usage chunk');

    const { rec, gen } = await records(px, id);
    sameAsSim(rec, gen);
    assert.equal(rec.stream, true);
    assert.equal(rec.completion_tokens, 9);
    const text = via.map((c) => c.choices[0].delta.content || '').join('');
    assert.ok(text.length > 0);
    assert.equal(gen.stream, true);
});

test('streamed chat with include_usage: the client keeps its usage chunk', async () => {
    const id = rid();
    const chunks = await collect(await client(px, { 'x-request-id': id }).chat.completions.create({
        model: 'sim-model', messages, max_tokens: 5, stream: true,
        stream_options: { include_usage: true },
    }));
    const last = chunks[chunks.length - 1];
    assert.equal(last.choices.length, 0);
    assert.equal(last.usage.completion_tokens, 5);
    const { rec, gen } = await records(px, id);
    sameAsSim(rec, gen);
});

test('stream and plain answers of one prompt have the same hashes', async () => {
    const a = rid();
    const b = rid();
    const p = { model: 'sim-model', messages, max_tokens: 6, temperature: 0 };
    await client(px, { 'x-request-id': a }).chat.completions.create(p);
    await collect(await client(px, { 'x-request-id': b }).chat.completions.create({
        ...p, stream: true,
    }));
    const ra = (await records(px, a)).rec;
    const rb = (await records(px, b)).rec;
    assert.equal(ra.prompt_hash, rb.prompt_hash);
    assert.equal(ra.params_hash, rb.params_hash);
    assert.equal(ra.completion_hash, rb.completion_hash);
});

test('inject_usage off: the stream is untouched and tokens come from its events', async () => {
    const id = rid();
    const chunks = await collect(await client(pxOff, { 'x-request-id': id })
        .chat.completions.create({ model: 'sim-model', messages, max_tokens: 8, stream: true }));
    assert.ok(chunks.every((c) => c.usage === undefined));
    let rec;
    for (let i = 0; i < 200 && !rec; i++) {
        rec = pxOff.logs().find((r) => r.request_id === id);
        await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(rec);
    assert.equal(rec.completion_tokens, 8);
    assert.equal(rec.tokens_estimated, true, 'the prompt count is an estimate');
    assert.ok(rec.prompt_tokens > 0);
    const gen = (await getJSON(`${sim.url}/sim/generations`)).json.find((g) => g.request_id === id);
    assert.equal(rec.completion_hash, gen.text_hash);
});

test('completions and embeddings through the SDK', async () => {
    const id = rid();
    const r = await client(px, { 'x-request-id': id }).completions.create({
        model: 'sim-model', prompt: 'Once upon a time', max_tokens: 4, logprobs: 1,
    });
    const { rec, gen } = await records(px, id);
    sameAsSim(rec, gen);
    assert.equal(rec.operation, 'text_completion');
    assert.equal(rec.confidence.tokens, r.choices[0].logprobs.token_logprobs.length);

    const id2 = rid();
    const chunks = await collect(await client(px, { 'x-request-id': id2 }).completions.create({
        model: 'sim-model', prompt: 'Once upon a time', max_tokens: 4, stream: true,
    }));
    assert.ok(chunks.every((c) => c.choices.length > 0), 'no usage chunk reaches the SDK');
    const s = await records(px, id2);
    sameAsSim(s.rec, s.gen);
    assert.equal(s.rec.completion_hash, rec.completion_hash);

    const id3 = rid();
    const e = await client(px, { 'x-request-id': id3 }).embeddings.create({
        model: 'sim-model', input: 'hello',
    });
    let erec;
    for (let i = 0; i < 200 && !erec; i++) {
        erec = px.logs().find((x) => x.request_id === id3);
        await new Promise((res) => setTimeout(res, 10));
    }
    assert.equal(erec.operation, 'embeddings');
    assert.equal(erec.prompt_tokens, e.usage.prompt_tokens);
    assert.equal(erec.completion_hash, null);
});

test('TTFT and TPOT follow the model server latency', async () => {
    const slow = await startSim(['--ttft-ms', '120', '--itl-ms', '20']);
    const h = await startProxy({ upstreams: [slow] });
    const id = rid();
    await collect(await client(h, { 'x-request-id': id }).chat.completions.create({
        model: 'sim-model', messages, max_tokens: 6, stream: true,
    }));
    const rec = (await h.waitLogs(1)).find((r) => r.request_id === id);
    const slack = SANITIZED ? 120 : 60;
    assert.ok(rec.ttft_ms >= 115 && rec.ttft_ms < 120 + slack, `ttft ${rec.ttft_ms}`);
    assert.ok(rec.tpot_ms >= 18 && rec.tpot_ms < 20 + slack / 2, `tpot ${rec.tpot_ms}`);
    assert.ok(rec.itl_max_ms >= 18, `itl_max ${rec.itl_max_ms}`);
    assert.ok(rec.upstream_ttfb_ms >= 0 && rec.upstream_ttfb_ms <= rec.ttft_ms + 1);
    assert.ok(rec.duration_ms >= rec.ttft_ms);
});

test('malformed JSON from the client is forwarded and counted as not understood', async () => {
    const id = rid();
    const r = await request(`${px.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': id },
        body: '{"model":"sim-model","messages":[',
    });
    assert.equal(r.status, 400, 'the server decided');
    const rec = (await px.waitLogs(1)).find((x) => x.request_id === id)
        || (await new Promise((res) => setTimeout(res, 200)), px.logs().find((x) => x.request_id === id));
    assert.equal(rec.request_parse, 'not_json');
    assert.equal(rec.model, null);
    const m = await px.metrics();
    assert.ok(metricValue(m, 'infertap_bodies_parsed_total',
        { side: 'request', outcome: 'not_json' }) >= 1, 'counted');
    assert.ok(metricValue(m, 'infertap_bodies_parsed_total',
        { side: 'request', outcome: 'ok' }) >= 5);
    const lint = await promtoolCheck((await px.admin('/metrics')).body);
    assert.deepEqual(lint.errors, [], 'promtool accepts /metrics');
});

test('a compressed or non-JSON answer is forwarded untouched and said so', async () => {
    const body = JSON.stringify({ id: 'x', choices: [{ index: 0, message: { content: 'hi' } }] });
    const gz = zlib.gzipSync(body);
    const up = await startUpstream((req, res) => {
        if (req.url.includes('plain')) {
            res.writeHead(200, { 'content-type': 'text/html' });
            res.end('<html>not json</html>');
            return;
        }
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        res.end(gz);
    });
    after(() => up.close());
    const h = await startProxy({ upstreams: [up] });
    const a = await request(`${h.url}/v1/chat/completions`, {
        method: 'POST', body: '{"model":"m","messages":[]}',
    });
    assert.deepEqual(Buffer.from(a.raw || a.body, a.raw ? undefined : 'binary').length > 0, true);
    const b = await request(`${h.url}/plain/v1/chat/completions`, {
        method: 'POST', body: '{"model":"m","messages":[]}',
    });
    assert.equal(b.body, '<html>not json</html>');
    const logs = await h.waitLogs(2);
    assert.equal(logs[0].response_parse, 'compressed');
    assert.equal(logs[0].request_parse, 'ok');
    assert.equal(logs[1].response_parse, 'not_json');
});

/* the events of an SSE body, data only */
function sseDataOf(text) {
    return text.split(/\r?\n\r?\n/).map((b) => b.trim()).filter((b) => b.startsWith('data:'))
        .map((b) => b.slice(5).trim());
}

test('Expect: 100-continue on a held streaming request: answered, injected, stripped', async () => {
    const id = rid();
    const body = JSON.stringify({ model: 'sim-model', messages, max_tokens: 4, stream: true });
    const r = await curl(['-sS', '-N', '-v', '-H', 'content-type: application/json',
        '-H', 'Expect: 100-continue', '-H', `x-request-id: ${id}`, '--data-binary', body,
        `${px.url}/v1/chat/completions`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /HTTP\/1\.1 100 Continue/);
    const events = sseDataOf(r.stdout);
    assert.equal(events[events.length - 1], '[DONE]');
    assert.ok(events.slice(0, -1).every((e) => JSON.parse(e).choices.length > 0),
        'no usage event reaches the client');
    const { rec, gen } = await records(px, id);
    sameAsSim(rec, gen);
});

test('a chunked streaming request is forwarded as it comes, without injection', async () => {
    const id = rid();
    const body = JSON.stringify({ model: 'sim-model', messages, max_tokens: 5, stream: true });
    const r = await curl(['-sS', '-N', '-H', 'content-type: application/json',
        '-H', 'Transfer-Encoding: chunked', '-H', `x-request-id: ${id}`, '--data-binary', body,
        `${px.url}/v1/chat/completions`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(sseDataOf(r.stdout).slice(0, -1).every((e) => JSON.parse(e).choices.length > 0));
    const { rec, gen } = await records(px, id);
    assert.equal(rec.completion_tokens, 5, 'counted from the stream');
    assert.equal(rec.tokens_estimated, true, 'no usage: the prompt count is an estimate');
    assert.equal(rec.completion_hash, gen.text_hash);
});

test('a body over the capture limit is forwarded untouched and said so', async () => {
    const h = await startProxy({ upstreams: [sim], args: ['--set', 'limits.capture_bytes=1k'] });
    const id = rid();
    const long = [{ role: 'user', content: 'x'.repeat(4000) }];
    const chunks = await collect(await client(h, { 'x-request-id': id }).chat.completions.create({
        model: 'sim-model', messages: long, max_tokens: 3, stream: true,
    }));
    assert.ok(chunks.length >= 3);
    const rec = (await h.waitLogs(1)).find((x) => x.request_id === id);
    assert.equal(rec.request_parse, 'too_large');
    assert.equal(rec.response_parse, 'ok');
    assert.equal(rec.completion_tokens, 3);
    assert.equal(rec.prompt_hash, null);
});

test('a held, rewritten request survives a retry to another upstream', async () => {
    const dead = await freePort();
    const h = await startProxy({
        upstreams: [dead, sim], args: ['--set', 'balance=round_robin'],
    });
    for (let i = 0; i < 2; i++) {
        const id = rid();
        const chunks = await collect(await client(h, { 'x-request-id': id })
            .chat.completions.create({ model: 'sim-model', messages, max_tokens: 3, stream: true }));
        assert.ok(chunks.every((c) => c.choices.length > 0), 'no usage event reaches the SDK');
        const rec = (await h.waitLogs(i + 1)).find((x) => x.request_id === id);
        assert.equal(rec.completion_tokens, 3);
        assert.equal(rec.tokens_estimated, false, 'usage came from the server');
    }
    assert.ok(h.logs().some((r) => r.retries === 1), 'one request was retried');
});
