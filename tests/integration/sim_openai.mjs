/*
 * tests/integration/sim_openai.mjs: the simulator's OpenAI-compatible API as
 * seen by the official openai SDK: chat and legacy completions (plain and
 * streamed), usage accounting, max_tokens caps, logprobs shapes, request
 * seeds, models and embeddings.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startSim, stopAll } from './lib/harness.mjs';

const MODEL = 'served-model-x';
let sim;
let client;

before(async () => {
    sim = await startSim(['--model', MODEL]);
    client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10000 });
});

after(stopAll);

const msgs = (text) => [{ role: 'user', content: text }];

async function collectChat(params) {
    const stream = await client.chat.completions.create({ ...params, stream: true });
    const chunks = [];
    for await (const chunk of stream) {
        chunks.push(chunk);
    }
    return chunks;
}

async function collectCompletion(params) {
    const stream = await client.completions.create({ ...params, stream: true });
    const chunks = [];
    for await (const chunk of stream) {
        chunks.push(chunk);
    }
    return chunks;
}

function chatText(chunks) {
    return chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
}

function contentChunks(chunks) {
    return chunks.filter((c) => c.choices.length > 0 && (c.choices[0].delta?.content ?? '') !== '');
}

test('models.list() lists the served model', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    assert.deepEqual(ids, [MODEL]);
    assert.equal(page.data[0].object, 'model');
});

test('chat.completions.create: plain response shape and usage', async () => {
    const r = await client.chat.completions.create({
        model: 'requested-name', messages: msgs('Hello there, simulator'), seed: 7,
    });
    assert.equal(r.object, 'chat.completion');
    assert.equal(r.model, 'requested-name', 'requested model name is echoed');
    assert.equal(typeof r.id, 'string');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].index, 0);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.completion_tokens, 16, 'default --tokens is 16');
    assert.ok(r.usage.prompt_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('completions.create: plain response shape and usage', async () => {
    const r = await client.completions.create({
        model: 'legacy-name', prompt: 'Once upon a time', seed: 3,
    });
    assert.equal(r.object, 'text_completion');
    assert.equal(r.model, 'legacy-name');
    assert.equal(r.choices.length, 1);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(r.choices[0].text.length > 0);
    assert.equal(r.choices[0].finish_reason, 'stop');
    assert.equal(r.usage.completion_tokens, 16);
    assert.ok(r.usage.prompt_tokens > 0);
    assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test('chat stream: chunk objects, final finish_reason, text equals plain text', async () => {
    const params = { model: MODEL, messages: msgs('Stream me a story'), seed: 11 };
    const plain = await client.chat.completions.create(params);
    const chunks = await collectChat(params);
    assert.ok(chunks.length >= 2);
    for (const c of chunks) {
        assert.equal(c.object, 'chat.completion.chunk');
        assert.equal(c.model, MODEL);
    }
    assert.equal(chatText(chunks), plain.choices[0].message.content);
    const finals = chunks.filter((c) => c.choices[0]?.finish_reason);
    assert.equal(finals.length, 1, 'exactly one chunk carries finish_reason');
    assert.equal(finals[0].choices[0].finish_reason, 'stop');
    assert.equal(chunks.at(-1), finals[0], 'the finish_reason chunk is last');
    assert.equal(contentChunks(chunks).length, plain.usage.completion_tokens);
    assert.equal(chunks.filter((c) => c.choices.length === 0).length, 0,
        'no usage-only chunk without include_usage');
    assert.ok(chunks.every((c) => c.usage == null), 'no usage on chunks without include_usage');
});

test('chat stream with include_usage: usage-only chunk last, counts content chunks', async () => {
    const chunks = await collectChat({
        model: MODEL, messages: msgs('Count my tokens'), seed: 5,
        stream_options: { include_usage: true },
    });
    const usageChunks = chunks.filter((c) => c.choices.length === 0);
    assert.equal(usageChunks.length, 1);
    assert.equal(chunks.at(-1), usageChunks[0], 'usage chunk comes last');
    const u = usageChunks[0].usage;
    assert.equal(u.completion_tokens, contentChunks(chunks).length);
    assert.equal(u.completion_tokens, 16);
    assert.ok(u.prompt_tokens > 0);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
});

test('completions stream: text equals plain text, usage with include_usage', async () => {
    const params = { model: MODEL, prompt: 'The quick brown fox', seed: 21 };
    const plain = await client.completions.create(params);
    const chunks = await collectCompletion({ ...params, stream_options: { include_usage: true } });
    const withChoices = chunks.filter((c) => c.choices.length > 0);
    assert.equal(withChoices.map((c) => c.choices[0].text).join(''), plain.choices[0].text);
    assert.equal(withChoices.at(-1).choices[0].finish_reason, 'stop');
    const usage = chunks.filter((c) => c.choices.length === 0);
    assert.equal(usage.length, 1);
    assert.equal(usage[0].usage.completion_tokens, plain.usage.completion_tokens);
    assert.equal(withChoices.filter((c) => c.choices[0].text !== '').length,
        plain.usage.completion_tokens);
});

test('max_tokens and max_completion_tokens cap the output (finish_reason length)', async () => {
    const a = await client.chat.completions.create({
        model: MODEL, messages: msgs('cap me'), max_tokens: 5,
    });
    assert.equal(a.usage.completion_tokens, 5);
    assert.equal(a.choices[0].finish_reason, 'length');
    const b = await client.chat.completions.create({
        model: MODEL, messages: msgs('cap me'), max_completion_tokens: 4,
    });
    assert.equal(b.usage.completion_tokens, 4);
    assert.equal(b.choices[0].finish_reason, 'length');
    const c = await client.chat.completions.create({
        model: MODEL, messages: msgs('cap me'), max_tokens: 100,
    });
    assert.equal(c.usage.completion_tokens, 16, 'a cap above --tokens does not lengthen');
    assert.equal(c.choices[0].finish_reason, 'stop');
    const d = await client.completions.create({ model: MODEL, prompt: 'cap me', max_tokens: 3 });
    assert.equal(d.usage.completion_tokens, 3);
    assert.equal(d.choices[0].finish_reason, 'length');
    const s = await collectChat({ model: MODEL, messages: msgs('cap me'), max_tokens: 6 });
    assert.equal(contentChunks(s).length, 6);
    assert.equal(s.at(-1).choices[0].finish_reason, 'length');
});

test('chat logprobs: content[] entries with token, logprob, bytes, top_logprobs', async () => {
    const r = await client.chat.completions.create({
        model: MODEL, messages: msgs('logprobs please'), logprobs: true, top_logprobs: 3, seed: 9,
    });
    const lp = r.choices[0].logprobs;
    assert.ok(lp && Array.isArray(lp.content), 'choices[0].logprobs.content is an array');
    assert.equal(lp.content.length, r.usage.completion_tokens);
    for (const e of lp.content) {
        assert.equal(typeof e.token, 'string');
        assert.equal(typeof e.logprob, 'number');
        assert.ok(Number.isFinite(e.logprob) && e.logprob <= 0, `logprob ${e.logprob} <= 0`);
        assert.ok(Array.isArray(e.bytes));
        assert.deepEqual(e.bytes, [...Buffer.from(e.token, 'utf8')], 'bytes are the UTF-8 of token');
        assert.equal(e.top_logprobs.length, 3);
        for (const t of e.top_logprobs) {
            assert.equal(typeof t.token, 'string');
            assert.ok(Number.isFinite(t.logprob) && t.logprob <= 0);
        }
    }
    assert.equal(lp.content.map((e) => e.token).join(''), r.choices[0].message.content,
        'tokens concatenate to the message');
    const none = await client.chat.completions.create({
        model: MODEL, messages: msgs('logprobs please'), seed: 9,
    });
    assert.ok(none.choices[0].logprobs == null, 'no logprobs unless asked');
    assert.equal(none.choices[0].message.content, r.choices[0].message.content);
});

test('completions legacy logprobs: tokens, token_logprobs, top_logprobs, text_offset', async () => {
    const r = await client.completions.create({
        model: MODEL, prompt: 'legacy logprobs', logprobs: 2, max_tokens: 8, seed: 4,
    });
    const lp = r.choices[0].logprobs;
    assert.ok(lp, 'choices[0].logprobs present');
    const n = r.usage.completion_tokens;
    assert.equal(n, 8);
    assert.equal(lp.tokens.length, n);
    assert.equal(lp.token_logprobs.length, n);
    assert.equal(lp.top_logprobs.length, n);
    assert.equal(lp.text_offset.length, n);
    assert.equal(lp.tokens.join(''), r.choices[0].text);
    for (let i = 0; i < n; i++) {
        assert.ok(Number.isFinite(lp.token_logprobs[i]) && lp.token_logprobs[i] <= 0);
        const top = lp.top_logprobs[i];
        assert.equal(typeof top, 'object');
        assert.equal(Object.keys(top).length, 2, 'top_logprobs holds `logprobs` alternatives');
        for (const v of Object.values(top)) {
            assert.ok(Number.isFinite(v) && v <= 0);
        }
        if (i > 0) {
            assert.equal(lp.text_offset[i] - lp.text_offset[i - 1], lp.tokens[i - 1].length,
                'text_offset advances by the previous token length');
        }
    }
});

test('determinism: same prompt and seed give identical text, usage, logprobs', async () => {
    const p = {
        model: MODEL, messages: msgs('repeat after me'), seed: 1234, logprobs: true,
        top_logprobs: 2, temperature: 0.8,
    };
    const a = await client.chat.completions.create(p);
    const b = await client.chat.completions.create(p);
    assert.equal(a.choices[0].message.content, b.choices[0].message.content);
    assert.deepEqual(a.usage, b.usage);
    assert.deepEqual(a.choices[0].logprobs, b.choices[0].logprobs);
    const c = await client.chat.completions.create({ ...p, seed: 4321 });
    assert.notEqual(c.choices[0].message.content, a.choices[0].message.content,
        'a different seed changes the text');
    const d = await client.chat.completions.create({ ...p, messages: msgs('something else') });
    assert.notEqual(d.choices[0].message.content, a.choices[0].message.content,
        'a different prompt changes the text');
});

test('embeddings.create: string and array inputs', async () => {
    const one = await client.embeddings.create({
        model: MODEL, input: 'embed me', encoding_format: 'float',
    });
    assert.equal(one.object, 'list');
    assert.equal(one.data.length, 1);
    assert.equal(one.data[0].index, 0);
    assert.equal(one.data[0].object, 'embedding');
    const v = one.data[0].embedding;
    assert.ok(Array.isArray(v) && v.length > 0);
    assert.ok(v.every((x) => typeof x === 'number' && Number.isFinite(x)));
    assert.ok(v.some((x) => x !== 0));
    assert.ok(one.usage.prompt_tokens > 0);
    assert.equal(one.usage.total_tokens, one.usage.prompt_tokens);

    const many = await client.embeddings.create({
        model: MODEL, input: ['alpha', 'beta', 'gamma'], encoding_format: 'float',
    });
    assert.equal(many.data.length, 3);
    assert.deepEqual(many.data.map((d) => d.index), [0, 1, 2]);
    for (const d of many.data) {
        assert.equal(d.embedding.length, v.length, 'all embeddings have one dimension');
    }
    assert.notDeepEqual(many.data[0].embedding, many.data[1].embedding);
    assert.ok(many.usage.prompt_tokens >= 3);

    /* the SDK's default request (no encoding_format) must parse too */
    const dflt = await client.embeddings.create({ model: MODEL, input: 'embed me' });
    assert.equal(dflt.data.length, 1);
    assert.equal(dflt.data[0].embedding.length, v.length);
});

test('SDK reports a missing messages field as BadRequestError 400', async () => {
    await assert.rejects(
        client.chat.completions.create({ model: MODEL }),
        (err) => {
            assert.ok(err instanceof OpenAI.APIError, `APIError expected, got ${err}`);
            assert.equal(err.status, 400);
            return true;
        },
    );
});

test('simulator exits 0 on SIGTERM', async () => {
    await sim.stop();
});
