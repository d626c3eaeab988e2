/*
 * tests/integration/sim_generations.mjs: /sim/generations, the simulator's
 * record of what it sent for each finished request.  One request per API,
 * streamed and plain where the API has both, is decoded the way a client
 * would (text, token count, finish reason, log-probabilities) and compared
 * with its entry, found by x-request-id.  Node has no XXH3, so text_hash is
 * checked for consistency instead: the simulator is deterministic, so a
 * streamed and a plain request with the same prompt and parameters must
 * carry equal texts and equal hashes, and a stream cut after k tokens must
 * hash like a complete answer of max_tokens k.  Injected errors, client
 * aborts, embeddings and KServe are covered at the end.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
    startSim, withSim, stopAll, request, postJSON, getJSON, sseData, parseNDJSON, RawConn,
    buildRequest, waitUntil,
} from './lib/harness.mjs';

const MODEL = 'gen-model';
const TOKENS = 8;
const NORMAL = { stop: 'stop', length: 'length', eos_token: 'stop', eos: 'stop', limit: 'length' };

let sim;

before(async () => {
    sim = await startSim(['--tokens', String(TOKENS), '--model', MODEL, '--seed', '11']);
});

after(stopAll);

async function generations(s = sim) {
    const r = await getJSON(`${s.url}/sim/generations`);
    assert.equal(r.status, 200, r.body);
    assert.ok(Array.isArray(r.json), r.body.slice(0, 200));
    return r.json;
}

async function entryFor(id, s = sim) {
    const all = (await generations(s)).filter((e) => e.request_id === id);
    assert.equal(all.length, 1, `one entry for request ${id}`);
    return all[0];
}

let seq = 0;
function rid(what) {
    seq += 1;
    return `gen-${what}-${seq}`;
}

const sum = (xs) => xs.reduce((a, x) => a + x, 0);

/*
 * Each API: its path(s), a request body, and a decoder returning what a
 * client got: {text, tokens, finish (as sent, or null), logprobs (array or null)}.
 */
const APIS = [
    {
        api: 'openai_chat',
        path: () => '/v1/chat/completions',
        body: (stream) => ({
            model: MODEL, messages: [{ role: 'user', content: 'chat about hashes' }],
            logprobs: true, top_logprobs: 2, max_tokens: 5, stream,
        }),
        plain: (j) => ({
            text: j.choices[0].message.content,
            tokens: j.choices[0].logprobs.content.length,
            finish: j.choices[0].finish_reason,
            logprobs: j.choices[0].logprobs.content.map((c) => c.logprob),
        }),
        stream: (body) => {
            const evs = sseData(body).filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
            const ch = evs.filter((e) => e.choices.length > 0).map((e) => e.choices[0]);
            const withText = ch.filter((c) => (c.delta?.content ?? '') !== '');
            return {
                text: ch.map((c) => c.delta?.content ?? '').join(''),
                tokens: withText.length,
                finish: ch.map((c) => c.finish_reason).find((f) => f) ?? null,
                logprobs: ch.flatMap((c) => (c.logprobs?.content ?? []).map((x) => x.logprob)),
            };
        },
    },
    {
        api: 'openai_completions',
        path: () => '/v1/completions',
        body: (stream) => ({
            model: 'other-name', prompt: 'complete the hash', logprobs: 1, stream,
            ...(stream ? { stream_options: { include_usage: true } } : {}),
        }),
        plain: (j) => ({
            text: j.choices[0].text,
            tokens: j.choices[0].logprobs.tokens.length,
            finish: j.choices[0].finish_reason,
            logprobs: j.choices[0].logprobs.token_logprobs,
        }),
        stream: (body) => {
            const evs = sseData(body).filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
            const ch = evs.filter((e) => e.choices.length > 0).map((e) => e.choices[0]);
            return {
                text: ch.map((c) => c.text).join(''),
                tokens: ch.filter((c) => c.text !== '').length,
                finish: ch.map((c) => c.finish_reason).find((f) => f) ?? null,
                logprobs: ch.flatMap((c) => c.logprobs?.token_logprobs ?? []),
            };
        },
    },
    {
        api: 'ollama_chat',
        path: () => '/api/chat',
        body: (stream) => ({
            model: 'llama-y', messages: [{ role: 'user', content: 'ollama hash' }],
            options: { num_predict: 6 }, stream,
        }),
        plain: (j) => ({
            text: j.message.content, tokens: j.eval_count, finish: j.done_reason, logprobs: null,
        }),
        stream: (body) => {
            const objs = parseNDJSON(body);
            return {
                text: objs.map((o) => o.message?.content ?? '').join(''),
                tokens: objs.filter((o) => !o.done).length,
                finish: objs.at(-1).done ? objs.at(-1).done_reason : null,
                logprobs: null,
            };
        },
    },
    {
        api: 'ollama_generate',
        path: () => '/api/generate',
        body: (stream) => ({ model: 'llama-y', prompt: 'generate a hash', stream }),
        plain: (j) => ({
            text: j.response, tokens: j.eval_count, finish: j.done_reason, logprobs: null,
        }),
        stream: (body) => {
            const objs = parseNDJSON(body);
            return {
                text: objs.map((o) => o.response ?? '').join(''),
                tokens: objs.filter((o) => !o.done).length,
                finish: objs.at(-1).done ? objs.at(-1).done_reason : null,
                logprobs: null,
            };
        },
    },
    {
        api: 'tgi',
        path: (stream) => (stream ? '/generate_stream' : '/generate'),
        body: () => ({ inputs: 'tgi hash', parameters: { max_new_tokens: 7, details: true } }),
        plain: (j) => ({
            text: j.generated_text,
            tokens: j.details.tokens.length,
            finish: j.details.finish_reason,
            logprobs: j.details.tokens.map((t) => t.logprob),
        }),
        stream: (body) => {
            const evs = sseData(body).map((d) => JSON.parse(d));
            return {
                text: evs.map((e) => e.token.text).join(''),
                tokens: evs.length,
                finish: evs.at(-1).details?.finish_reason ?? null,
                logprobs: evs.map((e) => e.token.logprob),
            };
        },
    },
    {
        api: 'llamacpp',
        path: () => '/completion',
        body: (stream) => ({ prompt: 'llama hash', n_probs: 2, stream }),
        plain: (j) => ({
            text: j.content,
            tokens: j.completion_probabilities.length,
            finish: j.stop_type,
            logprobs: j.completion_probabilities.map((c) => Math.log(c.probs[0].prob)),
        }),
        stream: (body) => {
            const evs = sseData(body).map((d) => JSON.parse(d));
            const toks = evs.filter((e) => !e.stop);
            return {
                text: evs.map((e) => e.content ?? '').join(''),
                tokens: toks.length,
                finish: evs.at(-1).stop ? evs.at(-1).stop_type : null,
                logprobs: toks.map((e) => Math.log(e.completion_probabilities[0].probs[0].prob)),
            };
        },
    },
];

/* Send one request for `a`; return what the client decoded and the entry. */
async function exchange(a, stream) {
    const id = rid(`${a.api}-${stream ? 's' : 'p'}`);
    const path = a.path(stream);
    const r = await request(`${sim.url}${path}`, {
        method: 'POST', body: a.body(stream), headers: { 'x-request-id': id },
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.aborted, false);
    const got = stream ? a.stream(r.body) : a.plain(JSON.parse(r.body));
    const e = await entryFor(id);
    return { id, path, got, e };
}

function checkEntry(a, stream, { id, path, got, e }) {
    const what = `${a.api} ${stream ? 'stream' : 'plain'}`;
    assert.equal(e.request_id, id);
    assert.equal(e.path, path, what);
    assert.equal(e.api, a.api, what);
    assert.equal(e.stream, stream, what);
    assert.equal(e.n, 1, what);
    assert.equal(e.error, null, what);
    assert.equal(typeof e.model, 'string');
    assert.ok(Number.isInteger(e.prompt_tokens) && e.prompt_tokens > 0, what);
    assert.match(e.text_hash, /^[0-9a-f]{16}$/, what);
    assert.ok(got.text.length > 0, what);
    assert.equal(e.completion_tokens, got.tokens, `${what}: completion_tokens`);
    assert.equal(e.finish_reason_native, got.finish, `${what}: finish reason as sent`);
    assert.equal(e.finish_reason, NORMAL[got.finish], `${what}: normalized finish reason`);
    if (got.logprobs === null) {
        assert.equal(e.logprob_sum, null, what);
    } else {
        assert.equal(got.logprobs.length, got.tokens, what);
        assert.ok(Math.abs(e.logprob_sum - sum(got.logprobs)) < 1e-5,
            `${what}: logprob_sum ${e.logprob_sum} vs ${sum(got.logprobs)}`);
    }
}

for (const a of APIS) {
    test(`${a.api}: streamed and plain entries match what the client received`, async () => {
        const p = await exchange(a, false);
        const s = await exchange(a, true);
        checkEntry(a, false, p);
        checkEntry(a, true, s);
        assert.equal(s.got.text, p.got.text, 'same prompt, same text');
        assert.equal(s.e.text_hash, p.e.text_hash, 'same text, same hash');
        assert.equal(s.e.completion_tokens, p.e.completion_tokens);
        assert.equal(s.e.prompt_tokens, p.e.prompt_tokens);
        assert.equal(s.e.model, p.e.model);
    });
}

test('the model is the one the response names', async () => {
    const chat = await exchange(APIS[0], false);
    assert.equal(chat.e.model, MODEL);
    const cmpl = await exchange(APIS[1], true);
    assert.equal(cmpl.e.model, 'other-name');
    const tgi = await exchange(APIS[4], false);
    assert.equal(tgi.e.model, MODEL, 'TGI names no model: the served one');
});

test('different texts hash differently; no x-request-id gives null', async () => {
    const a = await postJSON(`${sim.url}/v1/completions`, { prompt: 'first text', max_tokens: 4 });
    const b = await postJSON(`${sim.url}/v1/completions`, { prompt: 'second text', max_tokens: 4 });
    assert.notEqual(a.json.choices[0].text, b.json.choices[0].text);
    const all = await generations();
    const [ea, eb] = all.slice(-2);
    assert.equal(ea.request_id, null);
    assert.equal(eb.request_id, null);
    assert.equal(ea.finish_reason, 'length');
    assert.notEqual(ea.text_hash, eb.text_hash);
});

test('TGI /generate without details shows no finish reason nor logprobs', async () => {
    const id = rid('tgi-bare');
    const r = await postJSON(`${sim.url}/generate`, { inputs: 'tgi hash' },
        { headers: { 'x-request-id': id } });
    assert.equal(r.status, 200);
    assert.equal(r.json.details, undefined);
    const e = await entryFor(id);
    assert.equal(e.finish_reason, null);
    assert.equal(e.finish_reason_native, null);
    assert.equal(e.logprob_sum, null);
    assert.equal(e.completion_tokens, TOKENS);
    assert.match(e.text_hash, /^[0-9a-f]{16}$/);
});

test('embeddings and KServe are recorded without text', async () => {
    const id = rid('emb');
    const r = await postJSON(`${sim.url}/v1/embeddings`, { input: ['one', 'two words', 'x'] },
        { headers: { 'x-request-id': id } });
    assert.equal(r.status, 200);
    const e = await entryFor(id);
    assert.equal(e.api, 'openai_embeddings');
    assert.equal(e.n, 3);
    assert.equal(e.prompt_tokens, r.json.usage.prompt_tokens);
    assert.equal(e.completion_tokens, 0);
    assert.equal(e.text_hash, null);
    assert.equal(e.finish_reason, null);
    assert.equal(e.logprob_sum, null);

    const kid = rid('kserve');
    const k = await postJSON(`${sim.url}/v2/models/clf-1/infer`,
        { inputs: [{ name: 'in', shape: [1, 2], datatype: 'FP32', data: [1, 2] }] },
        { headers: { 'x-request-id': kid } });
    assert.equal(k.status, 200);
    const ke = await entryFor(kid);
    assert.equal(ke.api, 'kserve');
    assert.equal(ke.model, 'clf-1');
    assert.equal(ke.path, '/v2/models/clf-1/infer');
    assert.equal(ke.text_hash, null);
});

test('requests that reach no model leave no entry', async () => {
    const before = (await generations()).length;
    await request(`${sim.url}/v1/models`);
    await request(`${sim.url}/sim/stats`);
    await postJSON(`${sim.url}/v1/chat/completions`, { messages: [] });
    await request(`${sim.url}/nope`);
    assert.equal((await generations()).length, before);
});

test('a cut stream records the tokens before the cut, hashed like max_tokens k', async () => {
    const body = { prompt: 'cut me', stream: true, logprobs: 0 };
    await withSim(['--tokens', String(TOKENS), '--seed', '11', '--error-rate', '1',
        '--error-kind', 'cut'], async (cut) => {
        const id = rid('cut');
        const r = await request(`${cut.url}/v1/completions`, {
            method: 'POST', body, headers: { 'x-request-id': id },
        });
        assert.equal(r.aborted, true);
        const got = APIS[1].stream(r.body);
        assert.ok(got.tokens > 0 && got.tokens < TOKENS, `${got.tokens} tokens before the cut`);
        assert.equal(got.finish, null);
        const e = await entryFor(id, cut);
        assert.equal(e.error, 'cut');
        assert.equal(e.completion_tokens, got.tokens);
        assert.equal(e.finish_reason, null);
        assert.ok(Math.abs(e.logprob_sum - sum(got.logprobs)) < 1e-5);

        /* same seed and prompt, no fault, capped at the cut: same text */
        const fid = rid('cut-ref');
        const full = await postJSON(`${sim.url}/v1/completions`,
            { ...body, stream: false, max_tokens: got.tokens },
            { headers: { 'x-request-id': fid } });
        assert.equal(full.json.choices[0].text, got.text);
        const fe = await entryFor(fid);
        assert.equal(fe.text_hash, e.text_hash);

        /* a plain body cut in half decodes to nothing */
        const pid = rid('cut-plain');
        const p = await request(`${cut.url}/v1/completions`, {
            method: 'POST', body: { ...body, stream: false }, headers: { 'x-request-id': pid },
        });
        assert.equal(p.aborted, true);
        const pe = await entryFor(pid, cut);
        assert.equal(pe.error, 'cut');
        assert.equal(pe.completion_tokens, 0);
        assert.equal(pe.text_hash, null);
    });
});

test('injected 500 and malformed streams are recorded with their error', async () => {
    await withSim(['--error-rate', '1', '--error-kind', '500'], async (s) => {
        const id = rid('500');
        const r = await postJSON(`${s.url}/api/generate`, { prompt: 'x', stream: false },
            { headers: { 'x-request-id': id } });
        assert.equal(r.status, 500);
        const e = await entryFor(id, s);
        assert.equal(e.error, '500');
        assert.equal(e.api, 'ollama_generate');
        assert.equal(e.completion_tokens, 0);
        assert.equal(e.text_hash, null);
        assert.equal(e.finish_reason, null);
    });
    await withSim(['--tokens', String(TOKENS), '--seed', '11', '--error-rate', '1',
        '--error-kind', 'malformed'], async (s) => {
        const id = rid('malformed');
        const r = await request(`${s.url}/api/chat`, {
            method: 'POST', body: APIS[2].body(true), headers: { 'x-request-id': id },
        });
        assert.equal(r.status, 200);
        /* skip the broken line a client would reject */
        const lines = r.body.split('\n').filter((l) => {
            try {
                JSON.parse(l);
                return true;
            } catch {
                return false;
            }
        });
        const got = APIS[2].stream(lines.join('\n'));
        const e = await entryFor(id, s);
        assert.equal(e.error, 'malformed');
        assert.equal(e.completion_tokens, got.tokens);
        assert.equal(e.finish_reason_native, got.finish);

        const ref = await exchange(APIS[2], false);
        assert.equal(got.text, ref.got.text);
        assert.equal(e.text_hash, ref.e.text_hash);
    });
});

test('a client that leaves mid-stream is recorded as client_gone', async () => {
    await withSim(['--tokens', '40', '--itl-ms', '50'], async (s) => {
        const id = rid('gone');
        const conn = await RawConn.connect(s.port);
        await conn.write(buildRequest('POST', '/v1/chat/completions', {
            headers: { 'x-request-id': id, 'content-type': 'application/json' },
            body: JSON.stringify({ messages: [{ role: 'user', content: 'leave early' }],
                stream: true }),
        }));
        const seen = () => (conn.text().match(/"delta":\{"content":"[^"]/g) ?? []).length;
        assert.ok(await conn.waitFor(() => seen() >= 2, 5000), 'two tokens arrived');
        const received = seen();
        conn.destroy();
        const e = await waitUntil(async () => (await generations(s))
            .find((x) => x.request_id === id));
        assert.ok(e, 'an entry appears after the client left');
        assert.equal(e.error, 'client_gone');
        assert.equal(e.stream, true);
        assert.ok(e.completion_tokens >= received && e.completion_tokens < 40,
            `${e.completion_tokens} sent, ${received} received`);
        assert.equal(e.finish_reason, null);
        assert.match(e.text_hash, /^[0-9a-f]{16}$/);
    });
});

test('the ring keeps the last 256 entries, oldest first', async () => {
    await withSim(['--tokens', '1'], async (s) => {
        for (let i = 0; i < 260; i++) {
            await request(`${s.url}/v1/completions`, {
                method: 'POST', body: { prompt: 'p' }, headers: { 'x-request-id': `ring-${i}` },
            });
        }
        const all = await generations(s);
        assert.equal(all.length, 256);
        assert.equal(all[0].request_id, 'ring-4');
        assert.equal(all.at(-1).request_id, 'ring-259');
    });
});

test('simulator exits 0 on SIGTERM', async () => {
    await sim.stop();
});
