/*
 * tests/integration/lib/otlp.mjs: an OTLP/HTTP receiver for the tests.
 *
 * startReceiver() listens on a loopback port and takes POST /v1/traces,
 * /v1/metrics and /v1/logs with protobuf bodies (gzip or not), decoding them
 * with the decoder generated from the official OpenTelemetry protos
 * (@opentelemetry/otlp-proto-exporter-base), never with infertap's own
 * proto files, so that what the tests see is what a collector sees.  Every
 * request is recorded; how each one is answered can be scripted (status,
 * Retry-After, delay, cut connection, partial success), which is what the
 * exporters' retry and back-off logic needs.  Helpers flatten the recorded
 * requests into spans, metric points and log records with plain attribute
 * objects.
 *
 * Decoded bodies are plain objects from the decoder's toObject(), with
 * every 64-bit integer as a BigInt, bytes (ids, bytesValue) as Buffers,
 * enums as numbers, absent fields absent (no defaults), repeated fields as
 * arrays (empty when absent) and the oneof names set (AnyValue.value is
 * 'stringValue', 'intValue'..., Metric.data is 'sum', 'gauge'...).  The
 * decoder of exporter-base 0.51.1 predates Span.flags (16), Span.Link.flags
 * (6) and LogRecord.event_name (12); those are read from the wire and added
 * as flags (Number) and eventName (String) when they were sent.
 */
import { createRequire } from 'node:module';
import http from 'node:http';
import zlib from 'node:zlib';

import root from '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js';

import { now, sleep } from './harness.mjs';

const ROOT_JS = '@opentelemetry/otlp-proto-exporter-base/build/src/generated/root.js';
const pbjs = createRequire(createRequire(import.meta.url).resolve(ROOT_JS))('protobufjs/minimal');

export const pb = root.opentelemetry.proto;

/* OTLP/HTTP's recommended request size limit (after decompression too) */
const OTLP_MAX_BODY = 64 << 20;

/*
 * What each path carries: the request and response types and the name of
 * the partial-success count.
 */
export const SIGNALS = {
    traces: {
        path: '/v1/traces',
        request: pb.collector.trace.v1.ExportTraceServiceRequest,
        response: pb.collector.trace.v1.ExportTraceServiceResponse,
        rejected: 'rejectedSpans',
    },
    metrics: {
        path: '/v1/metrics',
        request: pb.collector.metrics.v1.ExportMetricsServiceRequest,
        response: pb.collector.metrics.v1.ExportMetricsServiceResponse,
        rejected: 'rejectedDataPoints',
    },
    logs: {
        path: '/v1/logs',
        request: pb.collector.logs.v1.ExportLogsServiceRequest,
        response: pb.collector.logs.v1.ExportLogsServiceResponse,
        rejected: 'rejectedLogRecords',
    },
};

const OTLP_BY_PATH = Object.fromEntries(Object.entries(SIGNALS).map(([k, v]) => [v.path, k]));

/* ---- values ---------------------------------------------------------------------------- */

/* A BigInt as a Number when that is exact, else the BigInt itself. */
export function num(v) {
    if (typeof v !== 'bigint') {
        return v;
    }
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(v) : v;
}

/* Lowercase hex of an id (Buffer or byte array); '' when absent or empty. */
export function hex(bytes) {
    return bytes ? Buffer.from(bytes).toString('hex') : '';
}

/* The bytes of a hex id (any case). */
export function unhex(s) {
    if (!/^(?:[0-9a-fA-F]{2})*$/.test(s)) {
        throw new Error(`not an even-length hex string: ${JSON.stringify(s)}`);
    }
    return Buffer.from(s, 'hex');
}

/* True for an id made of zero bytes only (or none): invalid in OTLP. */
export function isZeroId(id) {
    const b = typeof id === 'string' ? unhex(id) : Buffer.from(id || []);
    return b.every((x) => x === 0);
}

/*
 * The plain value of an AnyValue: strings, booleans and doubles as they
 * are, intValue as a Number when exact else a BigInt, arrays as arrays,
 * kvlists as objects, bytes as a Buffer; undefined when no value is set.
 */
export function anyValue(v) {
    if (!v || !v.value) {
        return undefined;
    }
    const x = v[v.value];
    switch (v.value) {
    case 'intValue':
        return num(BigInt(x));
    case 'arrayValue':
        return (x.values || []).map(anyValue);
    case 'kvlistValue':
        return attrs(x.values || []);
    default:
        return x;
    }
}

/* A KeyValue list as {key: plain value} (see anyValue; a later key wins). */
export function attrs(kvList) {
    const out = {};
    for (const kv of kvList || []) {
        out[kv.key] = anyValue(kv.value);
    }
    return out;
}

/*
 * Replace every Long the decoder left by a BigInt and every byte array by
 * a Buffer of its own (the decoder's slices share the request buffer).
 */
function otlpPlain(x) {
    if (x === null || typeof x !== 'object') {
        return x;
    }
    if (pbjs.util.Long && pbjs.util.Long.isLong(x)) {
        return BigInt(x.toString());
    }
    if (x instanceof Uint8Array) {
        return Buffer.from(x);
    }
    if (Array.isArray(x)) {
        return x.map(otlpPlain);
    }
    const out = {};
    for (const [k, v] of Object.entries(x)) {
        out[k] = otlpPlain(v);
    }
    return out;
}

/* ---- the wire -------------------------------------------------------------------------- */

/*
 * The top-level fields of one encoded message, in wire order: [{fn, wt,
 * value}] with value a Buffer for length-delimited fields, a Long for
 * varints and fixed64, a Number for fixed32 (groups are skipped).
 */
export function wireFields(bytes) {
    const r = pbjs.Reader.create(bytes);
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
            r.skipType(wt);
            continue;
        }
        out.push({ fn, wt, value });
    }
    return out;
}

/* The length-delimited fields numbered fn of a message, in order. */
function otlpSub(bytes, fn) {
    return wireFields(bytes).filter((f) => f.fn === fn && f.wt === 2).map((f) => f.value);
}

/* The last value of field fn with wire type wt, or undefined. */
function otlpLast(bytes, fn, wt) {
    const f = wireFields(bytes).filter((x) => x.fn === fn && x.wt === wt);
    return f.length ? f[f.length - 1].value : undefined;
}

/*
 * Add the fields the decoder does not know (see the top of the file) to a
 * decoded request, walking the wire in step with the decoded arrays.
 */
function otlpWireExtras(signal, raw, body) {
    if (signal === 'traces') {
        otlpSub(raw, 1).forEach((rsb, i) => {
            otlpSub(rsb, 2).forEach((ssb, j) => {
                otlpSub(ssb, 2).forEach((sb, k) => {
                    const span = body.resourceSpans[i].scopeSpans[j].spans[k];
                    const flags = otlpLast(sb, 16, 5);
                    if (flags !== undefined && span.flags === undefined) {
                        span.flags = flags;
                    }
                    otlpSub(sb, 13).forEach((lb, l) => {
                        const lf = otlpLast(lb, 6, 5);
                        if (lf !== undefined && span.links[l].flags === undefined) {
                            span.links[l].flags = lf;
                        }
                    });
                });
            });
        });
    } else if (signal === 'logs') {
        otlpSub(raw, 1).forEach((rlb, i) => {
            otlpSub(rlb, 2).forEach((slb, j) => {
                otlpSub(slb, 2).forEach((lb, k) => {
                    const rec = body.resourceLogs[i].scopeLogs[j].logRecords[k];
                    const name = otlpLast(lb, 12, 2);
                    if (name !== undefined && rec.eventName === undefined) {
                        rec.eventName = name.toString('utf8');
                    }
                });
            });
        });
    }
}

/*
 * Decode an Export*ServiceRequest body (uncompressed protobuf) of one
 * signal into the plain form described at the top of the file.  Throws
 * when it does not decode or verify() rejects it.
 */
export function decodeRequest(signal, raw) {
    const type = SIGNALS[signal].request;
    const msg = type.decode(raw);
    const err = type.verify(msg);
    if (err) {
        throw new Error(`${signal} request does not verify: ${err}`);
    }
    const body = otlpPlain(type.toObject(msg, {
        enums: Number, arrays: true, oneofs: true, defaults: false,
    }));
    otlpWireExtras(signal, raw, body);
    return body;
}

/* BigInts as decimal strings, which fromObject() takes for 64-bit fields. */
function otlpUnBig(x) {
    if (typeof x === 'bigint') {
        return x.toString();
    }
    if (x === null || typeof x !== 'object' || x instanceof Uint8Array) {
        return x;
    }
    if (Array.isArray(x)) {
        return x.map(otlpUnBig);
    }
    const out = {};
    for (const [k, v] of Object.entries(x)) {
        out[k] = otlpUnBig(v);
    }
    return out;
}

/*
 * Encode an Export*ServiceRequest from a plain object (64-bit values as
 * BigInt, Number or decimal string; ids as Buffers) with the official
 * encoder, for tests that post to a receiver themselves.
 */
export function encodeRequest(signal, obj) {
    const type = SIGNALS[signal].request;
    const msg = type.fromObject(otlpUnBig(obj));
    const err = type.verify(msg);
    if (err) {
        throw new Error(`${signal} request does not verify: ${err}`);
    }
    return Buffer.from(type.encode(msg).finish());
}

/* Decode an Export*ServiceResponse body: {partialSuccess?} with BigInt counts. */
export function decodeResponse(signal, raw) {
    const type = SIGNALS[signal].response;
    return otlpPlain(type.toObject(type.decode(raw), { defaults: false }));
}

/* A google.rpc.Status {code = 1, message = 2}, which the protos above lack. */
export function encodeStatus(code, message) {
    const w = pbjs.Writer.create();
    if (code) {
        w.uint32(8).int32(code);
    }
    if (message) {
        w.uint32(18).string(message);
    }
    return Buffer.from(w.finish());
}

/* Decode a google.rpc.Status body: {code, message}. */
export function decodeStatus(raw) {
    const out = { code: 0, message: '' };
    for (const f of wireFields(raw)) {
        if (f.fn === 1 && f.wt === 0) {
            out.code = f.value.toInt();
        } else if (f.fn === 2 && f.wt === 2) {
            out.message = f.value.toString('utf8');
        }
    }
    return out;
}

/* ---- the receiver ---------------------------------------------------------------------- */

/*
 * Read the request body (at most OTLP_MAX_BODY bytes).  Resolves a Buffer,
 * or null when the client went away or sent too much (tooBig is set).
 */
function otlpReadBody(req, rec) {
    return new Promise((resolve) => {
        const parts = [];
        let size = 0;
        req.on('data', (d) => {
            size += d.length;
            if (size > OTLP_MAX_BODY) {
                rec.tooBig = true;
                req.pause();
                resolve(null);
                return;
            }
            parts.push(d);
        });
        req.on('end', () => resolve(Buffer.concat(parts)));
        req.on('error', () => resolve(null));
        req.on('aborted', () => resolve(null));
    });
}

/*
 * Start a receiver on 127.0.0.1 (opts.port, else an ephemeral port).  opts.respond is the
 * default answer: an action object or a function (rec) => action (or a
 * promise of one); actions queued with queue() go first.  An action:
 *   status        HTTP status (default 200; an error status gets a
 *                 google.rpc.Status body)
 *   retryAfter    Retry-After value (seconds or an HTTP-date string)
 *   headers       more response headers
 *   delayMs       wait this long before answering (or cutting)
 *   until         a promise to wait for before answering
 *   destroy       cut the connection instead of answering
 *   partial       {rejected, message}: 200 with partial_success set
 *   message       the Status message of an error answer
 *   body          a raw response body (Buffer or string) sent as it is
 *   signal        (queued actions only) apply to this signal's requests
 * Requests that are not OTLP (wrong path, method, content type, encoding,
 * undecodable body) are answered 404/405/415/400/413 and recorded with
 * error set; the queue and respond are only asked about good ones.
 *
 * Returns rx: {port, url, endpoint(signal), requests, queue(...actions),
 * respond(fnOrAction), clear(), received(signal), spans(), metrics(name?),
 * logs(), waitFor(pred, timeoutMs), close()}.  A record: {signal, path,
 * method, headers (lowercased), contentType, gzip (Content-Encoding was
 * gzip), size (bytes on the wire), raw (uncompressed protobuf Buffer),
 * body (decoded, see the top of the file), at (harness now() ms when the
 * request head arrived), answered (now() ms, or null), answer ({status,
 * headers}, {destroyed: true} when cut on purpose, {clientGone: true,
 * status} when the client left first; null while pending), error (set for
 * a bad request), seq (0, 1, ... over all requests)}.
 */
export async function startReceiver(opts = {}) {
    const rx = {
        requests: [],
        sockets: new Set(),
        timers: new Set(),
        actions: [],
        responder: opts.respond,
        closed: false,
    };

    /* a sleep that close() cuts short */
    const pause = (ms) => new Promise((resolve) => {
        const t = setTimeout(() => {
            rx.timers.delete(t);
            resolve();
        }, ms);
        t.wake = resolve;
        rx.timers.add(t);
    });

    const pickAction = async (rec) => {
        const i = rx.actions.findIndex((a) => !a.signal || a.signal === rec.signal);
        if (i >= 0) {
            return rx.actions.splice(i, 1)[0];
        }
        const r = rx.responder;
        const a = typeof r === 'function' ? await r(rec) : r;
        return a || {};
    };

    const answer = (res, rec, status, headers, body) => {
        if (res.destroyed || res.socket === null || res.socket.destroyed) {
            rec.answer = { clientGone: true, status };
            return;
        }
        rec.answer = { status, headers };
        rec.answered = now();
        res.writeHead(status, { ...headers, 'content-length': String(body.length) });
        res.end(body);
    };

    const fail = (res, rec, status, error) => {
        rec.error = error;
        answer(res, rec, status, { 'content-type': 'application/x-protobuf' },
            encodeStatus(0, error));
    };

    const handle = async (req, res) => {
        const rec = {
            seq: rx.requests.length,
            signal: OTLP_BY_PATH[req.url.split('?')[0]] || null,
            path: req.url,
            method: req.method,
            headers: req.headers,
            contentType: req.headers['content-type'] || '',
            gzip: /^\s*gzip\s*$/i.test(req.headers['content-encoding'] || ''),
            size: 0,
            raw: null,
            body: null,
            at: now(),
            answered: null,
            answer: null,
            error: null,
        };
        rx.requests.push(rec);
        const wire = await otlpReadBody(req, rec);
        if (wire === null) {
            if (rec.tooBig) {
                fail(res, rec, 413, `body over ${OTLP_MAX_BODY} bytes`);
            } else {
                rec.error = 'client went away before the body ended';
            }
            return;
        }
        rec.size = wire.length;
        if (rec.signal === null) {
            fail(res, rec, 404, `no OTLP signal at ${req.url}`);
            return;
        }
        if (req.method !== 'POST') {
            fail(res, rec, 405, `${req.method} is not POST`);
            return;
        }
        if (!/^application\/x-protobuf\s*(;|$)/i.test(rec.contentType)) {
            fail(res, rec, 415, `content type ${JSON.stringify(rec.contentType)} is not ` +
                'application/x-protobuf');
            return;
        }
        const ce = (req.headers['content-encoding'] || 'identity').trim().toLowerCase();
        if (ce !== 'gzip' && ce !== 'identity') {
            fail(res, rec, 415, `content encoding ${ce} is not supported`);
            return;
        }
        try {
            rec.raw = rec.gzip ? zlib.gunzipSync(wire, { maxOutputLength: OTLP_MAX_BODY }) : wire;
        } catch (e) {
            fail(res, rec, rec.gzip && e.code === 'ERR_BUFFER_TOO_LARGE' ? 413 : 400,
                `gunzip: ${e.message}`);
            return;
        }
        try {
            rec.body = decodeRequest(rec.signal, rec.raw);
        } catch (e) {
            fail(res, rec, 400, `decode: ${e.message}`);
            return;
        }

        const a = await pickAction(rec);
        if (a.until) {
            await a.until;
        }
        if (a.delayMs) {
            await pause(a.delayMs);
        }
        if (rx.closed) {
            return;
        }
        if (a.destroy) {
            rec.answer = { destroyed: true };
            rec.answered = now();
            req.socket.destroy();
            return;
        }
        const status = a.status || 200;
        const headers = { 'content-type': 'application/x-protobuf', ...(a.headers || {}) };
        if (a.retryAfter !== undefined) {
            headers['retry-after'] = String(a.retryAfter);
        }
        let body;
        if (a.body !== undefined) {
            body = Buffer.from(a.body);
        } else if (status >= 200 && status < 300) {
            const sig = SIGNALS[rec.signal];
            const msg = {};
            if (a.partial) {
                /* proto3 leaves zero and empty values off the wire */
                msg.partialSuccess = {};
                if (a.partial.rejected) {
                    msg.partialSuccess[sig.rejected] = String(a.partial.rejected);
                }
                if (a.partial.message) {
                    msg.partialSuccess.errorMessage = a.partial.message;
                }
            }
            body = Buffer.from(sig.response.encode(sig.response.fromObject(msg)).finish());
        } else {
            body = encodeStatus(0, a.message || http.STATUS_CODES[status] || 'error');
        }
        answer(res, rec, status, headers, body);
    };

    const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
        handle(req, res).catch((e) => {
            if (!res.headersSent && !res.destroyed) {
                res.writeHead(500, { 'content-type': 'text/plain' });
                res.end(`receiver error: ${e.stack}`);
            }
        });
    });
    server.on('connection', (sock) => {
        rx.sockets.add(sock);
        sock.on('error', () => {});
        sock.on('close', () => rx.sockets.delete(sock));
    });
    server.on('clientError', (err, sock) => {
        sock.destroy();
    });
    await new Promise((resolve) => server.listen(opts.port || 0, '127.0.0.1', resolve));
    rx.server = server;
    rx.port = server.address().port;
    rx.url = `http://127.0.0.1:${rx.port}`;

    /* the full URL of one signal's endpoint */
    rx.endpoint = (signal) => `${rx.url}${SIGNALS[signal].path}`;

    /* queue actions for the next requests, in order (see above) */
    rx.queue = (...actions) => {
        rx.actions.push(...actions.flat().map((a) => ({ ...a })));
        return rx;
    };

    /* set the default answer (an action or a function of the record) */
    rx.respond = (r) => {
        rx.responder = r;
        return rx;
    };

    /* forget the requests received so far and the queued actions */
    rx.clear = () => {
        rx.requests.length = 0;
        rx.actions.length = 0;
        return rx;
    };

    /* the good requests of one signal (every signal when none is named) */
    rx.received = (signal) => rx.requests.filter((r) => r.body !== null
        && (!signal || r.signal === signal));

    /*
     * Every span received: [{name, kind, traceId, spanId, parentSpanId (hex,
     * '' when absent), traceState, flags, start, end (BigInt ns), attrs,
     * events [{name, time, attrs}], links [{traceId, spanId, traceState,
     * flags, attrs}], status {code, message}, resource (attrs), scope {name,
     * version, attrs}, schemaUrl, request (the record), raw (decoded Span)}].
     */
    rx.spans = () => {
        const out = [];
        for (const rec of rx.received('traces')) {
            for (const rs of rec.body.resourceSpans) {
                const resource = attrs(rs.resource && rs.resource.attributes);
                for (const ss of rs.scopeSpans) {
                    const scope = otlpScope(ss.scope);
                    for (const s of ss.spans) {
                        out.push({
                            name: s.name,
                            kind: s.kind || 0,
                            traceId: hex(s.traceId),
                            spanId: hex(s.spanId),
                            parentSpanId: hex(s.parentSpanId),
                            traceState: s.traceState || '',
                            flags: s.flags,
                            start: s.startTimeUnixNano,
                            end: s.endTimeUnixNano,
                            attrs: attrs(s.attributes),
                            events: s.events.map((e) => ({
                                name: e.name, time: e.timeUnixNano, attrs: attrs(e.attributes),
                            })),
                            links: s.links.map((l) => ({
                                traceId: hex(l.traceId), spanId: hex(l.spanId),
                                traceState: l.traceState || '', flags: l.flags,
                                attrs: attrs(l.attributes),
                            })),
                            status: {
                                code: (s.status && s.status.code) || 0,
                                message: (s.status && s.status.message) || '',
                            },
                            resource,
                            scope,
                            schemaUrl: rs.schemaUrl || '',
                            request: rec,
                            raw: s,
                        });
                    }
                }
            }
        }
        return out;
    };

    /*
     * Every metric point received, by metric name: {name: [point]} (or,
     * given a name, that metric's points, [] when none).  A point: {name,
     * type ('gauge', 'sum', 'histogram', 'exponentialHistogram',
     * 'summary'), unit, description, temporality, monotonic, attrs, start,
     * time (BigInt ns), flags, resource, scope, request, raw (the point)}
     * plus, by type: value (asInt as num(), asDouble a Number); count, sum,
     * min, max, bounds, buckets (counts as num(); sum/min/max undefined when
     * absent); exponential: scale, zeroCount, positive/negative {offset,
     * buckets}; summary: count, sum, quantiles [{quantile, value}].
     */
    rx.metrics = (name) => {
        const out = {};
        for (const rec of rx.received('metrics')) {
            for (const rm of rec.body.resourceMetrics) {
                const resource = attrs(rm.resource && rm.resource.attributes);
                for (const sm of rm.scopeMetrics) {
                    const scope = otlpScope(sm.scope);
                    for (const m of sm.metrics) {
                        for (const p of otlpPoints(m, resource, scope, rec)) {
                            (out[m.name] = out[m.name] || []).push(p);
                        }
                    }
                }
            }
        }
        return name === undefined ? out : (out[name] || []);
    };

    /*
     * Every log record received: [{time, observedTime (BigInt ns, undefined
     * when absent), severityNumber, severityText, body (anyValue), attrs,
     * traceId, spanId (hex), flags, eventName, resource, scope, request,
     * raw}].
     */
    rx.logs = () => {
        const out = [];
        for (const rec of rx.received('logs')) {
            for (const rl of rec.body.resourceLogs) {
                const resource = attrs(rl.resource && rl.resource.attributes);
                for (const sl of rl.scopeLogs) {
                    const scope = otlpScope(sl.scope);
                    for (const r of sl.logRecords) {
                        out.push({
                            time: r.timeUnixNano,
                            observedTime: r.observedTimeUnixNano,
                            severityNumber: r.severityNumber || 0,
                            severityText: r.severityText || '',
                            body: anyValue(r.body),
                            attrs: attrs(r.attributes),
                            traceId: hex(r.traceId),
                            spanId: hex(r.spanId),
                            flags: r.flags,
                            eventName: r.eventName || '',
                            resource,
                            scope,
                            request: rec,
                            raw: r,
                        });
                    }
                }
            }
        }
        return out;
    };

    /*
     * Poll pred(rx) until it returns a truthy value, which is returned;
     * throws after timeoutMs, saying what was received.
     */
    rx.waitFor = async (pred, timeoutMs = 5000, intervalMs = 20) => {
        const deadline = now() + timeoutMs;
        for (;;) {
            const v = await pred(rx);
            if (v) {
                return v;
            }
            if (now() >= deadline) {
                const seen = rx.requests.map((r) => `${r.signal || r.path}` +
                    `${r.error ? ` (${r.error})` : ''} -> ${r.answer ? JSON.stringify(
                        r.answer.destroyed ? 'cut' : r.answer.status) : 'pending'}`);
                throw new Error(`OTLP receiver: condition not met within ${timeoutMs} ms; ` +
                    `${rx.requests.length} requests: ${seen.join(', ') || 'none'}`);
            }
            await sleep(intervalMs);
        }
    };

    /* stop listening, cut every connection and drop pending answers */
    rx.close = () => new Promise((resolve) => {
        rx.closed = true;
        for (const t of rx.timers) {
            clearTimeout(t);
            t.wake();
        }
        rx.timers.clear();
        for (const s of rx.sockets) {
            s.destroy();
        }
        server.close(() => resolve());
    });

    return rx;
}

function otlpScope(scope) {
    return {
        name: (scope && scope.name) || '',
        version: (scope && scope.version) || '',
        attrs: attrs(scope && scope.attributes),
    };
}

/* The points of one metric, flattened (see rx.metrics). */
function otlpPoints(m, resource, scope, rec) {
    const type = m.data;
    const d = type ? m[type] : null;
    if (!d) {
        return [];
    }
    return d.dataPoints.map((p) => {
        const out = {
            name: m.name,
            type,
            unit: m.unit || '',
            description: m.description || '',
            temporality: d.aggregationTemporality || 0,
            monotonic: d.isMonotonic === true,
            attrs: attrs(p.attributes),
            start: p.startTimeUnixNano,
            time: p.timeUnixNano,
            flags: p.flags || 0,
            resource,
            scope,
            request: rec,
            raw: p,
        };
        if (type === 'gauge' || type === 'sum') {
            out.value = p.value === 'asInt' ? num(p.asInt) : p.asDouble;
        } else if (type === 'histogram') {
            Object.assign(out, {
                count: num(p.count || 0n),
                sum: p.sum,
                min: p.min,
                max: p.max,
                bounds: p.explicitBounds,
                buckets: p.bucketCounts.map(num),
            });
        } else if (type === 'exponentialHistogram') {
            const side = (b) => ({
                offset: (b && b.offset) || 0,
                buckets: ((b && b.bucketCounts) || []).map(num),
            });
            Object.assign(out, {
                count: num(p.count || 0n),
                sum: p.sum,
                min: p.min,
                max: p.max,
                scale: p.scale || 0,
                zeroCount: num(p.zeroCount || 0n),
                positive: side(p.positive),
                negative: side(p.negative),
            });
        } else if (type === 'summary') {
            Object.assign(out, {
                count: num(p.count || 0n),
                sum: p.sum || 0,
                quantiles: p.quantileValues.map((q) => ({
                    quantile: q.quantile || 0, value: q.value || 0,
                })),
            });
        }
        return out;
    });
}

/*
 * POST one encoded body to a receiver the way an exporter would (for
 * tests of the receiver itself): {status, headers, body (Buffer), cut
 * (the connection closed without an answer)}.
 */
export function postOTLP(url, body, { gzip = false, headers = {}, timeoutMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
        const payload = gzip ? zlib.gzipSync(body) : body;
        const h = { 'content-type': 'application/x-protobuf', ...headers };
        if (gzip) {
            h['content-encoding'] = 'gzip';
        }
        h['content-length'] = String(payload.length);
        const u = new URL(url);
        const req = http.request({
            host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: h,
            agent: false,
        }, (res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => {
                clearTimeout(timer);
                resolve({
                    status: res.statusCode, headers: res.headers, body: Buffer.concat(parts),
                    cut: false,
                });
            });
        });
        const timer = setTimeout(() => {
            req.destroy(new Error(`POST ${url} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        req.on('error', (e) => {
            clearTimeout(timer);
            if (e.code === 'ECONNRESET' || /socket hang up/.test(e.message)) {
                resolve({ status: null, headers: {}, body: Buffer.alloc(0), cut: true });
            } else {
                reject(e);
            }
        });
        req.end(payload);
    });
}
