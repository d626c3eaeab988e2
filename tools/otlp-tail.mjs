#!/usr/bin/env node
/*
 * tools/otlp-tail.mjs: a tiny OTLP/HTTP receiver that prints what it gets,
 * one line per span, log record or metric export, so infertap's telemetry
 * can be watched without a collector (tools/demo uses it).
 *
 *   node tools/otlp-tail.mjs [--listen 127.0.0.1:4318] [--quiet-metrics]
 *
 * Bodies are decoded with the decoder generated from the official
 * OpenTelemetry protos (npm @opentelemetry/otlp-proto-exporter-base).
 * Nothing is kept: memory stays flat however long it runs.
 */

import http from 'node:http';
import zlib from 'node:zlib';

import root from '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js';

const pb = root.opentelemetry.proto;
const types = {
    '/v1/traces': [pb.collector.trace.v1.ExportTraceServiceRequest,
        pb.collector.trace.v1.ExportTraceServiceResponse],
    '/v1/metrics': [pb.collector.metrics.v1.ExportMetricsServiceRequest,
        pb.collector.metrics.v1.ExportMetricsServiceResponse],
    '/v1/logs': [pb.collector.logs.v1.ExportLogsServiceRequest,
        pb.collector.logs.v1.ExportLogsServiceResponse],
};

const args = process.argv.slice(2);
const listen = (args[args.indexOf('--listen') + 1] && args.includes('--listen'))
    ? args[args.indexOf('--listen') + 1] : '127.0.0.1:4318';
const quietMetrics = args.includes('--quiet-metrics');
const [host, port] = [listen.slice(0, listen.lastIndexOf(':')), Number(listen.slice(listen.lastIndexOf(':') + 1))];

const hex = (b) => Buffer.from(b || []).toString('hex');

function value(v) {
    if (!v) {
        return '';
    }
    if (v.arrayValue) {
        return `[${v.arrayValue.values.map(value).join(',')}]`;
    }
    const x = v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue;
    return typeof x === 'object' && x !== null ? x.toString() : String(x);
}

function attrs(list, keys) {
    const m = new Map((list || []).map((kv) => [kv.key, value(kv.value)]));
    return keys.filter((k) => m.has(k)).map((k) => `${k.replace(/^gen_ai\./, '')}=${m.get(k)}`).join(' ');
}

const SPAN_KEYS = ['http.response.status_code', 'gen_ai.usage.input_tokens',
    'gen_ai.usage.output_tokens', 'gen_ai.response.finish_reasons', 'infertap.ttft_ms',
    'infertap.tpot_ms', 'infertap.prompt_hash', 'error.type'];
const LOG_KEYS = ['request_id', 'model', 'prompt_tokens', 'completion_tokens', 'duration_ms'];

function show(path, msg) {
    if (path === '/v1/traces') {
        for (const rs of msg.resourceSpans) {
            for (const ss of rs.scopeSpans) {
                for (const s of ss.spans) {
                    const ms = Number(BigInt(s.endTimeUnixNano.toString())
                        - BigInt(s.startTimeUnixNano.toString())) / 1e6;
                    const kind = ['', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'][s.kind];
                    console.log(`span   ${hex(s.traceId).slice(0, 12)}… ${kind.padEnd(6)} ` +
                        `${s.name.padEnd(28)} ${ms.toFixed(1).padStart(8)} ms  ${attrs(s.attributes, SPAN_KEYS)}`);
                }
            }
        }
    } else if (path === '/v1/logs') {
        for (const rl of msg.resourceLogs) {
            for (const sl of rl.scopeLogs) {
                for (const l of sl.logRecords) {
                    console.log(`log    ${hex(l.traceId).slice(0, 12)}… ${(l.severityText || '').padEnd(6)} ` +
                        `${value(l.body).padEnd(28)} ${attrs(l.attributes, LOG_KEYS)}`);
                }
            }
        }
    } else if (!quietMetrics) {
        const names = new Map();
        for (const rm of msg.resourceMetrics) {
            for (const sm of rm.scopeMetrics) {
                for (const m of sm.metrics) {
                    const pts = (m.sum || m.gauge || m.histogram || {}).dataPoints || [];
                    names.set(m.name, (names.get(m.name) || 0) + pts.length);
                }
            }
        }
        console.log(`metrics ${[...names].map(([n, c]) => `${n}(${c})`).join(' ')}`);
    }
}

const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
        const t = types[req.url];
        if (req.method !== 'POST' || !t) {
            res.writeHead(404).end();
            return;
        }
        try {
            let body = Buffer.concat(chunks);
            if (req.headers['content-encoding'] === 'gzip') {
                body = zlib.gunzipSync(body);
            }
            show(req.url, t[0].decode(body));
            res.writeHead(200, { 'content-type': 'application/x-protobuf' });
            res.end(Buffer.from(t[1].encode({}).finish()));
        } catch (e) {
            console.error(`otlp-tail: ${req.url}: ${e.message}`);
            res.writeHead(400).end();
        }
    });
});
server.listen(port, host, () => console.error(`otlp-tail: listening on ${host}:${port}`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
process.on('SIGINT', () => server.close(() => process.exit(0)));
