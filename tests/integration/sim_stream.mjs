/*
 * tests/integration/sim_stream.mjs: the simulator's SSE streams on the wire,
 * read with curl and with raw HTTP: framing (chunked transfer, text/event-stream,
 * data: lines, the [DONE] terminator), the optional usage chunk, token counts,
 * and the per-token timing of --ttft-ms / --itl-ms / --jitter-ms.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
    startSim, withSim, stopAll, curl, sseData, parseSSE, request, timedSSE, parseResponse,
    RawConn, buildRequest,
} from './lib/harness.mjs';

let sim;

before(async () => {
    sim = await startSim([]);
});

after(stopAll);

function chatBody(extra = {}) {
    return {
        model: 'm', messages: [{ role: 'user', content: 'stream test prompt' }], stream: true,
        seed: 42, ...extra,
    };
}

function payloads(body) {
    const data = sseData(body);
    assert.equal(data.at(-1), '[DONE]', 'stream ends with data: [DONE]');
    assert.equal(data.filter((d) => d === '[DONE]').length, 1);
    return data.slice(0, -1).map((d) => JSON.parse(d));
}

function contentOf(objs) {
    return objs.filter((o) => o.choices.length > 0 && (o.choices[0].delta?.content ?? '') !== '');
}

test('curl -sN: chat stream is chunked text/event-stream ending in [DONE]', async () => {
    const r = await curl(['-sN', '--http1.1', '-i', '-H', 'Content-Type: application/json',
        '-d', JSON.stringify(chatBody()), `${sim.url}/v1/chat/completions`]);
    assert.equal(r.code, 0, r.stderr);
    const split = r.stdout.indexOf('\r\n\r\n');
    assert.ok(split > 0);
    const head = r.stdout.slice(0, split).toLowerCase();
    assert.match(head, /^http\/1\.1 200/);
    assert.match(head, /\r\ncontent-type: text\/event-stream/);
    assert.match(head, /\r\ntransfer-encoding: chunked/);
    const body = r.stdout.slice(split + 4);
    for (const ev of parseSSE(body)) {
        assert.equal(ev.event, 'message', 'no named events');
        assert.notEqual(ev.data, null);
    }
    assert.match(body, /^data: /, 'body starts with a data: line');
    assert.match(body, /data: \[DONE\]\n\n$/, 'body ends with data: [DONE] and a blank line');
    const objs = payloads(body);
    for (const o of objs) {
        assert.equal(o.object, 'chat.completion.chunk');
        assert.equal(o.choices.length, 1);
    }
    assert.equal(objs.at(-1).choices[0].finish_reason, 'stop');
    assert.equal(contentOf(objs).length, 16);
    assert.ok(objs.slice(0, -1).every((o) => o.choices[0].finish_reason == null));
});

test('raw stream: the chunked framing is complete and decodes to the same events', async () => {
    const r = await request(`${sim.url}/v1/chat/completions`, {
        method: 'POST', body: chatBody(),
    });
    assert.equal(r.status, 200);
    assert.equal(r.aborted, false, 'the chunked body terminates properly');
    assert.equal(r.headers['transfer-encoding'], 'chunked');
    const viaCurl = await curl(['-sN', '-H', 'Content-Type: application/json',
        '-d', JSON.stringify(chatBody()), `${sim.url}/v1/chat/completions`]);
    const strip = (b) => payloads(b).map((o) => o.choices.map((c) => c.delta));
    assert.deepEqual(strip(r.body), strip(viaCurl.stdout));
});

test('usage chunk appears only with stream_options.include_usage', async () => {
    const without = await request(`${sim.url}/v1/chat/completions`, {
        method: 'POST', body: chatBody({ stream_options: { include_usage: false } }),
    });
    const a = payloads(without.body);
    assert.equal(a.filter((o) => o.choices.length === 0).length, 0);
    assert.ok(a.every((o) => o.usage == null));

    const withU = await request(`${sim.url}/v1/chat/completions`, {
        method: 'POST', body: chatBody({ stream_options: { include_usage: true } }),
    });
    const b = payloads(withU.body);
    const usage = b.filter((o) => o.choices.length === 0);
    assert.equal(usage.length, 1);
    assert.equal(b.at(-1), usage[0], 'usage chunk is the last before [DONE]');
    assert.equal(b.at(-2).choices[0].finish_reason, 'stop', 'finish chunk precedes usage');
    assert.equal(usage[0].usage.completion_tokens, contentOf(b).length);
    assert.equal(usage[0].usage.total_tokens,
        usage[0].usage.prompt_tokens + usage[0].usage.completion_tokens);
});

test('completions stream over the wire: text_completion chunks and [DONE]', async () => {
    const r = await curl(['-sN', '-H', 'Content-Type: application/json', '-d',
        JSON.stringify({ model: 'm', prompt: 'abc', stream: true, max_tokens: 5 }),
        `${sim.url}/v1/completions`]);
    assert.equal(r.code, 0);
    const objs = payloads(r.stdout);
    for (const o of objs) {
        assert.equal(o.object, 'text_completion');
    }
    const texts = objs.filter((o) => o.choices.length && o.choices[0].text !== '');
    assert.equal(texts.length, 5);
    assert.equal(objs.at(-1).choices[0].finish_reason, 'length');
});

test('stream with logprobs carries one logprobs entry per content chunk', async () => {
    const r = await request(`${sim.url}/v1/chat/completions`, {
        method: 'POST', body: chatBody({ logprobs: true, top_logprobs: 2, max_tokens: 6 }),
    });
    const objs = contentOf(payloads(r.body));
    assert.equal(objs.length, 6);
    for (const o of objs) {
        const c = o.choices[0].logprobs?.content;
        assert.ok(Array.isArray(c) && c.length === 1, 'one logprob entry per chunk');
        assert.equal(c[0].token, o.choices[0].delta.content);
        assert.equal(c[0].top_logprobs.length, 2);
    }
});

test('HTTP/1.1 stream over a raw socket parses as a valid chunked response', async () => {
    const conn = await RawConn.connect(sim.port);
    await conn.write(buildRequest('POST', '/v1/chat/completions', {
        body: chatBody({ max_tokens: 3 }), headers: { Connection: 'close' },
    }));
    await conn.waitClose(5000);
    const res = parseResponse(conn.buf, { closed: true });
    conn.destroy();
    assert.ok(res);
    assert.equal(res.status, 200);
    assert.equal(res.chunked, true);
    assert.equal(res.complete, true, 'terminal zero-size chunk present');
    assert.equal(contentOf(payloads(res.body.toString())).length, 3);
});

test('--ttft-ms 200 delays the first token by about 200 ms', async () => {
    await withSim(['--ttft-ms', '200'], async (s) => {
        const r = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chatBody({ max_tokens: 3 }),
        });
        const evs = timedSSE(r.chunks).filter((e) => e.data !== '[DONE]')
            .map((e) => ({ t: e.t, o: JSON.parse(e.data) }));
        const firstContent = evs.find((e) => e.o.choices[0]?.delta?.content);
        assert.ok(firstContent);
        assert.ok(firstContent.t >= 180, `first token after ${firstContent.t.toFixed(1)} ms`);
        assert.ok(firstContent.t < 2000, `first token after ${firstContent.t.toFixed(1)} ms`);
        const plain = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: { ...chatBody({ max_tokens: 3 }), stream: false },
        });
        assert.equal(plain.status, 200);
        assert.ok(plain.tHeaders >= 180, `non-streamed reply after ${plain.tHeaders} ms`);
    });
});

test('--itl-ms 50 spaces 10 tokens by about 50 ms each (stream and plain)', async () => {
    await withSim(['--itl-ms', '50', '--tokens', '10'], async (s) => {
        const r = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chatBody(),
        });
        const content = timedSSE(r.chunks).filter((e) => e.data !== '[DONE]')
            .filter((e) => JSON.parse(e.data).choices[0]?.delta?.content);
        assert.equal(content.length, 10, `content events: ${content.length}`);
        const span = content.at(-1).t - content[0].t;
        assert.ok(span >= 405, `first to last token ${span.toFixed(1)} ms (expect ~450)`);
        assert.ok(r.tEnd >= 450 * 0.9, `stream took ${r.tEnd.toFixed(1)} ms`);
        assert.ok(r.tEnd < 3000, `stream took ${r.tEnd.toFixed(1)} ms`);
        /* tokens go out one by one (tolerating two reads that merged on a busy client) */
        const gaps = content.slice(1).map((e, i) => e.t - content[i].t);
        assert.ok(gaps.filter((g) => g < 25).length <= 2,
            `gaps between tokens: ${gaps.map((g) => g.toFixed(0)).join(',')} ms`);
        const plain = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: { ...chatBody(), stream: false },
        });
        assert.ok(plain.tEnd >= 405, `plain reply after ${plain.tEnd.toFixed(1)} ms`);
        assert.ok(plain.tEnd < 3000);
    });
});

test('--jitter-ms changes token timing but not the text', async () => {
    const run = async (args) => withSim(args, async (s) => {
        const r = await request(`${s.url}/v1/chat/completions`, {
            method: 'POST', body: chatBody({ max_tokens: 12 }),
        });
        const ev = timedSSE(r.chunks).filter((e) => e.data !== '[DONE]')
            .map((e) => ({ t: e.t, o: JSON.parse(e.data) }))
            .filter((e) => e.o.choices[0]?.delta?.content);
        const gaps = ev.slice(1).map((e, i) => e.t - ev[i].t);
        return { text: ev.map((e) => e.o.choices[0].delta.content).join(''), gaps };
    });
    const steady = await run(['--itl-ms', '30']);
    const jittery = await run(['--itl-ms', '30', '--jitter-ms', '30']);
    assert.equal(jittery.text, steady.text, 'jitter does not change the text');
    const spread = (g) => Math.max(...g) - Math.min(...g);
    assert.ok(spread(jittery.gaps) > 10,
        `jittered gaps vary: ${jittery.gaps.map((g) => g.toFixed(0)).join(',')}`);
    assert.ok(spread(jittery.gaps) > spread(steady.gaps),
        `jitter spread ${spread(jittery.gaps).toFixed(1)} vs steady ` +
        `${spread(steady.gaps).toFixed(1)}`);
});

test('simulator exits 0 on SIGTERM', async () => {
    await sim.stop();
});
