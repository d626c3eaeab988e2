/*
 * The OTLP/HTTP receiver of lib/otlp.mjs, checked with bodies made by the
 * official encoder (@opentelemetry/otlp-proto-exporter-base): decoding of
 * the three signals, plain and gzip, into the documented plain form and the
 * flattened spans, points and records; the fields the decoder predates read
 * from the wire; the scripted answers (statuses with Retry-After and a
 * google.rpc.Status body, partial success, delays, cut connections, per
 * signal queues and a responder function); bad requests; waitFor; and a
 * close() that does not wait for answers still pending.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { now, sleep } from './lib/harness.mjs';
import {
    startReceiver, postOTLP, encodeRequest, decodeResponse, decodeStatus, attrs, hex, unhex,
    isZeroId, num, pb,
} from './lib/otlp.mjs';

const ROOT_JS = '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js';
const { Writer } = createRequire(createRequire(import.meta.url).resolve(ROOT_JS))(
    'protobufjs/minimal');

const T0 = 1700000000000000000n;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const PARENT_ID = '53995c3f42cd8ad8';
const RESOURCE = {
    attributes: [
        { key: 'service.name', value: { stringValue: 'infertap' } },
        { key: 'host.cpus', value: { intValue: 8 } },
    ],
};
const SCOPE = { name: 'infertap', version: '0.1.0' };
const kvInt = (key, v) => ({ key, value: { intValue: v } });
const kvStr = (key, v) => ({ key, value: { stringValue: v } });

const TRACES = {
    resourceSpans: [{
        resource: RESOURCE,
        schemaUrl: 'https://opentelemetry.io/schemas/1.41.0',
        scopeSpans: [{
            scope: SCOPE,
            spans: [{
                traceId: unhex(TRACE_ID),
                spanId: unhex(SPAN_ID),
                parentSpanId: unhex(PARENT_ID),
                traceState: 'vendor=x',
                name: 'chat sim-model',
                kind: 3,
                startTimeUnixNano: T0,
                endTimeUnixNano: T0 + 250000000n,
                attributes: [
                    { key: 'gen_ai.operation.name', value: { stringValue: 'chat' } },
                    { key: 'server.port', value: { intValue: 8000 } },
                    { key: 'big', value: { intValue: '9007199254740993' } },
                    { key: 'neg', value: { intValue: -5 } },
                    { key: 'gen_ai.request.temperature', value: { doubleValue: 0.7 } },
                    { key: 'gen_ai.request.stream', value: { boolValue: true } },
                    {
                        key: 'gen_ai.response.finish_reasons',
                        value: {
                            arrayValue: {
                                values: [{ stringValue: 'stop' }, { stringValue: 'length' }],
                            },
                        },
                    },
                    {
                        key: 'kv',
                        value: {
                            kvlistValue: {
                                values: [{ key: 'a', value: { intValue: 1 } }],
                            },
                        },
                    },
                    { key: 'raw', value: { bytesValue: Buffer.from([0, 1, 2]) } },
                ],
                events: [{
                    timeUnixNano: T0 + 200000000n,
                    name: 'exception',
                    attributes: [{ key: 'exception.type', value: { stringValue: 'timeout' } }],
                }],
                status: { code: 2, message: 'upstream timed out' },
            }, {
                traceId: unhex(TRACE_ID),
                spanId: unhex(PARENT_ID),
                name: 'root',
                kind: 2,
                startTimeUnixNano: T0 - 1000n,
                endTimeUnixNano: T0 + 300000000n,
            }],
        }],
    }],
};

const METRICS = {
    resourceMetrics: [{
        resource: RESOURCE,
        scopeMetrics: [{
            scope: SCOPE,
            metrics: [{
                name: 'infertap.requests',
                unit: '{request}',
                description: 'Requests completed.',
                sum: {
                    aggregationTemporality: 2,
                    isMonotonic: true,
                    dataPoints: [{
                        attributes: [kvInt('http.response.status_code', 200)],
                        startTimeUnixNano: T0,
                        timeUnixNano: T0 + 60000000000n,
                        asInt: 17,
                    }, {
                        attributes: [kvInt('http.response.status_code', 503)],
                        startTimeUnixNano: T0,
                        timeUnixNano: T0 + 60000000000n,
                        asInt: '9007199254740993',
                    }],
                },
            }, {
                name: 'infertap.kv_cache',
                gauge: {
                    dataPoints: [{ timeUnixNano: T0, asDouble: 0.25 }],
                },
            }, {
                name: 'gen_ai.client.operation.duration',
                unit: 's',
                histogram: {
                    aggregationTemporality: 2,
                    dataPoints: [{
                        startTimeUnixNano: T0,
                        timeUnixNano: T0 + 60000000000n,
                        count: 5,
                        sum: 3.75,
                        min: 0.05,
                        max: 1.9,
                        explicitBounds: [0.1, 0.5, 1, 2.5],
                        bucketCounts: [1, 1, 2, 1, 0],
                        attributes: [kvStr('gen_ai.operation.name', 'chat')],
                    }, {
                        startTimeUnixNano: T0,
                        timeUnixNano: T0 + 120000000000n,
                        count: 0,
                        sum: 0,
                        explicitBounds: [0.1, 0.5, 1, 2.5],
                        bucketCounts: [0, 0, 0, 0, 0],
                    }],
                },
            }],
        }],
    }],
};

const LOGS = {
    resourceLogs: [{
        resource: RESOURCE,
        scopeLogs: [{
            scope: SCOPE,
            logRecords: [{
                timeUnixNano: T0 + 200000000n,
                observedTimeUnixNano: T0 + 250000000n,
                severityNumber: 13,
                severityText: 'WARN',
                body: { stringValue: 'upstream timed out after 200ms' },
                attributes: [{ key: 'error.type', value: { stringValue: 'timeout' } }],
                flags: 1,
                traceId: unhex(TRACE_ID),
                spanId: unhex(SPAN_ID),
            }],
        }],
    }],
};

/* Run fn(rx) against a receiver of its own, always closed. */
async function withReceiver(opts, fn) {
    const rx = await startReceiver(opts);
    try {
        return await fn(rx);
    } finally {
        await rx.close();
    }
}

/* a length-delimited field: tag, length, bytes */
function ld(fn, bytes) {
    return Buffer.from(Writer.create().uint32((fn << 3) | 2).bytes(bytes).finish());
}

/* a fixed32 field */
function f32(fn, v) {
    return Buffer.from(Writer.create().uint32((fn << 3) | 5).fixed32(v).finish());
}

test('hex helpers, num and attrs', () => {
    assert.equal(hex(unhex(TRACE_ID)), TRACE_ID);
    assert.equal(hex(unhex('4BF92F35')), '4bf92f35');
    assert.equal(hex(undefined), '');
    assert.throws(() => unhex('abc'));
    assert.ok(isZeroId('00000000000000000000000000000000'));
    assert.ok(isZeroId(Buffer.alloc(8)));
    assert.ok(!isZeroId(SPAN_ID));
    assert.equal(num(5n), 5);
    assert.equal(num(2n ** 60n), 2n ** 60n);
    assert.equal(num(-(2n ** 60n)), -(2n ** 60n));
    assert.deepEqual(attrs([
        { key: 'a', value: { value: 'intValue', intValue: 3n } },
        { key: 'b', value: {} },
    ]), { a: 3, b: undefined });
});

test('traces: plain protobuf decoded with BigInt longs, Buffer ids and flat spans', async () => {
    await withReceiver({}, async (rx) => {
        const body = encodeRequest('traces', TRACES);
        const r = await postOTLP(rx.endpoint('traces'), body, {
            headers: { authorization: 'Bearer s3cret' },
        });
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-type'], 'application/x-protobuf');
        /* an empty ExportTraceServiceResponse: partial_success unset */
        assert.equal(r.body.length, 0);
        assert.deepEqual(decodeResponse('traces', r.body), {});

        assert.equal(rx.requests.length, 1);
        const rec = rx.requests[0];
        assert.equal(rec.signal, 'traces');
        assert.equal(rec.path, '/v1/traces');
        assert.equal(rec.gzip, false);
        assert.equal(rec.error, null);
        assert.equal(rec.size, body.length);
        assert.deepEqual(rec.raw, body);
        assert.equal(rec.headers.authorization, 'Bearer s3cret');
        assert.equal(rec.contentType, 'application/x-protobuf');
        assert.equal(typeof rec.at, 'number');
        assert.ok(rec.answered >= rec.at);
        assert.deepEqual(rec.answer.status, 200);

        const s = rec.body.resourceSpans[0].scopeSpans[0].spans[0];
        assert.ok(Buffer.isBuffer(s.traceId));
        assert.equal(hex(s.traceId), TRACE_ID);
        assert.equal(s.startTimeUnixNano, T0);
        assert.equal(typeof s.startTimeUnixNano, 'bigint');
        assert.equal(s.kind, 3);
        assert.equal(s.attributes[1].value.value, 'intValue');
        assert.equal(s.attributes[1].value.intValue, 8000n);
        assert.equal(s.flags, undefined, 'no flags on the wire');

        const spans = rx.spans();
        assert.equal(spans.length, 2);
        const sp = spans[0];
        assert.equal(sp.name, 'chat sim-model');
        assert.equal(sp.traceId, TRACE_ID);
        assert.equal(sp.spanId, SPAN_ID);
        assert.equal(sp.parentSpanId, PARENT_ID);
        assert.equal(sp.traceState, 'vendor=x');
        assert.equal(sp.end - sp.start, 250000000n);
        assert.deepEqual(sp.attrs, {
            'gen_ai.operation.name': 'chat',
            'server.port': 8000,
            big: 9007199254740993n,
            neg: -5,
            'gen_ai.request.temperature': 0.7,
            'gen_ai.request.stream': true,
            'gen_ai.response.finish_reasons': ['stop', 'length'],
            kv: { a: 1 },
            raw: Buffer.from([0, 1, 2]),
        });
        assert.deepEqual(sp.events, [{
            name: 'exception', time: T0 + 200000000n, attrs: { 'exception.type': 'timeout' },
        }]);
        assert.deepEqual(sp.status, { code: 2, message: 'upstream timed out' });
        assert.deepEqual(sp.resource, { 'service.name': 'infertap', 'host.cpus': 8 });
        assert.deepEqual(sp.scope, { name: 'infertap', version: '0.1.0', attrs: {} });
        assert.equal(sp.schemaUrl, 'https://opentelemetry.io/schemas/1.41.0');
        assert.equal(sp.request, rec);
        assert.equal(spans[1].parentSpanId, '');
        assert.equal(spans[1].kind, 2);
        assert.deepEqual(spans[1].status, { code: 0, message: '' });
        assert.deepEqual(rx.received('traces'), [rec]);
        assert.deepEqual(rx.received('logs'), []);
    });
});

test('metrics: gzip body recorded as gzip and flattened by name', async () => {
    await withReceiver({}, async (rx) => {
        const body = encodeRequest('metrics', METRICS);
        const r = await postOTLP(rx.endpoint('metrics'), body, { gzip: true });
        assert.equal(r.status, 200);
        const rec = rx.requests[0];
        assert.equal(rec.gzip, true);
        assert.equal(rec.headers['content-encoding'], 'gzip');
        assert.deepEqual(rec.raw, body);
        assert.notEqual(rec.size, body.length);

        const m = rx.metrics();
        assert.deepEqual(Object.keys(m).sort(), ['gen_ai.client.operation.duration',
            'infertap.kv_cache', 'infertap.requests']);
        const req = rx.metrics('infertap.requests');
        assert.equal(req.length, 2);
        assert.equal(req[0].type, 'sum');
        assert.equal(req[0].unit, '{request}');
        assert.equal(req[0].temporality, 2);
        assert.equal(req[0].monotonic, true);
        assert.equal(req[0].value, 17);
        assert.equal(req[1].value, 9007199254740993n);
        assert.deepEqual(req[1].attrs, { 'http.response.status_code': 503 });
        assert.equal(req[0].time - req[0].start, 60000000000n);
        assert.deepEqual(req[0].resource, { 'service.name': 'infertap', 'host.cpus': 8 });

        const g = rx.metrics('infertap.kv_cache');
        assert.equal(g.length, 1);
        assert.equal(g[0].type, 'gauge');
        assert.equal(g[0].value, 0.25);
        assert.equal(g[0].start, undefined);

        const h = rx.metrics('gen_ai.client.operation.duration');
        assert.equal(h.length, 2);
        assert.equal(h[0].type, 'histogram');
        assert.equal(h[0].count, 5);
        assert.equal(h[0].sum, 3.75);
        assert.equal(h[0].min, 0.05);
        assert.equal(h[0].max, 1.9);
        assert.deepEqual(h[0].bounds, [0.1, 0.5, 1, 2.5]);
        assert.deepEqual(h[0].buckets, [1, 1, 2, 1, 0]);
        assert.deepEqual(h[0].attrs, { 'gen_ai.operation.name': 'chat' });
        /* explicit presence: a sum of 0 is there, min and max are not */
        assert.equal(h[1].count, 0);
        assert.equal(h[1].sum, 0);
        assert.equal(h[1].min, undefined);
        assert.equal(h[1].max, undefined);
        assert.deepEqual(rx.metrics('nope'), []);
    });
});

test('logs: plain and gzip, records flattened', async () => {
    await withReceiver({}, async (rx) => {
        const body = encodeRequest('logs', LOGS);
        assert.equal((await postOTLP(rx.endpoint('logs'), body)).status, 200);
        assert.equal((await postOTLP(rx.endpoint('logs'), body, { gzip: true })).status, 200);
        assert.deepEqual(rx.requests.map((r) => r.gzip), [false, true]);
        assert.deepEqual(rx.requests[0].body, rx.requests[1].body);
        const logs = rx.logs();
        assert.equal(logs.length, 2);
        const l = logs[0];
        assert.equal(l.time, T0 + 200000000n);
        assert.equal(l.observedTime, T0 + 250000000n);
        assert.equal(l.severityNumber, 13);
        assert.equal(l.severityText, 'WARN');
        assert.equal(l.body, 'upstream timed out after 200ms');
        assert.deepEqual(l.attrs, { 'error.type': 'timeout' });
        assert.equal(l.traceId, TRACE_ID);
        assert.equal(l.spanId, SPAN_ID);
        assert.equal(l.flags, 1);
        assert.equal(l.eventName, '');
        assert.deepEqual(l.scope, { name: 'infertap', version: '0.1.0', attrs: {} });
    });
});

test('Span.flags, Link.flags and LogRecord.event_name are read from the wire', async () => {
    await withReceiver({}, async (rx) => {
        const { Span } = pb.trace.v1;
        const span = Buffer.concat([
            Buffer.from(Span.encode(Span.fromObject({
                traceId: unhex(TRACE_ID),
                spanId: unhex(SPAN_ID),
                name: 'flagged',
                startTimeUnixNano: '1',
                endTimeUnixNano: '2',
                links: [{ traceId: unhex(TRACE_ID), spanId: unhex(PARENT_ID) }],
            })).finish()),
            f32(16, 0x301),
        ]);
        /* a second link, with Link.flags appended */
        const linkMsg = Buffer.concat([
            Buffer.from(Span.Link.encode(Span.Link.fromObject({
                traceId: unhex(TRACE_ID), spanId: unhex(PARENT_ID),
            })).finish()),
            f32(6, 0x101),
        ]);
        /* request.resource_spans[0].scope_spans[0].spans[0] */
        const traces = ld(1, ld(2, ld(2, Buffer.concat([span, ld(13, linkMsg)]))));
        assert.equal((await postOTLP(rx.endpoint('traces'), traces)).status, 200,
            rx.requests[0].error);
        const sp = rx.spans();
        assert.equal(sp.length, 1);
        assert.equal(sp[0].flags, 0x301);
        /* the span carries two links: the encoded one and the appended one */
        assert.deepEqual(sp[0].links.map((l) => l.flags), [undefined, 0x101]);
        assert.equal(sp[0].links[1].spanId, PARENT_ID);

        const LR = pb.logs.v1.LogRecord;
        const rec = Buffer.concat([
            Buffer.from(LR.encode(LR.fromObject({
                timeUnixNano: '5', body: { stringValue: 'x' },
            })).finish()),
            ld(12, Buffer.from('gen_ai.client.inference.operation.details')),
        ]);
        const logs = ld(1, ld(2, ld(2, rec)));
        assert.equal((await postOTLP(rx.endpoint('logs'), logs, { gzip: true })).status, 200);
        const l = rx.logs();
        assert.equal(l.length, 1);
        assert.equal(l[0].eventName, 'gen_ai.client.inference.operation.details');
        assert.equal(l[0].time, 5n);
        assert.equal(l[0].body, 'x');
    });
});

test('queued statuses with Retry-After and a google.rpc.Status body, then 200', async () => {
    await withReceiver({}, async (rx) => {
        const body = encodeRequest('traces', TRACES);
        const date = 'Wed, 21 Oct 2037 07:28:00 GMT';
        rx.queue({ status: 503, retryAfter: 2 },
            { status: 429, retryAfter: date, message: 'slow down' },
            { status: 400 });
        const r1 = await postOTLP(rx.endpoint('traces'), body);
        assert.equal(r1.status, 503);
        assert.equal(r1.headers['retry-after'], '2');
        assert.equal(r1.headers['content-type'], 'application/x-protobuf');
        assert.deepEqual(decodeStatus(r1.body), { code: 0, message: 'Service Unavailable' });
        const r2 = await postOTLP(rx.endpoint('traces'), body, { gzip: true });
        assert.equal(r2.status, 429);
        assert.equal(r2.headers['retry-after'], date);
        assert.equal(decodeStatus(r2.body).message, 'slow down');
        const r3 = await postOTLP(rx.endpoint('traces'), body);
        assert.equal(r3.status, 400);
        assert.equal(r3.headers['retry-after'], undefined);
        const r4 = await postOTLP(rx.endpoint('traces'), body);
        assert.equal(r4.status, 200);
        /* every one decoded and recorded, whatever the answer */
        assert.equal(rx.received('traces').length, 4);
        assert.deepEqual(rx.requests.map((r) => r.answer.status), [503, 429, 400, 200]);
        assert.equal(rx.spans().length, 8);
    });
});

test('queued actions for one signal leave the others alone', async () => {
    await withReceiver({}, async (rx) => {
        rx.queue({ signal: 'logs', status: 503 });
        const m = await postOTLP(rx.endpoint('metrics'), encodeRequest('metrics', METRICS));
        assert.equal(m.status, 200);
        const l = await postOTLP(rx.endpoint('logs'), encodeRequest('logs', LOGS));
        assert.equal(l.status, 503);
        const l2 = await postOTLP(rx.endpoint('logs'), encodeRequest('logs', LOGS));
        assert.equal(l2.status, 200);
    });
});

test('partial success: rejected count and message in the response', async () => {
    await withReceiver({ respond: { partial: { rejected: 3, message: 'bad spans' } } },
        async (rx) => {
            const r = await postOTLP(rx.endpoint('traces'), encodeRequest('traces', TRACES));
            assert.equal(r.status, 200);
            assert.deepEqual(decodeResponse('traces', r.body), {
                partialSuccess: { rejectedSpans: 3n, errorMessage: 'bad spans' },
            });
            const m = await postOTLP(rx.endpoint('metrics'), encodeRequest('metrics', METRICS));
            assert.deepEqual(decodeResponse('metrics', m.body).partialSuccess,
                { rejectedDataPoints: 3n, errorMessage: 'bad spans' });
            /* a warning: nothing rejected, a message */
            rx.queue({ partial: { message: 'deprecated field' } });
            const l = await postOTLP(rx.endpoint('logs'), encodeRequest('logs', LOGS));
            assert.deepEqual(decodeResponse('logs', l.body).partialSuccess,
                { errorMessage: 'deprecated field' });
        });
});

test('a responder function decides per request; delays are honoured', async () => {
    let n = 0;
    const respond = (rec) => {
        n++;
        assert.equal(rec.signal, 'traces');
        assert.ok(rec.body.resourceSpans.length === 1);
        return n === 1 ? { status: 502, delayMs: 300 } : undefined;
    };
    await withReceiver({ respond }, async (rx) => {
        const body = encodeRequest('traces', TRACES);
        const t0 = now();
        const r1 = await postOTLP(rx.endpoint('traces'), body);
        const took = now() - t0;
        assert.equal(r1.status, 502);
        assert.ok(took >= 290, `answered after ${took} ms, expected >= 300`);
        assert.ok(rx.requests[0].answered - rx.requests[0].at >= 290);
        const t1 = now();
        const r2 = await postOTLP(rx.endpoint('traces'), body);
        assert.equal(r2.status, 200);
        assert.ok(now() - t1 < 250, 'second request not delayed');
        assert.equal(n, 2);
    });
});

test('destroy cuts the connection without an answer (after a delay if asked)', async () => {
    await withReceiver({}, async (rx) => {
        const body = encodeRequest('logs', LOGS);
        rx.queue({ destroy: true }, { destroy: true, delayMs: 200 });
        const r1 = await postOTLP(rx.endpoint('logs'), body);
        assert.equal(r1.cut, true);
        assert.equal(r1.status, null);
        const t0 = now();
        const r2 = await postOTLP(rx.endpoint('logs'), body, { gzip: true });
        assert.equal(r2.cut, true);
        assert.ok(now() - t0 >= 190);
        const r3 = await postOTLP(rx.endpoint('logs'), body);
        assert.equal(r3.status, 200);
        assert.deepEqual(rx.requests.map((r) => r.answer), [
            { destroyed: true }, { destroyed: true }, { status: 200, headers: {
                'content-type': 'application/x-protobuf',
            } },
        ]);
        /* the cut requests were decoded all the same */
        assert.equal(rx.logs().length, 3);
    });
});

test('bad requests are refused and recorded with an error', async () => {
    await withReceiver({}, async (rx) => {
        const body = encodeRequest('traces', TRACES);
        const cases = [
            [rx.url + '/v1/profiles', body, {}, 404],
            [rx.endpoint('traces'), body, { headers: { 'content-type': 'application/json' } }, 415],
            [rx.endpoint('traces'), body, { headers: { 'content-encoding': 'br' } }, 415],
            [rx.endpoint('traces'), body, { headers: { 'content-encoding': 'gzip' } }, 400],
            [rx.endpoint('metrics'), Buffer.from([0x0a, 0x05, 0x01]), {}, 400],
        ];
        for (const [url, b, o, status] of cases) {
            const r = await postOTLP(url, b, o);
            assert.equal(r.status, status, `${url} ${JSON.stringify(o)}`);
            assert.ok(decodeStatus(r.body).message.length > 0);
        }
        assert.equal(rx.requests.length, cases.length);
        assert.ok(rx.requests.every((r) => r.error && r.body === null), 'errors recorded');
        assert.match(rx.requests[1].error, /application\/json/);
        assert.match(rx.requests[3].error, /gunzip/);
        assert.match(rx.requests[4].error, /decode/);
        assert.deepEqual(rx.received(), []);
        assert.deepEqual(rx.spans(), []);
        /* queued actions are kept for good requests */
        rx.queue({ status: 504 });
        const bad = await postOTLP(rx.endpoint('logs'), body, {
            headers: { 'content-type': 'text/plain' },
        });
        assert.equal(bad.status, 415);
        assert.equal((await postOTLP(rx.endpoint('traces'), body)).status, 504);
    });
});

test('waitFor polls until the data holds, and says what came when it does not', async () => {
    await withReceiver({}, async (rx) => {
        setTimeout(() => {
            postOTLP(rx.endpoint('traces'), encodeRequest('traces', TRACES), { gzip: true });
        }, 100);
        const spans = await rx.waitFor((r) => {
            const s = r.spans();
            return s.length >= 2 && s;
        }, 3000);
        assert.equal(spans[0].traceId, TRACE_ID);
        await assert.rejects(rx.waitFor((r) => r.logs().length > 0, 150),
            /within 150 ms; 1 requests: traces -> 200/);
        rx.clear();
        assert.deepEqual(rx.requests, []);
        assert.deepEqual(rx.spans(), []);
    });
});

test('close() does not wait for delayed answers or idle keep-alive connections', async () => {
    const rx = await startReceiver({ respond: { delayMs: 30000 } });
    const pending = postOTLP(rx.endpoint('traces'), encodeRequest('traces', TRACES));
    await rx.waitFor((r) => r.received('traces').length === 1, 3000);
    const t0 = now();
    await rx.close();
    assert.ok(now() - t0 < 1000, 'close() returned promptly');
    const r = await pending;
    assert.equal(r.cut, true);
    assert.equal(rx.requests[0].answer, null);
    await sleep(10);
});
