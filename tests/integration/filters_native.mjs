/*
 * filters_native.mjs: what infertap learns from the native APIs of Ollama,
 * TGI, llama.cpp and KServe v2, checked against what the simulator knows it
 * sent (/sim/generations) and what the client decoded itself.
 *
 * Each format, streamed and plain: provider, operation, stream flag, model,
 * token counts (reported where the format reports them, estimated only where
 * it does not), finish reason, the completion hash (the simulator's text
 * hash) and the confidence figures (the simulator's logprob sum); a KServe
 * classifier's score, by default and from a configured JSON pointer.  The
 * same prompt streamed and plain hashes alike; TTFT follows the simulator's
 * latency; a cut stream says so and hashes what arrived.  With the filters
 * off, or off for one route, nothing is analysed and the client receives
 * exactly the bytes the model server sent.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import {
    startSim as tapStartSim, startProxy as tapStartProxy, startUpstream, stopAll, getJSON,
    request, parseNDJSON, sseData, SANITIZED,
} from './lib/harness.mjs';

let sim;
let px;

/* every program started here, stopped and judged by the last test */
const started = [];

async function startSim(args) {
    const h = await tapStartSim(args);
    started.push(h);
    return h;
}

async function startProxy(opts) {
    const h = await tapStartProxy(opts);
    started.push(h);
    return h;
}

before(async () => {
    sim = await startSim(['--tokens', '12', '--threads', '2']);
    px = await startProxy({ upstreams: [sim] });
});

after(stopAll);

let seq = 0;
function rid() {
    seq += 1;
    return `n-${process.pid}-${seq}-${Date.now()}`;
}

/* POST body to path through proxy h with a fresh request id: {id, r}. */
async function send(h, path, body) {
    const id = rid();
    const r = await request(`${h.url}${path}`, {
        method: 'POST', body, headers: { 'x-request-id': id },
    });
    return { id, r };
}

/* The access-log record of one request id. */
async function record(h, id) {
    let rec;
    for (let i = 0; i < 200 && !rec; i++) {
        rec = h.logs().find((x) => x.request_id === id);
        if (!rec) {
            await new Promise((res) => setTimeout(res, 25));
        }
    }
    assert.ok(rec, `no access-log record for ${id}:\n${h.stdout}\n${h.stderr}`);
    return rec;
}

/* The record and the simulator's entry of one request id. */
async function records(h, id, s = sim) {
    const rec = await record(h, id);
    const gens = (await getJSON(`${s.url}/sim/generations`)).json;
    const gen = gens.find((g) => g.request_id === id);
    assert.ok(gen, `the simulator has no generation for ${id}`);
    return { rec, gen };
}

/* ---- what the client decodes from each format ---------------------------------------- */

/*
 * {text, finish (native), completion, prompt (as reported; undefined when
 * the format did not say), logprobs (the chosen tokens', [] when none)}.
 */
function decodeOllama(body, chat) {
    const objs = parseNDJSON(body);
    const text = objs.map((o) => (chat ? o.message.content : o.response)).join('');
    const last = objs[objs.length - 1];
    assert.equal(last.done, true, 'the last object says done');
    return {
        text, finish: last.done_reason, completion: last.eval_count,
        prompt: last.prompt_eval_count, logprobs: [], objects: objs.length,
    };
}

function decodeTGI(body, stream) {
    if (!stream) {
        const j = JSON.parse(body);
        const d = j.details;
        return {
            text: j.generated_text,
            finish: d ? d.finish_reason : undefined,
            completion: d ? d.generated_tokens : undefined,
            prompt: d && d.prefill.length > 0 ? d.prefill.length : undefined,
            logprobs: d ? d.tokens.map((t) => t.logprob) : [],
        };
    }
    const evs = sseData(body).map((d) => JSON.parse(d));
    const last = evs[evs.length - 1];
    return {
        text: evs.filter((e) => !e.token.special).map((e) => e.token.text).join(''),
        finish: last.details ? last.details.finish_reason : undefined,
        completion: last.details ? last.details.generated_tokens : undefined,
        prompt: last.details ? last.details.input_length : undefined,
        logprobs: evs.map((e) => e.token.logprob),
        generated: last.generated_text,
        objects: evs.length,
    };
}

/* llama.cpp's candidate lists: the chosen token is the one whose tok_str is the content. */
function llamaLogprobs(cps) {
    return (cps || []).map((e) => {
        const c = e.probs.find((p) => p.tok_str === e.content);
        assert.ok(c, 'the chosen token is among the candidates');
        return Math.log(c.prob);
    });
}

function decodeLlama(body, stream) {
    const objs = stream ? sseData(body).map((d) => JSON.parse(d)) : [JSON.parse(body)];
    const last = objs[objs.length - 1];
    assert.equal(last.stop, true);
    return {
        text: objs.map((o) => o.content).join(''),
        finish: last.stop_type,
        completion: last.tokens_predicted,
        prompt: last.tokens_evaluated,
        model: last.model,
        logprobs: objs.flatMap((o) => llamaLogprobs(o.completion_probabilities)),
        objects: objs.length,
    };
}

function ceil4(n) {
    return Math.ceil(n / 4);
}

/*
 * The record against the simulator's entry and the client's decoding.
 * want: {provider, operation, stream, model, promptText (bytes of prompt
 * text, for the estimate where the format reports no prompt count)}.
 */
function check(rec, gen, dec, want) {
    assert.equal(rec.provider, want.provider, 'provider');
    assert.equal(rec.operation, want.operation, 'operation');
    assert.equal(rec.stream, want.stream, 'stream flag');
    assert.equal(gen.stream, want.stream, 'the simulator streamed as asked');
    assert.equal(rec.model, want.model, 'model');
    assert.equal(rec.request_parse, 'ok');
    assert.equal(rec.response_parse, 'ok');
    assert.equal(rec.upstream_error, null);

    assert.equal(rec.completion_hash, gen.text_hash, 'completion hash');
    assert.equal(rec.finish_reason, gen.finish_reason, 'finish reason');

    /* completion tokens: the format's own count, else the tokens it sent one by one */
    if (dec.completion !== undefined || dec.logprobs.length > 0 || want.stream) {
        assert.equal(rec.completion_tokens, gen.completion_tokens, 'completion tokens');
        if (dec.completion !== undefined) {
            assert.equal(dec.completion, gen.completion_tokens);
        }
    } else {
        /* a bare text answer: a quarter of its bytes */
        assert.equal(rec.completion_tokens, ceil4(Buffer.byteLength(dec.text)),
            'completion tokens estimated from the text');
        assert.equal(rec.tokens_estimated, true);
    }

    if (dec.prompt !== undefined) {
        assert.equal(dec.prompt, gen.prompt_tokens);
        assert.equal(rec.prompt_tokens, gen.prompt_tokens, 'prompt tokens');
        if (dec.completion !== undefined) {
            assert.equal(rec.tokens_estimated, false);
        }
    } else {
        assert.equal(rec.prompt_tokens, ceil4(want.promptText),
            'prompt tokens estimated from the prompt text');
        assert.equal(rec.tokens_estimated, true, 'the prompt count is an estimate');
    }

    assert.match(rec.prompt_hash, /^[0-9a-f]{16}$/);
    assert.match(rec.params_hash, /^[0-9a-f]{16}$/);

    if (gen.logprob_sum === null) {
        assert.equal(rec.confidence, null, 'no logprobs were sent');
        assert.equal(dec.logprobs.length, 0);
        return;
    }
    const c = rec.confidence;
    assert.ok(c && typeof c.tokens === 'number', `confidence ${JSON.stringify(c)}`);
    assert.equal(c.tokens, gen.completion_tokens, 'one logprob per token');
    assert.equal(c.tokens, dec.logprobs.length);
    const sum = c.mean_logprob * c.tokens;
    assert.ok(Math.abs(sum - gen.logprob_sum) <= 1e-4 * Math.abs(gen.logprob_sum),
        `mean * tokens ${sum} vs the simulator's sum ${gen.logprob_sum}`);
    const mean = dec.logprobs.reduce((a, b) => a + b, 0) / dec.logprobs.length;
    assert.ok(Math.abs(c.mean_logprob - mean) <= 1e-4 * Math.abs(mean), 'mean of what arrived');
    const min = Math.min(...dec.logprobs);
    assert.ok(Math.abs(c.min_logprob - min) <= 1e-4 * Math.abs(min), `min ${c.min_logprob}`);
    assert.ok(Math.abs(c.perplexity - Math.exp(-mean)) <= 1e-4 * Math.exp(-mean));
}

/* Stream and plain records of one prompt: same prompt, params and completion hashes. */
function sameHashes(a, b) {
    assert.equal(a.prompt_hash, b.prompt_hash, 'prompt hash');
    assert.equal(a.params_hash, b.params_hash, 'params hash');
    assert.equal(a.completion_hash, b.completion_hash, 'completion hash');
}

/* ---- Ollama ---------------------------------------------------------------------------- */

const messages = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Describe the sea in a few words.' },
];

/*
 * Ollama reports both counts in its last object (prompt_eval_count,
 * eval_count), streamed or not: nothing is estimated.  It sends no logprobs
 * unless asked (and the simulator never does).
 */
test('ollama /api/chat, streamed by default and plain', async () => {
    const body = { model: 'llama3', messages, options: { temperature: 0, seed: 7 } };
    const s = await send(px, '/api/chat', body);
    assert.equal(s.r.status, 200);
    assert.match(s.r.headers['content-type'], /ndjson/);
    const p = await send(px, '/api/chat', { ...body, stream: false });
    assert.equal(p.r.status, 200);

    const sd = decodeOllama(s.r.body, true);
    assert.ok(sd.objects > 2, 'the answer was streamed');
    const a = await records(px, s.id);
    check(a.rec, a.gen, sd, {
        provider: 'ollama', operation: 'chat', stream: true, model: 'llama3',
    });
    assert.equal(a.rec.tokens_estimated, false);
    assert.equal(a.gen.finish_reason_native, sd.finish);
    assert.ok(a.rec.ttft_ms !== null && a.rec.ttft_ms >= 0, 'a stream has a first token');

    const pd = decodeOllama(p.r.body, true);
    assert.equal(pd.objects, 1);
    const b = await records(px, p.id);
    check(b.rec, b.gen, pd, {
        provider: 'ollama', operation: 'chat', stream: false, model: 'llama3',
    });
    assert.equal(b.rec.tokens_estimated, false);
    assert.equal(b.rec.ttft_ms, null, 'no first token for a plain answer');
    assert.match(b.rec.prefix_hash, /^[0-9a-f]{16}$/, 'two messages: a prefix');

    assert.equal(sd.text, pd.text);
    sameHashes(a.rec, b.rec);
});

test('ollama /api/generate, streamed and plain, with a length limit', async () => {
    const body = {
        model: 'llama3', prompt: 'Once upon a time there was', system: 'Be brief.',
        options: { num_predict: 5 },
    };
    const s = await send(px, '/api/generate', { ...body, stream: true });
    const p = await send(px, '/api/generate', { ...body, stream: false });
    const sd = decodeOllama(s.r.body, false);
    const pd = decodeOllama(p.r.body, false);
    assert.equal(sd.finish, 'length');
    assert.equal(sd.text, pd.text);

    const a = await records(px, s.id);
    check(a.rec, a.gen, sd, {
        provider: 'ollama', operation: 'text_completion', stream: true, model: 'llama3',
    });
    assert.equal(a.rec.completion_tokens, 5);
    const b = await records(px, p.id);
    check(b.rec, b.gen, pd, {
        provider: 'ollama', operation: 'text_completion', stream: false, model: 'llama3',
    });
    sameHashes(a.rec, b.rec);

    /* another prompt hashes otherwise */
    const o = await send(px, '/api/generate', {
        ...body, prompt: 'Once upon a time', stream: false,
    });
    const c = await records(px, o.id);
    assert.notEqual(c.rec.prompt_hash, b.rec.prompt_hash);
    assert.equal(c.rec.params_hash, b.rec.params_hash);
});

/* ---- TGI ------------------------------------------------------------------------------- */

/*
 * TGI reports the prompt length only as details.prefill, filled with
 * decoder_input_details (the simulator sends it empty), and as
 * details.input_length in the streams of newer servers (the simulator sends
 * none).  So the prompt count is truly absent here and must be the estimate
 * ceil(prompt bytes / 4), marked as one.  This prompt has 7 words (the
 * simulator's count) and 32 bytes (an estimate of 8): the two differ.
 */
const tgiInputs = 'Describe the sea in a few words.';

test('tgi /generate with details, without, and /generate_stream', async () => {
    const params = { max_new_tokens: 6, temperature: 0.5, seed: 3, details: true };
    const d = await send(px, '/generate', { inputs: tgiInputs, parameters: params });
    assert.equal(d.r.status, 200);
    const s = await send(px, '/generate_stream', { inputs: tgiInputs, parameters: params });
    assert.equal(s.r.status, 200);
    assert.match(s.r.headers['content-type'], /event-stream/);
    const nd = { ...params };
    delete nd.details;
    const b = await send(px, '/generate', { inputs: tgiInputs, parameters: nd });

    const want = {
        provider: 'tgi', operation: 'text_completion', model: null,
        promptText: Buffer.byteLength(tgiInputs),
    };

    /* TGI names no model, in the request or in the answer */
    const dd = decodeTGI(d.r.body, false);
    assert.equal(dd.finish, 'length');
    const rd = await records(px, d.id);
    check(rd.rec, rd.gen, dd, { ...want, stream: false });
    assert.equal(rd.gen.finish_reason_native, dd.finish);
    assert.equal(rd.rec.completion_tokens, 6);
    assert.notEqual(rd.rec.prompt_tokens, rd.gen.prompt_tokens, 'an estimate, not a count');

    const sd = decodeTGI(s.r.body, true);
    assert.equal(sd.text, sd.generated, 'token texts make the generated text');
    const rs = await records(px, s.id);
    check(rs.rec, rs.gen, sd, { ...want, stream: true });
    assert.ok(rs.rec.ttft_ms !== null);

    /* without details: a bare text, so no finish reason and estimated completion tokens */
    const bd = decodeTGI(b.r.body, false);
    assert.equal(bd.finish, undefined);
    const rb = await records(px, b.id);
    check(rb.rec, rb.gen, bd, { ...want, stream: false });
    assert.equal(rb.rec.finish_reason, null);
    assert.equal(rb.gen.finish_reason, null);

    assert.equal(dd.text, sd.text);
    assert.equal(dd.text, bd.text);
    sameHashes(rd.rec, rs.rec);
    assert.equal(rb.rec.prompt_hash, rd.rec.prompt_hash);
    assert.equal(rb.rec.completion_hash, rd.rec.completion_hash);
    assert.notEqual(rb.rec.params_hash, rd.rec.params_hash, 'details is a parameter');
});

test('tgi: an end-of-sequence finish is "stop"', async () => {
    const d = await send(px, '/generate', { inputs: 'hello', parameters: { details: true } });
    const dd = decodeTGI(d.r.body, false);
    assert.equal(dd.finish, 'eos_token');
    const { rec, gen } = await records(px, d.id);
    assert.equal(gen.finish_reason, 'stop');
    check(rec, gen, dd, {
        provider: 'tgi', operation: 'text_completion', stream: false, model: null,
        promptText: 5,
    });
});

/* ---- llama.cpp ------------------------------------------------------------------------- */

/*
 * llama.cpp reports tokens_evaluated and tokens_predicted in its last
 * object: nothing is estimated.  With n_probs the simulator sends the older
 * candidate lists, so the logprobs are logs of printed probabilities.
 */
test('llama.cpp /completion, plain and streamed, with n_probs', async () => {
    const body = { prompt: 'The quick brown fox jumps', n_predict: 7, n_probs: 3, seed: 11 };
    const p = await send(px, '/completion', body);
    const s = await send(px, '/completion', { ...body, stream: true });
    assert.match(s.r.headers['content-type'], /event-stream/);
    const pd = decodeLlama(p.r.body, false);
    const sd = decodeLlama(s.r.body, true);
    assert.equal(pd.text, sd.text);
    assert.ok(sd.objects > 7, 'the answer was streamed');

    const want = { provider: 'llamacpp', operation: 'text_completion', model: 'sim-model' };
    const a = await records(px, p.id);
    assert.equal(a.gen.model, pd.model);
    check(a.rec, a.gen, pd, { ...want, stream: false });
    assert.equal(a.rec.tokens_estimated, false);
    assert.equal(a.rec.response_model, pd.model);
    assert.equal(a.gen.finish_reason_native, pd.finish);
    const b = await records(px, s.id);
    check(b.rec, b.gen, sd, { ...want, stream: true });
    assert.equal(b.rec.tokens_estimated, false);
    sameHashes(a.rec, b.rec);

    /* without n_probs: no confidence, and another params hash */
    const q = await send(px, '/completion', { prompt: body.prompt, stream: true });
    const qd = decodeLlama(q.r.body, true);
    assert.equal(qd.finish, 'eos');
    const c = await records(px, q.id);
    check(c.rec, c.gen, qd, { ...want, stream: true });
    assert.equal(c.rec.finish_reason, 'stop');
    assert.equal(c.rec.prompt_hash, a.rec.prompt_hash);
    assert.notEqual(c.rec.params_hash, a.rec.params_hash);
});

/* ---- KServe ---------------------------------------------------------------------------- */

function kserveBody(i) {
    return { inputs: [{ name: 'text', shape: [1, 2], datatype: 'FP32', data: [i, i + 0.5] }] };
}

/*
 * A classifier names no tokens and no text: its record has a score, the
 * largest class probability of the first output.  Several inputs, so that
 * the largest is not always at the same place.
 */
test('kserve /v2/models/{name}/infer: the score is the largest probability', async () => {
    const places = new Set();
    for (let i = 0; i < 6; i++) {
        const { id, r } = await send(px, '/v2/models/m/infer', kserveBody(i));
        assert.equal(r.status, 200);
        const j = JSON.parse(r.body);
        const data = j.outputs[0].data;
        const max = Math.max(...data);
        places.add(data.indexOf(max));
        const { rec, gen } = await records(px, id);
        assert.equal(rec.provider, 'kserve');
        assert.equal(rec.operation, 'infer');
        assert.equal(rec.model, 'm');
        assert.equal(gen.model, 'm');
        assert.equal(rec.stream, false);
        assert.equal(gen.stream, false);
        assert.equal(rec.response_id, j.id);
        assert.deepEqual(rec.confidence, { score: max });
        assert.equal(rec.prompt_tokens, null);
        assert.equal(rec.completion_tokens, null);
        assert.equal(rec.tokens_estimated, null);
        assert.equal(gen.text_hash, null);
        assert.equal(rec.completion_hash, null);
        assert.equal(rec.finish_reason, gen.finish_reason);
        assert.match(rec.prompt_hash, /^[0-9a-f]{16}$/);
        assert.equal(rec.request_parse, 'ok');
        assert.equal(rec.response_parse, 'ok');
    }
    assert.ok(places.size > 1, 'the largest probability moved between classes');
});

test('kserve: a configured JSON pointer chooses the score', async () => {
    const h = await startProxy({
        upstreams: [sim], args: ['--set', 'scores=/v2/models/m/infer = /outputs/0/data/1'],
    });
    let differs = 0;
    for (let i = 0; i < 6; i++) {
        const { id, r } = await send(h, '/v2/models/m/infer', kserveBody(i));
        const data = JSON.parse(r.body).outputs[0].data;
        if (data[1] !== Math.max(...data)) {
            differs++;
        }
        const rec = await record(h, id);
        assert.deepEqual(rec.confidence, { score: data[1] });
    }
    assert.ok(differs > 0, 'data[1] was not always the largest');

    /* another model's path keeps the default */
    const { id, r } = await send(h, '/v2/models/other/infer', kserveBody(1));
    const data = JSON.parse(r.body).outputs[0].data;
    assert.deepEqual((await record(h, id)).confidence, { score: Math.max(...data) });
});

test('kserve: the score of nested class probabilities is their largest', async () => {
    const answer = {
        model_name: 'b', id: 'x1',
        outputs: [{
            name: 'probabilities', shape: [2, 3], datatype: 'FP32',
            data: [[0.1, 0.85, 0.05], [0.3, 0.2, 0.5]],
        }],
    };
    const up = await startUpstream((req, res, rec) => {
        rec.done.then(() => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(answer));
        });
    });
    const h = await startProxy({ upstreams: [up] });
    const { id, r } = await send(h, '/v2/models/b/infer', kserveBody(0));
    const data = JSON.parse(r.body).outputs[0].data;
    const rec = await record(h, id);
    assert.deepEqual(rec.confidence, { score: Math.max(...data.flat()) });
    await up.close();
});

/* ---- latency --------------------------------------------------------------------------- */

test('TTFT of a stream follows the model server, for each protocol', async () => {
    const slow = await startSim(['--ttft-ms', '80', '--itl-ms', '10', '--tokens', '6']);
    const h = await startProxy({ upstreams: [slow] });
    const slack = SANITIZED ? 120 : 60;
    const calls = [
        ['/api/chat', { model: 'llama3', messages }],
        ['/generate_stream', { inputs: tgiInputs, parameters: { details: true } }],
        ['/completion', { prompt: 'The quick brown fox', stream: true, n_probs: 1 }],
    ];
    for (const [path, body] of calls) {
        const { id, r } = await send(h, path, body);
        assert.equal(r.status, 200);
        const { rec, gen } = await records(h, id, slow);
        assert.equal(rec.stream, true);
        assert.equal(rec.completion_hash, gen.text_hash);
        assert.ok(rec.ttft_ms >= 75 && rec.ttft_ms <= 80 + slack, `${path}: ttft ${rec.ttft_ms}`);
        assert.ok(rec.tpot_ms >= 8 && rec.tpot_ms <= 10 + slack / 2,
            `${path}: tpot ${rec.tpot_ms}`);
        assert.ok(rec.itl_max_ms >= 8, `${path}: itl_max ${rec.itl_max_ms}`);
        assert.ok(rec.duration_ms >= rec.ttft_ms);
    }
    /* a plain answer has no first token of its own */
    const { id } = await send(h, '/api/chat', { model: 'llama3', messages, stream: false });
    const rec = await record(h, id);
    assert.equal(rec.ttft_ms, null);
    assert.ok(rec.duration_ms >= 75 + 5 * 8, `plain duration ${rec.duration_ms}`);
});

/* ---- cut streams ----------------------------------------------------------------------- */

test('a cut stream is said to be cut and hashes what arrived', async () => {
    const cut = await startSim(['--error-rate', '1', '--error-kind', 'cut', '--tokens', '10']);
    const h = await startProxy({ upstreams: [cut] });
    const calls = [
        ['/api/chat', { model: 'llama3', messages }, 'ollama'],
        ['/api/generate', { model: 'llama3', prompt: 'Once upon a time' }, 'ollama'],
        ['/generate_stream', { inputs: tgiInputs, parameters: { details: true } }, 'tgi'],
        ['/completion', { prompt: 'The quick brown fox', stream: true, n_probs: 2 }, 'llamacpp'],
    ];
    for (const [path, body, provider] of calls) {
        const { id, r } = await send(h, path, body);
        assert.equal(r.status, 200);
        assert.equal(r.aborted, true, `${path}: the client saw the cut`);
        const { rec, gen } = await records(h, id, cut);
        assert.equal(gen.error, 'cut');
        assert.ok(gen.completion_tokens > 0 && gen.completion_tokens < 10, 'cut half-way');
        assert.equal(rec.provider, provider);
        assert.equal(rec.stream, true);
        assert.equal(rec.response_parse, 'cut', `${path}: response_parse`);
        assert.equal(rec.completion_hash, gen.text_hash, `${path}: hash of what was sent`);
        assert.equal(rec.completion_tokens, gen.completion_tokens, `${path}: tokens sent`);
        assert.equal(rec.finish_reason, null, 'no finish reason arrived');
        assert.equal(gen.finish_reason, null);
        if (gen.logprob_sum !== null) {
            assert.equal(rec.confidence.tokens, gen.completion_tokens);
            assert.ok(Math.abs(rec.confidence.mean_logprob * rec.confidence.tokens
                - gen.logprob_sum) <= 1e-4 * Math.abs(gen.logprob_sum));
        }
    }
});

/* ---- filters off ----------------------------------------------------------------------- */

/*
 * A relay in front of the simulator that keeps the body bytes it passed on,
 * by request id: the reference for what the client must receive (Ollama and
 * llama.cpp answers carry times, so two requests never match byte for byte).
 */
async function startRelay(target) {
    const sent = new Map();
    const up = await startUpstream((req, res, rec) => {
        rec.done.then((body) => {
            const headers = { ...req.headers, host: `${target.host}:${target.port}` };
            delete headers.connection;
            const out = http.request({
                host: target.host, port: target.port, path: req.url, method: req.method,
                headers, agent: false,
            }, (sr) => {
                const parts = [];
                const h = { 'content-type': sr.headers['content-type'] };
                if (sr.headers['content-length'] !== undefined) {
                    h['content-length'] = sr.headers['content-length'];
                }
                res.writeHead(sr.statusCode, h);
                sr.on('data', (d) => {
                    parts.push(d);
                    res.write(d);
                });
                sr.on('end', () => {
                    sent.set(req.headers['x-request-id'], Buffer.concat(parts));
                    res.end();
                });
            });
            out.end(body);
        });
    });
    up.sent = sent;
    return up;
}

const GENAI_FIELDS = [
    'provider', 'operation', 'model', 'response_model', 'response_id', 'stream',
    'prompt_tokens', 'completion_tokens', 'cached_tokens', 'tokens_estimated', 'ttft_ms',
    'tpot_ms', 'itl_max_ms', 'prompt_hash', 'params_hash', 'prefix_hash', 'completion_hash',
    'finish_reason', 'confidence', 'request_parse', 'response_parse', 'upstream_error',
];

const everyFormat = [
    ['/api/chat', { model: 'llama3', messages }],
    ['/api/chat', { model: 'llama3', messages, stream: false }],
    ['/api/generate', { model: 'llama3', prompt: 'Once upon a time', stream: false }],
    ['/generate', { inputs: tgiInputs, parameters: { details: true } }],
    ['/generate_stream', { inputs: tgiInputs }],
    ['/completion', { prompt: 'The quick brown fox', n_probs: 2 }],
    ['/completion', { prompt: 'The quick brown fox', n_probs: 2, stream: true }],
    ['/v2/models/m/infer', kserveBody(2)],
];

test('filters off: nothing is analysed and the bytes are the server\'s', async () => {
    const relay = await startRelay(sim);
    const off = await startProxy({ upstreams: [relay], args: ['--set', 'filters=off'] });
    const on = await startProxy({ upstreams: [relay] });
    for (const [path, body] of everyFormat) {
        for (const h of [off, on]) {
            const { id, r } = await send(h, path, body);
            assert.equal(r.status, 200);
            assert.ok(relay.sent.has(id), `${path}: the relay passed it on`);
            assert.ok(r.buf.equals(relay.sent.get(id)),
                `${path}: the client got the server's bytes`);
            const rec = await record(h, id);
            if (h === off) {
                for (const k of GENAI_FIELDS) {
                    assert.equal(rec[k], null, `${path}: ${k} with the filters off`);
                }
            } else {
                assert.notEqual(rec.provider, null, `${path}: analysed with the filters on`);
                assert.notEqual(rec.prompt_hash, null);
            }
            assert.equal(rec.status, 200);
            assert.equal(rec.bytes_out > 0, true);
        }
    }
    await relay.close();
});

test('a route without filters turns analysis off under its prefix only', async () => {
    const h = await startProxy({ upstreams: [sim], args: ['--set', 'routes=/api = '] });
    for (const [path, body] of everyFormat) {
        const { id, r } = await send(h, path, body);
        assert.equal(r.status, 200);
        const rec = await record(h, id);
        if (path.startsWith('/api/')) {
            for (const k of GENAI_FIELDS) {
                assert.equal(rec[k], null, `${path}: ${k} under /api`);
            }
        } else {
            const gen = (await getJSON(`${sim.url}/sim/generations`)).json
                .find((g) => g.request_id === id);
            assert.ok(['tgi', 'llamacpp', 'kserve'].includes(rec.provider),
                `${path}: ${rec.provider}`);
            assert.equal(rec.completion_hash, gen.text_hash, `${path}: analysed`);
            assert.equal(rec.response_parse, 'ok');
        }
    }
});

test('every proxy and simulator exits cleanly, without a sanitizer report', async () => {
    for (const h of started.reverse()) {
        await h.stop();
    }
});
