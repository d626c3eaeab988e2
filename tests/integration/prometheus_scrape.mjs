/*
 * A real Prometheus (lib/prometheus.mjs) scraping infertap-sim's /metrics:
 * the target is up, and the vLLM-named series the simulator exposes
 * (names with ':', a labelled counter, a histogram) are stored and
 * queryable with the values the exposition holds.  A node server that
 * demands a bearer token shows that the token is sent.  Skipped when
 * /usr/bin/prometheus is not installed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import {
    startSim, startUpstream, postJSON, request, parseMetrics, metricValue,
} from './lib/harness.mjs';
import { startPrometheus } from './lib/prometheus.mjs';

const TOKEN = 's3cret-token';
const PROMPTS = 3;

let sim;
let up;
let prom;

before(async () => {
    sim = await startSim();
    for (let i = 0; i < PROMPTS; i++) {
        const r = await postJSON(`${sim.url}/v1/chat/completions`, {
            model: 'sim-model', max_tokens: 4 + i,
            messages: [{ role: 'user', content: `scrape me ${i}` }],
        });
        assert.equal(r.status, 200, r.body);
    }
    /* a target that only answers with the right token */
    up = await startUpstream((req, res) => {
        if (req.headers.authorization !== `Bearer ${TOKEN}`) {
            res.writeHead(401, { 'content-type': 'text/plain' });
            res.end('no token\n');
            return;
        }
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end('# TYPE tap_scrape_probe gauge\ntap_scrape_probe{x="y"} 42\n');
    });
    prom = await startPrometheus({
        targets: [sim, up.url], scrapeIntervalMs: 500, bearerToken: TOKEN,
    });
});

after(async () => {
    if (prom) {
        await prom.close();
    }
    if (up) {
        await up.close();
    }
    if (sim) {
        await sim.stop();
    }
});

test('startPrometheus returns null when the binary is missing', async () => {
    assert.equal(await startPrometheus({ targets: [], bin: '/nonexistent/prometheus' }), null);
});

test('Prometheus is ready and its targets are up', async (t) => {
    if (!prom) {
        t.skip('no /usr/bin/prometheus');
        return;
    }
    const r = await request(`${prom.url}/-/ready`);
    assert.equal(r.status, 200);
    assert.match(prom.config, /credentials: "s3cret-token"/);

    const targets = await prom.waitUp(10000);
    assert.equal(targets.length, 2);
    const urls = targets.map((x) => x.scrapeUrl).sort();
    assert.deepEqual(urls, [`${sim.url}/metrics`, `${up.url}/metrics`].sort());
    for (const x of targets) {
        assert.equal(x.health, 'up', `${x.scrapeUrl}: ${x.lastError}`);
        assert.equal(x.labels.job, 'infertap');
        assert.equal(x.lastError, '');
    }
    const upSeries = await prom.waitQuery('up{job="infertap"}', (res) => res.length === 2);
    assert.deepEqual(upSeries.map((s) => s.value[1]), ['1', '1']);
    /* every scrape carried the token */
    assert.ok(up.requests.length > 0);
    assert.ok(up.requests.every((q) => q.headers.authorization === `Bearer ${TOKEN}`));
    assert.match(up.requests[0].headers['user-agent'], /^Prometheus\//);
});

test("the simulator's vLLM series are queryable with the exposed values", async (t) => {
    if (!prom) {
        t.skip('no /usr/bin/prometheus');
        return;
    }
    const r = await request(`${sim.url}/metrics`);
    assert.equal(r.status, 200);
    const samples = parseMetrics(r.body);
    const gen = metricValue(samples, 'vllm:generation_tokens_total', { model_name: 'sim-model' });
    assert.ok(gen > 0, 'the simulator generated tokens');

    const res = await prom.waitQuery('vllm:generation_tokens_total{model_name="sim-model"}',
        (x) => x.length === 1 && Number(x[0].value[1]) === gen);
    assert.equal(res[0].metric.__name__, 'vllm:generation_tokens_total');
    assert.equal(res[0].metric.job, 'infertap');
    assert.equal(res[0].metric.instance, `127.0.0.1:${sim.port}`);

    const prompt = await prom.query('vllm:prompt_tokens_total');
    assert.equal(Number(prompt[0].value[1]),
        metricValue(samples, 'vllm:prompt_tokens_total', { model_name: 'sim-model' }));

    const count = await prom.query('vllm:time_to_first_token_seconds_count');
    assert.equal(Number(count[0].value[1]), PROMPTS);
    const inf = await prom.query('vllm:time_to_first_token_seconds_bucket{le="+Inf"}');
    assert.equal(Number(inf[0].value[1]), PROMPTS);

    const ok = await prom.query('sum(vllm:request_success_total)');
    assert.equal(Number(ok[0].value[1]), PROMPTS);
    const byReason = await prom.query('vllm:request_success_total');
    assert.deepEqual(byReason.map((s) => s.metric.finished_reason).sort(), ['length', 'stop']);

    const probe = await prom.query('tap_scrape_probe');
    assert.equal(probe.length, 1);
    assert.equal(probe[0].metric.x, 'y');
    assert.equal(probe[0].value[1], '42');
});
