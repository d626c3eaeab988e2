/*
 * The OTLP bodies infertap encodes with its proto2 subset (proto/) decode
 * with the decoder generated from the official proto3 files
 * (@opentelemetry/otlp-proto-exporter-base), every field as written: ids as
 * raw bytes, enums as numbers, 64-bit values exactly, packed bucket counts
 * and bounds, sum/min/max present only when set (a sum of 0 included), and
 * typed attributes.  tests/unit/test_otlp --write DIR makes the bodies; the
 * values below are the ones it writes.  tests/unit/test_metrics --write DIR
 * adds two bodies built by the metric registry (src/telemetry/metrics.c):
 * a cumulative export and a delta one.
 *
 * The decoder of exporter-base 0.51.1 predates Span.flags (16) and
 * LogRecord.event_name (12) and skips them as unknown fields, so those two
 * are read from the wire with the Reader of the protobufjs it uses.
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

import root from '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js';

import { BUILDDIR, run } from './lib/harness.mjs';

const OTLP_BIN = path.join(BUILDDIR, 'tests', 'unit', 'test_otlp');
const METRICS_BIN = path.join(BUILDDIR, 'tests', 'unit', 'test_metrics');
const pb = root.opentelemetry.proto;
const T0 = 1700000000000000000n;
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const PARENT_ID = '53995c3f42cd8ad8';
const BOUNDS = [0.1, 0.5, 1, 2.5];
const ROOT_JS = '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js';
const { Reader } = createRequire(createRequire(import.meta.url).resolve(ROOT_JS))(
    'protobufjs/minimal');

let dir;

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'infertap-otlp-'));
    const r = await run(OTLP_BIN, ['--write', dir]);
    assert.equal(r.code, 0, `${OTLP_BIN} --write: ${r.stderr}`);
    const m = await run(METRICS_BIN, ['--write', dir]);
    assert.equal(m.code, 0, `${METRICS_BIN} --write: ${m.stderr}`);
});

after(() => {
    if (dir) {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});

function decode(type, file) {
    const buf = fs.readFileSync(path.join(dir, file));
    const msg = type.decode(buf);
    /* verify() checks the decoded message against the official schema */
    assert.equal(type.verify(msg), null);
    return { msg, buf };
}

/*
 * The top-level fields of one encoded message, in wire order:
 * [{ fn, wt, value }] with value a Buffer for wire type 2, a Long for
 * varints and fixed64, a number for fixed32.
 */
function wire(bytes) {
    const r = Reader.create(bytes);
    const out = [];
    while (r.pos < r.len) {
        const tag = r.uint32();
        const fn = tag >>> 3;
        const wt = tag & 7;
        let value;
        if (wt === 0) {
            value = r.uint64();
        } else if (wt === 1) {
            value = r.fixed64();
        } else if (wt === 2) {
            value = Buffer.from(r.bytes());
        } else if (wt === 5) {
            value = r.fixed32();
        } else {
            assert.fail(`unexpected wire type ${wt} for field ${fn}`);
        }
        out.push({ fn, wt, value });
    }
    return out;
}

/* follow [field, index] pairs down nested length-delimited fields */
function wirePath(bytes, steps) {
    let cur = bytes;
    for (const [fn, i] of steps) {
        const f = wire(cur).filter((x) => x.fn === fn);
        assert.ok(f.length > i && f[i].wt === 2, `no field ${fn}[${i}]`);
        cur = f[i].value;
    }
    return wire(cur);
}

/* a fixed64/int64 as a BigInt, whatever protobufjs made of it */
function big(v) {
    assert.notEqual(v, null, 'missing 64-bit value');
    if (typeof v === 'number') {
        return BigInt(v);
    }
    return BigInt(v.toString());
}

function hex(bytes) {
    return Buffer.from(bytes).toString('hex');
}

function has(msg, field) {
    return Object.prototype.hasOwnProperty.call(msg, field);
}

/* attributes as {key: [kind, value]} with 64-bit ints as BigInt */
function attrs(list) {
    const out = {};
    for (const kv of list) {
        const v = kv.value;
        assert.ok(v.value, `${kv.key}: no value set`);
        let val = v[v.value];
        if (v.value === 'intValue') {
            val = big(val);
        } else if (v.value === 'arrayValue') {
            val = val.values.map((x) => [x.value, x[x.value]]);
        }
        out[kv.key] = [v.value, val];
    }
    return out;
}

function checkResource(resource, scope) {
    assert.deepEqual(attrs(resource.attributes), { 'service.name': ['stringValue', 'infertap'] });
    assert.equal(scope.name, 'infertap');
    assert.equal(scope.version, '0.1.0');
}

test('ExportTraceServiceRequest: one CLIENT span with ids, attributes, event and status', () => {
    const { msg: req, buf } = decode(pb.collector.trace.v1.ExportTraceServiceRequest,
        'otlp_traces.bin');
    assert.equal(req.resourceSpans.length, 1);
    const rs = req.resourceSpans[0];
    assert.equal(rs.schemaUrl, 'https://opentelemetry.io/schemas/1.41.0');
    assert.equal(rs.scopeSpans.length, 1);
    checkResource(rs.resource, rs.scopeSpans[0].scope);
    assert.equal(rs.scopeSpans[0].spans.length, 1);
    const s = rs.scopeSpans[0].spans[0];

    assert.equal(hex(s.traceId), TRACE_ID);
    assert.equal(s.traceId.length, 16);
    assert.equal(hex(s.spanId), SPAN_ID);
    assert.equal(hex(s.parentSpanId), PARENT_ID);
    /* flags (16, fixed32): sampled, parent's remoteness known */
    const flags = wirePath(buf, [[1, 0], [2, 0], [2, 0]]).filter((f) => f.fn === 16);
    assert.deepEqual(flags.map((f) => [f.wt, f.value]), [[5, 0x101]]);
    assert.ok(!has(s, 'traceState'), 'trace_state was not set');
    assert.equal(s.name, 'chat sim-model');
    assert.equal(s.kind, pb.trace.v1.Span.SpanKind.SPAN_KIND_CLIENT);
    assert.equal(s.kind, 3);
    assert.equal(big(s.startTimeUnixNano), T0);
    assert.equal(big(s.endTimeUnixNano), T0 + 250000000n);

    assert.deepEqual(attrs(s.attributes), {
        'gen_ai.operation.name': ['stringValue', 'chat'],
        'server.port': ['intValue', 8000n],
        'gen_ai.usage.input_tokens': ['intValue', 5000000000n],
        'gen_ai.request.temperature': ['doubleValue', 0.7],
        'gen_ai.request.stream': ['boolValue', true],
        'gen_ai.response.finish_reasons': ['arrayValue', [['stringValue', 'length']]],
    });
    assert.deepEqual(s.attributes.map((kv) => kv.key), [
        'gen_ai.operation.name', 'server.port', 'gen_ai.usage.input_tokens',
        'gen_ai.request.temperature', 'gen_ai.request.stream', 'gen_ai.response.finish_reasons',
    ]);

    assert.equal(s.events.length, 1);
    assert.equal(big(s.events[0].timeUnixNano), T0 + 200000000n);
    assert.equal(s.events[0].name, 'exception');
    assert.deepEqual(attrs(s.events[0].attributes), {
        'exception.type': ['stringValue', 'timeout'],
        'exception.message': ['stringValue', 'no response within 200ms'],
    });
    assert.equal(s.links.length, 0);

    assert.equal(s.status.code, pb.trace.v1.Status.StatusCode.STATUS_CODE_ERROR);
    assert.equal(s.status.code, 2);
    assert.equal(s.status.message, 'upstream timed out');
});

test('ExportMetricsServiceRequest: cumulative monotonic Sum and Histogram points', () => {
    const { msg: req } = decode(pb.collector.metrics.v1.ExportMetricsServiceRequest,
        'otlp_metrics.bin');
    assert.equal(req.resourceMetrics.length, 1);
    const rm = req.resourceMetrics[0];
    assert.equal(rm.scopeMetrics.length, 1);
    checkResource(rm.resource, rm.scopeMetrics[0].scope);
    const metrics = rm.scopeMetrics[0].metrics;
    assert.equal(metrics.length, 2);
    const CUMULATIVE = pb.metrics.v1.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE;
    assert.equal(CUMULATIVE, 2);

    const sum = metrics[0];
    assert.equal(sum.name, 'infertap.requests');
    assert.equal(sum.description, 'Requests completed.');
    assert.equal(sum.unit, '{request}');
    assert.equal(sum.data, 'sum');
    assert.equal(sum.sum.aggregationTemporality, CUMULATIVE);
    assert.equal(sum.sum.isMonotonic, true);
    assert.equal(sum.sum.dataPoints.length, 1);
    const ndp = sum.sum.dataPoints[0];
    assert.equal(ndp.value, 'asInt');
    assert.equal(big(ndp.asInt), 17n);
    assert.equal(big(ndp.startTimeUnixNano), T0);
    assert.equal(big(ndp.timeUnixNano), T0 + 60000000000n);
    assert.deepEqual(attrs(ndp.attributes), {
        'http.response.status_code': ['intValue', 200n],
    });

    const h = metrics[1];
    assert.equal(h.name, 'gen_ai.client.operation.duration');
    assert.equal(h.description, 'GenAI operation duration.');
    assert.equal(h.unit, 's');
    assert.equal(h.data, 'histogram');
    assert.equal(h.histogram.aggregationTemporality, CUMULATIVE);
    assert.equal(h.histogram.dataPoints.length, 2);

    const p0 = h.histogram.dataPoints[0];
    assert.equal(big(p0.startTimeUnixNano), T0);
    assert.equal(big(p0.timeUnixNano), T0 + 60000000000n);
    assert.equal(big(p0.count), 5n);
    assert.ok(has(p0, 'sum') && has(p0, 'min') && has(p0, 'max'));
    assert.equal(p0._sum, 'sum');
    assert.equal(p0.sum, 3.75);
    assert.equal(p0.min, 0.05);
    assert.equal(p0.max, 1.9);
    assert.deepEqual(p0.explicitBounds, BOUNDS);
    assert.deepEqual(p0.bucketCounts.map(big), [1n, 1n, 2n, 1n, 0n]);
    assert.equal(p0.bucketCounts.map(big).reduce((a, b) => a + b), big(p0.count));
    assert.deepEqual(attrs(p0.attributes), { 'gen_ai.operation.name': ['stringValue', 'chat'] });

    /* explicit presence: sum = 0 was sent, min and max were not */
    const p1 = h.histogram.dataPoints[1];
    assert.equal(big(p1.timeUnixNano), T0 + 120000000000n);
    assert.equal(big(p1.count), 0n);
    assert.ok(has(p1, 'sum'), 'sum of 0 must be present');
    assert.equal(p1._sum, 'sum');
    assert.equal(p1.sum, 0);
    assert.ok(!has(p1, 'min') && !has(p1, 'max'), 'min and max must be absent');
    assert.equal(p1._min, undefined);
    assert.equal(p1._max, undefined);
    assert.deepEqual(p1.explicitBounds, BOUNDS);
    assert.deepEqual(p1.bucketCounts.map(big), [0n, 0n, 0n, 0n, 0n]);
});

test('ExportMetricsServiceRequest: bucket counts and bounds are packed', () => {
    const buf = fs.readFileSync(path.join(dir, 'otlp_metrics.bin'));
    /* request.resource_metrics[0].scope_metrics[0].metrics[1].histogram.data_points[i] */
    for (const i of [0, 1]) {
        const fields = wirePath(buf, [[1, 0], [2, 0], [2, 1], [9, 0], [1, i]]);
        const counts = fields.filter((f) => f.fn === 6);
        const bounds = fields.filter((f) => f.fn === 7);
        assert.equal(counts.length, 1, `point ${i}: bucket_counts in one field`);
        assert.equal(counts[0].wt, 2);
        assert.equal(counts[0].value.length, 8 * (BOUNDS.length + 1));
        assert.equal(bounds.length, 1, `point ${i}: explicit_bounds in one field`);
        assert.equal(bounds[0].wt, 2);
        assert.deepEqual(BOUNDS.map((_, k) => bounds[0].value.readDoubleLE(8 * k)), BOUNDS);
        /* sum (5) is a double with explicit presence: there in both points */
        assert.deepEqual(fields.filter((f) => f.fn === 5).map((f) => f.wt), [1]);
        /* min (11) and max (12) only in the first */
        assert.equal(fields.filter((f) => f.fn === 11 || f.fn === 12).length, i === 0 ? 2 : 0);
    }
});

test('ExportLogsServiceRequest: one event record tied to the span', () => {
    const { msg: req, buf } = decode(pb.collector.logs.v1.ExportLogsServiceRequest,
        'otlp_logs.bin');
    assert.equal(req.resourceLogs.length, 1);
    const rl = req.resourceLogs[0];
    assert.equal(rl.scopeLogs.length, 1);
    checkResource(rl.resource, rl.scopeLogs[0].scope);
    assert.equal(rl.scopeLogs[0].logRecords.length, 1);
    const r = rl.scopeLogs[0].logRecords[0];

    assert.equal(big(r.timeUnixNano), T0 + 200000000n);
    assert.equal(big(r.observedTimeUnixNano), T0 + 250000000n);
    assert.equal(r.severityNumber, pb.logs.v1.SeverityNumber.SEVERITY_NUMBER_WARN);
    assert.equal(r.severityNumber, 13);
    assert.equal(r.severityText, 'WARN');
    assert.equal(r.body.value, 'stringValue');
    assert.equal(r.body.stringValue, 'upstream timed out after 200ms');
    assert.deepEqual(attrs(r.attributes), {
        'error.type': ['stringValue', 'timeout'],
        'server.port': ['intValue', 8000n],
    });
    assert.equal(r.flags, 0x01);
    assert.equal(hex(r.traceId), TRACE_ID);
    assert.equal(hex(r.spanId), SPAN_ID);
    /* event_name (12, string) */
    const name = wirePath(buf, [[1, 0], [2, 0], [2, 0]]).filter((f) => f.fn === 12);
    assert.deepEqual(name.map((f) => [f.wt, f.value.toString()]),
        [[2, 'gen_ai.client.inference.operation.details']]);
});

test('metric registry, cumulative: Sum, Gauge and Histogram points as recorded', () => {
    const { msg: req } = decode(pb.collector.metrics.v1.ExportMetricsServiceRequest,
        'metrics_cumulative.bin');
    const rm = req.resourceMetrics[0];
    assert.equal(rm.scopeMetrics.length, 1);
    assert.equal(rm.scopeMetrics[0].scope.name, 'infertap');
    assert.deepEqual(attrs(rm.resource.attributes)['service.name'], ['stringValue', 'infertap']);
    const metrics = rm.scopeMetrics[0].metrics;
    assert.deepEqual(metrics.map((m) => [m.name, m.unit, m.data]), [
        ['infertap.requests', '{request}', 'sum'],
        ['infertap.requests.active', '{request}', 'gauge'],
        ['gen_ai.client.operation.duration', 's', 'histogram'],
        ['http.client.response.body.size', 'By', 'gauge'],
    ]);
    const CUMULATIVE = pb.metrics.v1.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE;

    const sum = metrics[0].sum;
    assert.equal(sum.aggregationTemporality, CUMULATIVE);
    assert.equal(sum.isMonotonic, true);
    assert.deepEqual(sum.dataPoints.map((p) => [p.value, big(p.asInt)]),
        [['asInt', 3n], ['asInt', 1n]]);
    assert.equal(big(sum.dataPoints[0].startTimeUnixNano), T0);
    assert.equal(big(sum.dataPoints[0].timeUnixNano), T0 + 60000000000n);
    assert.deepEqual(attrs(sum.dataPoints[0].attributes), {
        'gen_ai.operation.name': ['stringValue', 'chat'],
        'gen_ai.request.model': ['stringValue', 'm"1\\x\ny'],
        'server.address': ['stringValue', '10.0.0.1'],
    });
    assert.deepEqual(attrs(sum.dataPoints[1].attributes), {
        'gen_ai.operation.name': ['stringValue', 'embeddings'],
    });

    assert.equal(big(metrics[1].gauge.dataPoints[0].asInt), 4n);
    assert.equal(metrics[3].gauge.dataPoints[0].value, 'asDouble');
    assert.equal(metrics[3].gauge.dataPoints[0].asDouble, 1234.5);

    const h = metrics[2].histogram;
    assert.equal(h.aggregationTemporality, CUMULATIVE);
    assert.equal(h.dataPoints.length, 2);
    const p0 = h.dataPoints[0];
    assert.deepEqual(p0.explicitBounds, BOUNDS);
    assert.deepEqual(p0.bucketCounts.map(big), [2n, 1n, 1n, 0n, 1n]);
    assert.equal(big(p0.count), 5n);
    assert.equal(p0.sum, 0.1 + 0.3 + 1.0 + 3.0 + 0.05);
    assert.equal(p0.min, 0.05);
    assert.equal(p0.max, 3);
    const p1 = h.dataPoints[1];
    assert.deepEqual(p1.attributes, []);
    assert.deepEqual(p1.bucketCounts.map(big), [0n, 0n, 1n, 0n, 0n]);
    assert.equal(p1.sum, 0.7);
});

test('metric registry, delta: the changes since the previous export', () => {
    const { msg: req } = decode(pb.collector.metrics.v1.ExportMetricsServiceRequest,
        'metrics_delta.bin');
    const metrics = req.resourceMetrics[0].scopeMetrics[0].metrics;
    const DELTA = pb.metrics.v1.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA;
    assert.deepEqual(metrics.map((m) => m.name), [
        'infertap.requests', 'infertap.requests.active', 'gen_ai.client.operation.duration',
        'http.client.response.body.size', 'infertap.upstream.errors',
    ]);

    const sum = metrics[0].sum;
    assert.equal(sum.aggregationTemporality, DELTA);
    assert.equal(sum.dataPoints.length, 1);
    assert.equal(big(sum.dataPoints[0].asInt), 2n);
    assert.equal(big(sum.dataPoints[0].startTimeUnixNano), T0 + 10000000000n);
    assert.equal(big(sum.dataPoints[0].timeUnixNano), T0 + 20000000000n);
    assert.equal(big(metrics[1].gauge.dataPoints[0].asInt), 2n);
    assert.equal(big(metrics[4].sum.dataPoints[0].asInt), 1n);

    const h = metrics[2].histogram;
    assert.equal(h.aggregationTemporality, DELTA);
    assert.equal(h.dataPoints.length, 1);
    const p = h.dataPoints[0];
    assert.deepEqual(p.bucketCounts.map(big), [0n, 2n, 0n, 0n, 0n]);
    assert.equal(big(p.count), 2n);
    assert.equal(p.sum, 0.2 + 0.4);
    assert.equal(p.min, 0.2);
    assert.equal(p.max, 0.4);
    assert.equal(big(p.startTimeUnixNano), T0 + 10000000000n);
});
