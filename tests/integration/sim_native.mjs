/*
 * tests/integration/sim_native.mjs: the simulator's non-OpenAI dialects:
 * Ollama (/api/chat, /api/generate as NDJSON streams and single objects),
 * TGI (/generate, /generate_stream), llama.cpp (/completion) and KServe v2
 * (/v2/models/{name}/infer and /ready).  Streamed and plain answers to the
 * same request must agree, and the reported counts must match what was sent.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
    startSim, stopAll, request, postJSON, parseNDJSON, sseData, timedNDJSON,
} from './lib/harness.mjs';

let sim;

before(async () => {
    sim = await startSim(['--itl-ms', '5', '--tokens', '8', '--model', 'native-model']);
});

after(stopAll);

const url = (p) => `${sim.url}${p}`;

function checkOllamaStream(objs, field) {
    assert.ok(objs.length >= 2);
    const tokens = objs.slice(0, -1);
    const last = objs.at(-1);
    for (const o of tokens) {
        assert.equal(o.done, false);
        assert.equal(typeof (field === 'message' ? o.message.content : o.response), 'string');
    }
    assert.equal(last.done, true);
    assert.equal(typeof last.done_reason, 'string');
    assert.ok(last.prompt_eval_count > 0);
    assert.equal(last.eval_count, tokens.length, 'eval_count equals the token objects');
    assert.ok(Number.isInteger(last.eval_duration) && last.eval_duration > 0,
        `eval_duration ${last.eval_duration}`);
    return tokens.map((o) => (field === 'message' ? o.message.content : o.response)).join('') +
        (field === 'message' ? last.message?.content ?? '' : last.response ?? '');
}

test('ollama /api/chat streams NDJSON by default', async () => {
    const r = await request(url('/api/chat'), {
        method: 'POST',
        body: { model: 'llama-x', messages: [{ role: 'user', content: 'hi ollama' }] },
    });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'] ?? '', /application\/x-ndjson/);
    const timed = timedNDJSON(r.chunks);
    const objs = timed.map((x) => x.obj);
    for (const o of objs) {
        assert.equal(o.model, 'llama-x');
    }
    assert.equal(objs[0].message.role, 'assistant');
    const text = checkOllamaStream(objs, 'message');
    assert.ok(text.length > 0);
    assert.equal(objs.at(-1).eval_count, 8);
    assert.equal(objs.at(-1).done_reason, 'stop');
    assert.ok(timed.at(-1).t - timed[0].t >= 20, 'token objects are spread over time');
    /* eval_duration is in nanoseconds: 8 tokens at 5 ms apart take >= ~35 ms */
    assert.ok(objs.at(-1).eval_duration >= 25e6 && objs.at(-1).eval_duration < 10e9,
        `eval_duration ${objs.at(-1).eval_duration} ns`);
});

test('ollama /api/chat stream:false returns one object equal to the stream', async () => {
    const body = {
        model: 'llama-x', messages: [{ role: 'user', content: 'same again' }],
        options: { seed: 3 },
    };
    const s = await request(url('/api/chat'), { method: 'POST', body });
    const streamed = checkOllamaStream(parseNDJSON(s.body), 'message');
    const p = await postJSON(url('/api/chat'), { ...body, stream: false });
    assert.equal(p.status, 200);
    assert.ok(p.json, `one JSON object: ${p.body.slice(0, 200)}`);
    assert.equal(p.body.trim().split('\n').length, 1);
    assert.equal(p.json.done, true);
    assert.equal(p.json.message.role, 'assistant');
    assert.equal(p.json.message.content, streamed);
    assert.equal(p.json.eval_count, 8);
    assert.ok(p.json.prompt_eval_count > 0);
    assert.equal(typeof p.json.done_reason, 'string');
});

test('ollama /api/generate streams and stream:false agree', async () => {
    const body = { model: 'gen-x', prompt: 'Why is the sky blue?' };
    const s = await request(url('/api/generate'), { method: 'POST', body });
    assert.equal(s.status, 200);
    const objs = parseNDJSON(s.body);
    const text = checkOllamaStream(objs, 'response');
    assert.equal(objs.at(-1).model, 'gen-x');
    assert.equal(objs.at(-1).eval_count, 8);
    const p = await postJSON(url('/api/generate'), { ...body, stream: false });
    assert.equal(p.status, 200);
    assert.equal(p.json.done, true);
    assert.equal(p.json.response, text);
    assert.equal(p.json.eval_count, 8);
});

test('ollama missing messages / prompt is a 400', async () => {
    const a = await postJSON(url('/api/chat'), { model: 'x' });
    assert.equal(a.status, 400);
    const b = await postJSON(url('/api/generate'), { model: 'x' });
    assert.equal(b.status, 400);
});

test('TGI /generate with details', async () => {
    const r = await postJSON(url('/generate'), {
        inputs: 'Tell me about TGI', parameters: { max_new_tokens: 5, details: true },
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(typeof r.json.generated_text, 'string');
    const d = r.json.details;
    assert.equal(d.generated_tokens, 5);
    assert.equal(d.finish_reason, 'length');
    assert.equal(d.tokens.length, 5);
    for (const t of d.tokens) {
        assert.equal(typeof t.text, 'string');
        assert.ok(Number.isFinite(t.logprob) && t.logprob <= 0);
        assert.ok(Number.isInteger(t.id));
    }
    assert.equal(d.tokens.map((t) => t.text).join(''), r.json.generated_text);

    const full = await postJSON(url('/generate'), {
        inputs: 'Tell me about TGI', parameters: { max_new_tokens: 50, details: true },
    });
    assert.equal(full.json.details.generated_tokens, 8);
    assert.notEqual(full.json.details.finish_reason, 'length');
});

test('TGI /generate_stream: token events, last one with generated_text and details', async () => {
    const params = { inputs: 'stream TGI', parameters: { max_new_tokens: 6, details: true } };
    const r = await request(url('/generate_stream'), { method: 'POST', body: params });
    assert.equal(r.status, 200);
    assert.match(r.headers['content-type'] ?? '', /text\/event-stream/);
    const evs = sseData(r.body).map((d) => JSON.parse(d));
    assert.equal(evs.length, 6);
    for (const e of evs.slice(0, -1)) {
        assert.equal(e.generated_text, null);
        assert.equal(typeof e.token.text, 'string');
        assert.ok(Number.isFinite(e.token.logprob));
    }
    const last = evs.at(-1);
    const text = evs.map((e) => e.token.text).join('');
    assert.equal(last.generated_text, text);
    assert.equal(last.details.generated_tokens, 6);
    assert.equal(last.details.finish_reason, 'length');
    const plain = await postJSON(url('/generate'), params);
    assert.equal(plain.json.generated_text, text, 'stream and plain agree');
});

test('llama.cpp /completion plain', async () => {
    const r = await postJSON(url('/completion'), { prompt: 'llama prompt', n_predict: 5 });
    assert.equal(r.status, 200, r.body);
    assert.equal(typeof r.json.content, 'string');
    assert.ok(r.json.content.length > 0);
    assert.equal(r.json.tokens_predicted, 5);
    assert.ok(r.json.tokens_evaluated > 0);
    const t = r.json.timings;
    assert.equal(t.predicted_n, 5);
    assert.equal(t.prompt_n, r.json.tokens_evaluated);
    assert.ok(Number.isFinite(t.predicted_ms) && t.predicted_ms >= 0);
});

test('llama.cpp /completion stream: SSE per token, last with stop:true', async () => {
    const body = { prompt: 'llama stream', n_predict: 6 };
    const r = await request(url('/completion'), { method: 'POST', body: { ...body, stream: true } });
    assert.equal(r.status, 200);
    const evs = sseData(r.body).map((d) => JSON.parse(d));
    const last = evs.at(-1);
    assert.equal(last.stop, true);
    assert.ok(evs.slice(0, -1).every((e) => e.stop === false));
    const tokenEvs = evs.filter((e) => !e.stop);
    const text = evs.map((e) => e.content ?? '').join('');
    assert.ok(tokenEvs.length === 6 || (tokenEvs.length === 5 && last.content),
        `${tokenEvs.length} token events`);
    assert.equal(last.tokens_predicted ?? last.timings?.predicted_n, 6);
    const plain = await postJSON(url('/completion'), body);
    assert.equal(plain.json.content, text, 'stream and plain agree');
});

test('KServe v2 infer: probabilities summing to 1, model_name echoed', async () => {
    const r = await postJSON(url('/v2/models/my-classifier/infer'), {
        inputs: [{ name: 'input-0', shape: [1, 4], datatype: 'FP32', data: [0.1, 0.2, 0.3, 0.4] }],
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json.model_name, 'my-classifier');
    const out = r.json.outputs[0];
    assert.ok(Array.isArray(out.data) && out.data.length >= 2);
    assert.ok(out.data.every((p) => p >= 0 && p <= 1));
    const sum = out.data.reduce((a, p) => a + p, 0);
    assert.ok(Math.abs(sum - 1) <= 1e-6, `sum ${sum}`);
    if (out.shape) {
        assert.equal(out.shape.reduce((a, n) => a * n, 1), out.data.length);
    }
    const again = await postJSON(url('/v2/models/my-classifier/infer'), {
        inputs: [{ name: 'input-0', shape: [1, 4], datatype: 'FP32', data: [0.1, 0.2, 0.3, 0.4] }],
    });
    assert.deepEqual(again.json.outputs[0].data, out.data, 'same input, same output');
});

test('KServe v2 ready', async () => {
    const r = await request(url('/v2/models/my-classifier/ready'));
    assert.equal(r.status, 200);
});

test('simulator exits 0 on SIGTERM', async () => {
    await sim.stop();
});
