/*
 * tests/integration/sim_knobs.mjs: the simulator's command line and every
 * behaviour knob, each observed from the outside: version/usage/bad flags,
 * --model, --tokens, --seed, injected errors of each kind and their rate,
 * --max-concurrency queueing, --nondeterminism, --slow-prompt, --drift-*,
 * --threads.  Every test runs its own simulator.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import {
    SIM_BIN, withSim, stopAll, run, request, postJSON, getJSON, sseData, RawConn, buildRequest,
    parseResponse, parseMetrics, metricSum, sleep, now, deadline,
} from './lib/harness.mjs';

after(stopAll);

const sdk = (s) => new OpenAI({
    baseURL: `${s.url}/v1`, apiKey: 'x', maxRetries: 0, timeout: 10000,
});

const chat = (content, extra = {}) => ({
    model: 'm', messages: [{ role: 'user', content }], ...extra,
});

async function chatText(s, content, extra = {}) {
    const r = await postJSON(`${s.url}/v1/chat/completions`, chat(content, extra));
    assert.equal(r.status, 200, r.body);
    return r.json.choices[0].message.content;
}

test('-V prints the version and exits 0', async () => {
    const r = await run(SIM_BIN, ['-V']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^infertap-sim \S+\n?$/);
});

test('-h prints usage and exits 0', async () => {
    const r = await run(SIM_BIN, ['-h']);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout + r.stderr;
    for (const flag of ['--listen', '--ttft-ms', '--error-kind', '--max-concurrency']) {
        assert.ok(out.includes(flag), `usage mentions ${flag}`);
    }
});

test('an unknown flag exits 2', async () => {
    const r = await run(SIM_BIN, ['--no-such-flag', '--listen', '127.0.0.1:0', '--quiet'],
        { timeoutMs: 3000 });
    assert.equal(r.code, 2, `exit ${r.code} ${r.signal}; stderr: ${r.stderr}`);
});

test('an invalid flag value exits 2', async () => {
    for (const args of [['--tokens', 'many'], ['--error-kind', 'bogus'],
        ['--error-rate', '2.5']]) {
        const r = await run(SIM_BIN, [...args, '--listen', '127.0.0.1:0', '--quiet'],
            { timeoutMs: 3000 });
        assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code} ${r.signal}`);
    }
});

test('--model defaults to sim-model', async () => {
    await withSim([], async (s) => {
        const r = await getJSON(`${s.url}/v1/models`);
        assert.equal(r.status, 200);
        assert.deepEqual(r.json.data.map((m) => m.id), ['sim-model']);
        assert.equal(r.json.object, 'list');
    });
});

test('--tokens sets the default output length', async () => {
    await withSim(['--tokens', '7'], async (s) => {
        const r = await postJSON(`${s.url}/v1/chat/completions`, chat('how long'));
        assert.equal(r.json.usage.completion_tokens, 7);
        assert.equal(r.json.choices[0].finish_reason, 'stop');
        const c = await postJSON(`${s.url}/v1/chat/completions`, chat('how long',
            { max_tokens: 3 }));
        assert.equal(c.json.usage.completion_tokens, 3);
        assert.equal(c.json.choices[0].finish_reason, 'length');
        const st = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chat('how long', { stream: true }),
        });
        const objs = sseData(st.body).filter((d) => d !== '[DONE]').map((d) => JSON.parse(d));
        assert.equal(objs.filter((o) => o.choices[0]?.delta?.content).length, 7);
    });
});

test('--seed is mixed into generation (stable across restarts)', async () => {
    const textWith = (seed) => withSim(['--seed', String(seed)],
        (s) => chatText(s, 'seeded prompt'));
    const a1 = await textWith(1);
    const a2 = await textWith(1);
    const b = await textWith(2);
    assert.equal(a1, a2, 'same --seed, same prompt: same text');
    assert.notEqual(a1, b, 'different --seed: different text');
});

test('--error-kind 500: SDK raises APIError 500; body has the OpenAI error shape', async () => {
    await withSim(['--error-rate', '1.0', '--error-kind', '500'], async (s) => {
        await assert.rejects(sdk(s).chat.completions.create(chat('boom')), (err) => {
            assert.ok(err instanceof OpenAI.APIError, String(err));
            assert.equal(err.status, 500);
            return true;
        });
        const r = await postJSON(`${s.url}/v1/chat/completions`, chat('boom'));
        assert.equal(r.status, 500);
        assert.ok(r.json && typeof r.json === 'object', `JSON error body: ${r.body}`);
        const e = r.json.error && typeof r.json.error === 'object' ? r.json.error : r.json;
        assert.equal(typeof e.message, 'string');
        assert.equal(typeof e.type, 'string');
        const st = await getJSON(`${s.url}/sim/stats`);
        assert.equal(st.json.errors_injected, 2);
    });
});

test('--error-kind 429: SDK raises APIError 429 with Retry-After', async () => {
    await withSim(['--error-rate', '1.0', '--error-kind', '429'], async (s) => {
        await assert.rejects(sdk(s).chat.completions.create(chat('slow down')), (err) => {
            assert.ok(err instanceof OpenAI.APIError, String(err));
            assert.equal(err.status, 429);
            assert.match(err.headers?.get?.('retry-after') ?? '', /^\d+$/);
            return true;
        });
        const r = await postJSON(`${s.url}/v1/completions`, { model: 'm', prompt: 'x' });
        assert.equal(r.status, 429);
        assert.match(r.headers['retry-after'] ?? '', /^\d+$/);
        const e = r.json?.error && typeof r.json.error === 'object' ? r.json.error : r.json;
        assert.equal(typeof e?.message, 'string', r.body);
    });
});

test('--error-kind cut: a stream stops half way without finish chunk or [DONE]', async (t) => {
    await withSim(['--error-rate', '1.0', '--error-kind', 'cut', '--tokens', '16'], async (s) => {
        const r = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chat('cut me', { stream: true }),
        });
        assert.equal(r.status, 200);
        assert.equal(r.aborted, true, 'connection closed before the chunked terminator');
        const data = sseData(r.body);
        assert.ok(!data.includes('[DONE]'), 'no [DONE]');
        const objs = data.map((d) => JSON.parse(d));
        assert.ok(objs.every((o) => !o.choices?.[0]?.finish_reason), 'no finish_reason');
        const n = objs.filter((o) => o.choices?.[0]?.delta?.content).length;
        assert.ok(n >= 4 && n <= 12, `about half of 16 tokens sent, got ${n}`);

        let threw = null;
        let finished = false;
        try {
            await deadline((async () => {
                const stream = await sdk(s).chat.completions.create(chat('cut me',
                    { stream: true }));
                for await (const c of stream) {
                    if (c.choices[0]?.finish_reason) {
                        finished = true;
                    }
                }
            })(), 5000, 'SDK stream over a cut connection');
        } catch (e) {
            threw = e;
        }
        assert.equal(finished, false, 'the SDK never sees a finish_reason');
        if (threw?.code === 'TAP_DEADLINE') {
            /* the SDK's fetch can stall on a cut chunked body instead of throwing */
            t.diagnostic('the SDK stalled rather than threw on the cut stream');
        }
    });
});

test('--error-kind cut: a plain response sends headers and part of the body', async () => {
    await withSim(['--error-rate', '1.0', '--error-kind', 'cut'], async (s) => {
        const conn = await RawConn.connect(s.port);
        await conn.write(buildRequest('POST', '/v1/chat/completions', { body: chat('cut') }));
        const closed = await conn.waitClose(5000);
        const res = parseResponse(conn.buf, { closed: true });
        conn.destroy();
        assert.ok(closed, 'server closed the connection');
        assert.ok(res, `a response head arrived: ${JSON.stringify(conn.text().slice(0, 200))}`);
        assert.equal(res.status, 200);
        assert.equal(res.complete, false, 'body shorter than its framing');
        assert.ok(res.body.length > 0, 'part of the body was sent');
        await assert.rejects(deadline(sdk(s).chat.completions.create(chat('cut')), 5000,
            'SDK request over a cut connection'));
    });
});

test('--error-kind malformed: 200 with a body that is not JSON', async () => {
    await withSim(['--error-rate', '1.0', '--error-kind', 'malformed'], async (s) => {
        const r = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chat('garble'),
        });
        assert.equal(r.status, 200);
        assert.ok(r.body.length > 0);
        assert.throws(() => JSON.parse(r.body), SyntaxError);
        await assert.rejects(sdk(s).chat.completions.create(chat('garble')));
    });
});

test('--error-kind malformed: a stream has an event with broken JSON', async () => {
    await withSim(['--error-rate', '1.0', '--error-kind', 'malformed'], async (s) => {
        const r = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chat('garble', { stream: true }),
        });
        assert.equal(r.status, 200);
        const bad = sseData(r.body).filter((d) => d !== '[DONE]').filter((d) => {
            try {
                JSON.parse(d);
                return false;
            } catch {
                return true;
            }
        });
        assert.equal(bad.length, 1, `one broken event in ${JSON.stringify(r.body)}`);
        await assert.rejects(deadline((async () => {
            const stream = await sdk(s).chat.completions.create(chat('garble', { stream: true }));
            for await (const c of stream) {
                void c;
            }
        })(), 5000, 'SDK stream'), (e) => e.code !== 'TAP_DEADLINE');
    });
});

test('--error-rate 0.5: about half of 40 requests fail, the same ones on every run', async () => {
    const once = () => withSim(['--error-rate', '0.5', '--error-kind', '500'], async (s) => {
        const statuses = [];
        for (let i = 0; i < 40; i++) {
            const r = await postJSON(`${s.url}/v1/chat/completions`,
                chat(`req ${i}`, { max_tokens: 1 }));
            statuses.push(r.status);
        }
        const st = await getJSON(`${s.url}/sim/stats`);
        return { statuses, stats: st.json };
    });
    const a = await once();
    const b = await once();
    const failed = a.statuses.filter((x) => x === 500).length;
    assert.ok(a.statuses.every((x) => x === 200 || x === 500), a.statuses.join(','));
    assert.ok(failed >= 12 && failed <= 28, `${failed} of 40 failed`);
    assert.deepEqual(b.statuses, a.statuses, 'deterministic by request counter');
    assert.equal(a.stats.errors_injected, failed);
});

test('--max-concurrency 2: excess requests wait; never more than 2 run', async () => {
    const args = ['--max-concurrency', '2', '--ttft-ms', '250', '--itl-ms', '50', '--tokens', '2'];
    await withSim(args, async (s) => {
        const t0 = now();
        const reqs = Array.from({ length: 6 }, (_, i) => postJSON(
            `${s.url}/v1/chat/completions`, chat(`queued ${i}`)));
        await sleep(120);
        const m = await request(`${s.url}/metrics`);
        const st = await getJSON(`${s.url}/sim/stats`);
        const results = await Promise.all(reqs);
        const elapsed = now() - t0;
        assert.ok(results.every((r) => r.status === 200));
        const samples = parseMetrics(m.body);
        const waiting = metricSum(samples, 'vllm:num_requests_waiting');
        const running = metricSum(samples, 'vllm:num_requests_running');
        assert.ok(waiting > 0, `vllm:num_requests_waiting ${waiting} during the burst`);
        assert.equal(waiting, 4);
        assert.equal(running, 2);
        assert.equal(st.json.waiting, 4);
        assert.equal(st.json.running, 2);
        assert.ok(elapsed >= 3 * 300 * 0.9, `three waves of ~300 ms took ${elapsed.toFixed(0)}`);
        const end = await getJSON(`${s.url}/sim/stats`);
        assert.equal(end.json.max_running, 2);
        assert.equal(end.json.completed, 6);
        assert.equal(end.json.waiting, 0);
        assert.equal(end.json.running, 0);
    });
});

test('--nondeterminism 1.0 varies identical prompts; 0 does not', async () => {
    const texts = (p) => withSim(['--nondeterminism', String(p)], async (s) => {
        const out = [];
        for (let i = 0; i < 6; i++) {
            out.push(await chatText(s, 'identical prompt', { seed: 99 }));
        }
        return out;
    });
    const varied = await texts(1.0);
    assert.ok(new Set(varied).size >= 2, `distinct texts: ${new Set(varied).size}`);
    const stable = await texts(0);
    assert.equal(new Set(stable).size, 1);
});

test('--slow-prompt / --slow-factor 5 make matching prompts slower', async () => {
    const args = ['--ttft-ms', '60', '--itl-ms', '10', '--tokens', '6',
        '--slow-prompt', 'SLOWME', '--slow-factor', '5'];
    await withSim(args, async (s) => {
        const fast = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chat('a normal prompt'),
        });
        const slow = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chat('please SLOWME down'),
        });
        const fast2 = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chat('another normal prompt'),
        });
        assert.equal(fast.status, 200);
        assert.equal(slow.status, 200);
        /* normal: 60 + 5 * 10 = 110 ms; slow: five times that, 550 ms */
        const normal = Math.min(fast.tEnd, fast2.tEnd);
        assert.ok(normal >= 100, `normal ${normal.toFixed(0)} ms`);
        assert.ok(slow.tEnd >= 440 && slow.tEnd - normal >= 300,
            `slow ${slow.tEnd.toFixed(0)} ms vs normal ${normal.toFixed(0)} ms`);
    });
});

test('--drift-after / --drift-amount lower logprobs and shift KServe probabilities', async () => {
    const X = 3;
    await withSim(['--drift-after', '4', '--drift-amount', String(X)], async (s) => {
        const lpReq = chat('drift probe', { logprobs: true, seed: 5, max_tokens: 8 });
        const kReq = {
            inputs: [{ name: 'input-0', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }],
        };
        const mean = (r) => {
            const c = r.json.choices[0].logprobs.content;
            return c.reduce((a, e) => a + e.logprob, 0) / c.length;
        };
        const before = await postJSON(`${s.url}/v1/chat/completions`, lpReq); /* #1 */
        const kBefore = await postJSON(`${s.url}/v2/models/clf/infer`, kReq); /* #2 */
        for (let i = 0; i < 6; i++) { /* #3..#8 */
            await postJSON(`${s.url}/v1/chat/completions`, chat(`filler ${i}`, { max_tokens: 1 }));
        }
        const afterR = await postJSON(`${s.url}/v1/chat/completions`, lpReq); /* #9 */
        const kAfter = await postJSON(`${s.url}/v2/models/clf/infer`, kReq); /* #10 */
        const drop = mean(before) - mean(afterR);
        assert.ok(drop >= 0.75 * X && drop <= 1.25 * X,
            `mean logprob ${mean(before).toFixed(3)} -> ${mean(afterR).toFixed(3)}`);
        const pb = kBefore.json.outputs[0].data;
        const pa = kAfter.json.outputs[0].data;
        const top = pb.indexOf(Math.max(...pb));
        assert.ok(pa[top] < pb[top] - 1e-3, `top class p ${pb[top]} -> ${pa[top]}`);
        assert.ok(Math.abs(pa.reduce((a, v) => a + v, 0) - 1) < 1e-6);
    });
});

test('--threads 2 serves concurrent requests; stats cover all threads', async () => {
    await withSim(['--threads', '2', '--itl-ms', '20', '--tokens', '4'], async (s) => {
        const rs = await Promise.all(Array.from({ length: 8 }, (_, i) => postJSON(
            `${s.url}/v1/chat/completions`, chat(`thread ${i}`))));
        assert.ok(rs.every((r) => r.status === 200 && r.json.usage.completion_tokens === 4));
        const st = await getJSON(`${s.url}/sim/stats`);
        assert.equal(st.json.completed, 8);
        assert.ok(st.json.requests >= 8);
    });
});
