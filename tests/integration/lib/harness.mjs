/*
 * tests/integration/lib/harness.mjs: shared helpers for the integration suite.
 *
 * Starts the programs under test (the simulator, the proxy; an OTLP
 * receiver and so on later) on ephemeral loopback ports, makes sure none of
 * them outlives the test file, offers scripted node upstreams (an HTTP one
 * recording what it received, a raw TCP one for broken servers), and
 * low-level client helpers that the usual HTTP clients hide: raw socket
 * exchanges, an incremental HTTP/1.1 response parser (for pipelining and
 * keep-alive checks), SSE and NDJSON parsing, timed streaming requests, and
 * thin wrappers around curl and promtool.  Only node built-ins are used here.
 */
import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

export const BUILDDIR = process.env.TAP_BUILDDIR || path.resolve(process.cwd());
export const SRCDIR = process.env.TAP_SRCDIR || path.resolve(process.cwd());
export const SIM_BIN = path.join(BUILDDIR, 'infertap-sim');

/* An ASan build: its quarantine and shadow memory make RSS figures meaningless. */
export const SANITIZED = process.env.TAP_SANITIZED === '1';
export const PROXY_BIN = path.join(BUILDDIR, 'infertap');

const tap_live = new Set();

/* UBSan only prints by default; ASan/LSan also set a failing exit status. */
const TAP_SANITIZER_RE = /ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error: /;

process.on('exit', () => {
    for (const p of tap_live) {
        try {
            p.proc.kill('SIGKILL');
        } catch {
            /* already gone */
        }
    }
});

export function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

export function now() {
    return performance.now();
}

/*
 * Spawn `bin args`, wait until a line of readyStream (stdout unless told)
 * matches `ready` (a RegExp), and return a handle.  stop() sends SIGTERM and
 * resolves with {code, signal, stderr}; it throws when the program does not
 * exit with status 0 or its stderr holds a sanitizer report, quoting stderr
 * in the failure.  waitExit() judges an exit the test caused itself.
 */
export function startProcess(bin, args, {
    ready, readyStream = 'stdout', timeoutMs = 10000, name, env,
} = {}) {
    const label = name || path.basename(bin);
    const proc = spawn(bin, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...(env || {}) },
    });
    const handle = {
        proc,
        name: label,
        args,
        stdout: '',
        stderr: '',
        exited: null,
        match: null,
    };
    tap_live.add(handle);
    handle.exitPromise = new Promise((resolve) => {
        proc.on('exit', (code, signal) => {
            handle.exited = { code, signal };
            tap_live.delete(handle);
            resolve(handle.exited);
        });
    });
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (d) => {
        if (handle.stderr.length < 1 << 20) {
            handle.stderr += d;
        }
    });
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
        handle.stdout += d;
    });

    handle.kill = () => {
        if (!handle.exited) {
            try {
                proc.kill('SIGKILL');
            } catch {
                /* already gone */
            }
        }
        return handle.exitPromise;
    };

    /*
     * Wait (without signalling) for the program to exit, then judge it: it
     * must exit with status 0 within timeoutMs and without a sanitizer
     * report.  Resolves {code, signal, stderr}.
     */
    handle.waitExit = async ({ timeoutMs: stopMs = 10000, why = 'SIGTERM' } = {}) => {
        let timer;
        const res = await Promise.race([
            handle.exitPromise,
            new Promise((resolve) => {
                timer = setTimeout(() => resolve(null), stopMs);
            }),
        ]);
        clearTimeout(timer);
        /* let the pipes drain (sanitizer reports are written last) */
        await Promise.all([proc.stdout, proc.stderr].map((s) => new Promise((resolve) => {
            if (s.readableEnded || s.destroyed) {
                resolve();
            } else {
                s.once('close', resolve);
                setTimeout(resolve, 1000);
            }
        })));
        if (res === null) {
            await handle.kill();
            throw new Error(`${label} did not exit within ${stopMs} ms of ${why}\n` +
                `stderr:\n${handle.stderr}`);
        }
        if (res.code !== 0) {
            throw new Error(`${label} exited with code ${res.code} signal ${res.signal} ` +
                `after ${why} (expected 0)\nstderr:\n${handle.stderr}`);
        }
        if (TAP_SANITIZER_RE.test(handle.stderr)) {
            throw new Error(`${label} reported a sanitizer error\nstderr:\n${handle.stderr}`);
        }
        return { ...res, stderr: handle.stderr };
    };

    handle.stop = async ({ timeoutMs: stopMs = 10000 } = {}) => {
        if (!handle.exited) {
            proc.kill('SIGTERM');
        }
        return handle.waitExit({ timeoutMs: stopMs });
    };

    const readyPromise = new Promise((resolve, reject) => {
        let buf = '';
        let timer = null;
        const done = (err, m) => {
            clearTimeout(timer);
            proc.off('exit', onExit);
            if (err) {
                reject(err);
            } else {
                resolve(m);
            }
        };
        const onData = (d) => {
            if (handle.match) {
                return;
            }
            buf += d;
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl).replace(/\r$/, '');
                buf = buf.slice(nl + 1);
                const m = ready ? line.match(ready) : [line];
                if (m) {
                    handle.match = m;
                    done(null, m);
                    return;
                }
            }
        };
        const onExit = (code, signal) => {
            done(new Error(`${label} exited (code ${code}, signal ${signal}) before it was ` +
                `ready\nstdout:\n${handle.stdout}\nstderr:\n${handle.stderr}`));
        };
        proc[readyStream].on('data', onData);
        proc.on('exit', onExit);
        proc.on('error', (err) => done(new Error(`cannot start ${bin}: ${err.message}`)));
        timer = setTimeout(() => {
            done(new Error(`${label} not ready within ${timeoutMs} ms\nstdout:\n` +
                `${handle.stdout}\nstderr:\n${handle.stderr}`));
        }, timeoutMs);
    });

    return readyPromise.then(
        () => handle,
        async (err) => {
            await handle.kill();
            throw err;
        },
    );
}

/* Kill (without judging the exit status) everything still running. */
export async function stopAll() {
    await Promise.all([...tap_live].map((h) => h.kill()));
}

/* Start the simulator on an ephemeral port: {port, url, proc, stop(), kill()}. */
export async function startSim(args = [], opts = {}) {
    const h = await startProcess(SIM_BIN, ['--listen', '127.0.0.1:0', '--quiet', ...args], {
        ready: /^infertap-sim listening on 127\.0\.0\.1:(\d+)\s*$/,
        name: 'infertap-sim',
        ...opts,
    });
    h.port = Number(h.match[1]);
    h.host = '127.0.0.1';
    h.url = `http://127.0.0.1:${h.port}`;
    return h;
}

/*
 * Run fn(sim) against a simulator of its own; the simulator is always
 * killed, and when fn succeeds its clean exit on SIGTERM is asserted too.
 */
export async function withSim(args, fn, opts) {
    const sim = await startSim(args, opts);
    let ok = false;
    try {
        const r = await fn(sim);
        ok = true;
        return r;
    } finally {
        if (ok) {
            await sim.stop();
        } else {
            await sim.kill();
        }
    }
}

/* ---- the proxy and scripted upstreams ------------------------------------------------- */

/*
 * A loopback port that was free a moment ago (for listeners whose port the
 * program does not print, such as infertap's admin server).
 */
export function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

/* Resident set size of a process in bytes (VmRSS of /proc/PID/status). */
export function rssBytes(pid) {
    const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+)\s+kB/m);
    if (!m) {
        throw new Error(`no VmRSS for pid ${pid}`);
    }
    return Number(m[1]) * 1024;
}

function upstreamURL(u) {
    if (typeof u === 'number') {
        return `http://127.0.0.1:${u}`;
    }
    if (typeof u === 'string') {
        return u;
    }
    return u.url;
}

/*
 * Start infertap on an ephemeral port with its admin server on a free port
 * and the access log on stdout.  upstreams: URLs, ports, or handles with a
 * url (sims, node upstreams).  workers defaults to 1 so that pools and
 * balancing are deterministic; nofile raises the soft descriptor limit
 * first (capped at the hard limit).  Returns the startProcess handle plus
 * {port, url, adminPort, adminUrl, logs(), waitLogs(n), admin(path),
 * metrics(), rss()}.
 */
export async function startProxy({
    upstreams = [], args = [], workers = 1, nofile, env, timeoutMs,
} = {}) {
    const adminPort = await freePort();
    const pargs = ['--listen', '127.0.0.1:0', '--admin', `127.0.0.1:${adminPort}`,
        '--access-log', '-'];
    if (workers !== null) {
        pargs.push('--workers', String(workers));
    }
    for (const u of upstreams) {
        pargs.push('--upstream', upstreamURL(u));
    }
    pargs.push(...args);
    let bin = PROXY_BIN;
    let argv = pargs;
    if (nofile) {
        bin = '/bin/sh';
        argv = ['-c', `h=$(ulimit -Hn); n=${nofile}; ` +
            '[ "$h" != unlimited ] && [ "$h" -lt "$n" ] && n=$h; ' +
            'ulimit -n "$n" && exec "$0" "$@"', PROXY_BIN, ...pargs];
    }
    const h = await startProcess(bin, argv, {
        ready: /^infertap: listening on .* \(port (\d+)\)\s*$/,
        readyStream: 'stderr',
        name: 'infertap',
        env,
        timeoutMs,
    });
    h.port = Number(h.match[1]);
    h.host = '127.0.0.1';
    h.url = `http://127.0.0.1:${h.port}`;
    h.adminPort = adminPort;
    h.adminUrl = `http://127.0.0.1:${adminPort}`;

    /* the access log records written so far (complete lines only) */
    h.logs = () => {
        const text = h.stdout;
        const end = text.lastIndexOf('\n');
        if (end < 0) {
            return [];
        }
        return text.slice(0, end).split('\n').filter((l) => l.trim() !== '').map((l) => {
            try {
                return JSON.parse(l);
            } catch (e) {
                throw new Error(`access log line is not JSON: ${l}`);
            }
        });
    };
    /* wait until at least n records are written; returns all of them */
    h.waitLogs = async (n, { timeoutMs: ms = 5000 } = {}) => {
        const ok = await waitUntil(() => h.logs().length >= n, { timeoutMs: ms });
        const logs = h.logs();
        if (!ok) {
            throw new Error(`expected ${n} access log records, got ${logs.length}:\n` +
                `${h.stdout}\nstderr:\n${h.stderr}`);
        }
        return logs;
    };
    h.admin = (p, opts) => request(`${h.adminUrl}${p}`, opts);
    h.metrics = async () => {
        const r = await h.admin('/metrics');
        if (r.status !== 200) {
            throw new Error(`/metrics answered ${r.status}`);
        }
        return parseMetrics(r.body);
    };
    /*
     * /metrics once pred(samples) holds: a response reaches the client a
     * moment before its exchange reaches the telemetry thread, so figures
     * the hub keeps (GenAI histograms, prompt tables) can lag by one.
     */
    h.metricsWhen = async (pred, timeoutMs = 3000) => {
        let samples;
        await waitUntil(async () => pred(samples = await h.metrics()), { timeoutMs });
        return samples;
    };
    h.rss = () => rssBytes(h.proc.pid);
    return h;
}

/* The value of the sample named name whose labels include labels. */
export function metricValue(samples, name, labels = {}) {
    const s = samples.find((x) => x.name === name
        && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
    return s ? s.value : undefined;
}

/* infertap's counter of one limit or timeout (infertap_limits_hit_total). */
export function limitHits(samples, limit) {
    return metricValue(samples, 'infertap_limits_hit_total', { limit });
}

/* infertap's active health checks announce themselves with this agent. */
const TAP_HEALTH_UA = 'infertap-health';
const TAP_HEALTH_RE = new RegExp(`\r\nuser-agent: ${TAP_HEALTH_UA}\r\n`, 'i');

/*
 * A node HTTP server standing in for a model server.  Every request is
 * recorded as {method, url, httpVersion, headers, rawHeaders, body (Buffer,
 * when complete), done (promise of the body), closed (set when the client
 * side went away before the response ended), conn (connection number)}.
 * handler(req, res, rec) answers; the default echoes the record as JSON
 * once the body is in.  infertap's health checks are answered 200 and only
 * counted (healthChecks), so requests and connections are the proxied
 * traffic alone.  Returns {port, url, requests, connections, healthChecks,
 * close()}.
 */
export async function startUpstream(handler) {
    const up = { requests: [], connections: 0, healthChecks: 0, sockets: new Set() };
    const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
        if (req.headers['user-agent'] === TAP_HEALTH_UA) {
            up.healthChecks++;
            res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' });
            res.end('ok\n');
            return;
        }
        if (!req.socket.tapConn) {
            up.connections++;
            req.socket.tapConn = up.connections;
        }
        const rec = {
            method: req.method, url: req.url, httpVersion: req.httpVersion,
            headers: req.headers, rawHeaders: req.rawHeaders, body: null, closed: false,
            conn: req.socket.tapConn,
        };
        const parts = [];
        rec.done = new Promise((resolve) => {
            req.on('data', (d) => parts.push(d));
            req.on('end', () => {
                rec.body = Buffer.concat(parts);
                resolve(rec.body);
            });
            req.on('error', () => resolve(null));
        });
        res.on('close', () => {
            if (!res.writableFinished) {
                rec.closed = true;
            }
        });
        up.requests.push(rec);
        if (handler) {
            handler(req, res, rec);
            return;
        }
        rec.done.then(() => {
            const body = JSON.stringify({
                method: rec.method, url: rec.url, httpVersion: rec.httpVersion,
                rawHeaders: rec.rawHeaders, body: rec.body ? rec.body.toString('latin1') : null,
            });
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(body);
        });
    });
    server.on('connection', (sock) => {
        up.sockets.add(sock);
        sock.on('close', () => up.sockets.delete(sock));
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    up.server = server;
    up.port = server.address().port;
    up.url = `http://127.0.0.1:${up.port}`;
    up.close = () => new Promise((resolve) => {
        for (const s of up.sockets) {
            s.destroy();
        }
        server.close(() => resolve());
    });
    return up;
}

/*
 * A raw TCP upstream.  Once a connection sends its first bytes,
 * onConn(sock, conn) runs and then sees those bytes as a 'data' event;
 * conn = {data: Buffer received so far, closed}.  Connections that send
 * nothing, and infertap's health checks (answered 200), are only counted
 * (silent, healthChecks).  Returns {port, url, conns, bytes() (total
 * received), close()}.
 */
export async function startRawUpstream(onConn) {
    const up = { conns: [], silent: 0, healthChecks: 0, sockets: new Set() };
    const server = net.createServer((sock) => {
        let used = false;
        up.sockets.add(sock);
        sock.on('error', () => {});
        sock.on('close', () => {
            up.sockets.delete(sock);
            if (!used) {
                up.silent++;
            }
        });
        sock.once('data', (first) => {
            used = true;
            if (TAP_HEALTH_RE.test(first.toString('latin1'))) {
                up.healthChecks++;
                sock.end('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
                return;
            }
            const conn = { sock, data: Buffer.alloc(0), closed: false };
            up.conns.push(conn);
            sock.on('data', (d) => {
                conn.data = Buffer.concat([conn.data, d]);
            });
            sock.on('close', () => {
                conn.closed = true;
            });
            if (onConn) {
                onConn(sock, conn);
            }
            sock.emit('data', first);
        });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    up.server = server;
    up.port = server.address().port;
    up.url = `http://127.0.0.1:${up.port}`;
    up.bytes = () => up.conns.reduce((a, c) => a + c.data.length, 0);
    up.close = () => new Promise((resolve) => {
        for (const s of up.sockets) {
            s.destroy();
        }
        server.close(() => resolve());
    });
    return up;
}

/* Run a program to completion: {code, signal, stdout, stderr}. */
export function run(bin, args, { input, timeoutMs = 10000 } = {}) {
    return new Promise((resolve) => {
        const child = execFile(bin, args, {
            encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20,
        }, (err, stdout, stderr) => {
            resolve({
                code: err ? (typeof err.code === 'number' ? err.code : null) : 0,
                signal: err ? err.signal || null : null,
                stdout,
                stderr,
            });
        });
        if (input !== undefined) {
            child.stdin.end(input);
        } else {
            child.stdin.end();
        }
    });
}

export function curl(args, opts) {
    return run('curl', args, opts);
}

/*
 * promtool check metrics over an exposition body.  Returns {code, problems,
 * errors}: problems are the lint lines, errors those that are not about
 * metric names with ':' (which the vLLM naming scheme requires).
 */
export async function promtoolCheck(body) {
    const r = await run('promtool', ['check', 'metrics'], { input: body });
    const lines = (r.stdout + r.stderr).split('\n').map((l) => l.trim()).filter(Boolean);
    const errors = lines.filter((l) => !/metric names should not contain ':'/.test(l));
    return { code: r.code, problems: lines, errors };
}

/* ---- raw sockets ---------------------------------------------------------------------- */

/*
 * A raw TCP connection that collects everything the peer sends.  write()
 * ignores errors (a server may close while a large body is still in flight).
 */
export class RawConn {
    constructor(sock) {
        this.sock = sock;
        this.buf = Buffer.alloc(0);
        this.closed = false;
        this.error = null;
        this.waiters = [];
        sock.on('data', (d) => {
            this.buf = Buffer.concat([this.buf, d]);
            this.wake();
        });
        sock.on('error', (e) => {
            this.error = e;
        });
        sock.on('close', () => {
            this.closed = true;
            this.wake();
        });
    }

    static connect(port, host = '127.0.0.1') {
        return new Promise((resolve, reject) => {
            const sock = net.connect({ port, host });
            sock.setNoDelay(true);
            const conn = new RawConn(sock);
            sock.once('connect', () => resolve(conn));
            sock.once('error', reject);
        });
    }

    wake() {
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) {
            f();
        }
    }

    write(data) {
        return new Promise((resolve) => {
            if (this.closed || this.sock.destroyed) {
                resolve(false);
                return;
            }
            this.sock.write(data, (err) => resolve(!err));
        });
    }

    /* Wait until pred() is true, the peer closes, or timeoutMs passes. */
    async waitFor(pred, timeoutMs = 5000) {
        const deadline = now() + timeoutMs;
        while (!pred() && !this.closed) {
            const left = deadline - now();
            if (left <= 0) {
                return false;
            }
            await new Promise((resolve) => {
                const t = setTimeout(resolve, left);
                this.waiters.push(() => {
                    clearTimeout(t);
                    resolve();
                });
            });
        }
        return pred();
    }

    waitClose(timeoutMs = 5000) {
        return this.waitFor(() => this.closed, timeoutMs);
    }

    /*
     * Read the next complete HTTP response from the buffer (consuming it).
     * Returns null on timeout or when the peer closed first.
     */
    async readResponse({ timeoutMs = 5000, head = false } = {}) {
        let res = null;
        await this.waitFor(() => {
            res = parseResponse(this.buf, { closed: this.closed, head });
            return res !== null;
        }, timeoutMs);
        if (!res) {
            res = parseResponse(this.buf, { closed: this.closed, head });
        }
        if (res) {
            this.buf = this.buf.subarray(res.length);
        }
        return res;
    }

    text() {
        return this.buf.toString('utf8');
    }

    destroy() {
        this.sock.destroy();
    }
}

/*
 * Send `data` (a string/Buffer, or an array of pieces written separately with
 * a short pause between them) and collect the reply until the peer closes or
 * timeoutMs passes.  Returns {buf, text, closed, timedOut}.
 */
export async function rawExchange(port, data, { timeoutMs = 3000, gapMs = 20 } = {}) {
    const conn = await RawConn.connect(port);
    const pieces = Array.isArray(data) ? data : [data];
    for (let i = 0; i < pieces.length; i++) {
        if (i > 0 && gapMs > 0) {
            await sleep(gapMs);
        }
        await conn.write(pieces[i]);
    }
    const closed = await conn.waitClose(timeoutMs);
    conn.destroy();
    return { buf: conn.buf, text: conn.text(), closed, timedOut: !closed };
}

/*
 * Parse one HTTP/1.x response at the start of buf.  Returns null if it is not
 * complete yet, else {status, reason, version, headers (lowercased; repeated
 * names joined by ", "), rawHeaders, body (Buffer), length (bytes consumed),
 * chunked, complete}.  With closed=true a close-delimited or truncated body is
 * returned as it is, complete=false when it fell short of its framing.
 */
export function parseResponse(buf, { closed = false, head = false } = {}) {
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) {
        return null;
    }
    const headText = buf.subarray(0, end).toString('latin1');
    const lines = headText.split('\r\n');
    const m = lines[0].match(/^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/);
    if (!m) {
        throw new Error(`bad status line: ${JSON.stringify(lines[0])}`);
    }
    const headers = {};
    const rawHeaders = [];
    for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i <= 0) {
            throw new Error(`bad header line: ${JSON.stringify(l)}`);
        }
        const k = l.slice(0, i).trim().toLowerCase();
        const v = l.slice(i + 1).trim();
        rawHeaders.push([k, v]);
        headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
    }
    const status = Number(m[2]);
    const base = {
        status, reason: m[3] || '', version: m[1], headers, rawHeaders, chunked: false,
    };
    let pos = end + 4;
    if (head || status === 204 || status === 304 || (status >= 100 && status < 200)) {
        return { ...base, body: Buffer.alloc(0), length: pos, complete: true };
    }
    if (/\bchunked\b/i.test(headers['transfer-encoding'] || '')) {
        const parts = [];
        for (;;) {
            const le = buf.indexOf('\r\n', pos);
            if (le < 0) {
                break;
            }
            const size = parseInt(buf.subarray(pos, le).toString('latin1').split(';')[0], 16);
            if (Number.isNaN(size)) {
                throw new Error('bad chunk size line');
            }
            if (size === 0) {
                /* skip trailers up to the empty line */
                let p = le + 2;
                for (;;) {
                    const te = buf.indexOf('\r\n', p);
                    if (te < 0) {
                        p = -1;
                        break;
                    }
                    if (te === p) {
                        p = te + 2;
                        break;
                    }
                    p = te + 2;
                }
                if (p < 0) {
                    break;
                }
                return {
                    ...base, chunked: true, body: Buffer.concat(parts), length: p, complete: true,
                };
            }
            if (buf.length < le + 2 + size + 2) {
                break;
            }
            parts.push(buf.subarray(le + 2, le + 2 + size));
            pos = le + 2 + size + 2;
        }
        if (closed) {
            return {
                ...base, chunked: true, body: Buffer.concat(parts), length: buf.length,
                complete: false,
            };
        }
        return null;
    }
    if ('content-length' in headers) {
        const n = Number(headers['content-length']);
        if (buf.length >= pos + n) {
            return { ...base, body: buf.subarray(pos, pos + n), length: pos + n, complete: true };
        }
        if (closed) {
            return { ...base, body: buf.subarray(pos), length: buf.length, complete: false };
        }
        return null;
    }
    if (closed) {
        return { ...base, body: buf.subarray(pos), length: buf.length, complete: true };
    }
    return null;
}

/* Parse every complete response in buf, in order. */
export function parseResponses(buf, opts) {
    const out = [];
    let rest = buf;
    while (rest.length > 0) {
        const r = parseResponse(rest, opts);
        if (!r) {
            break;
        }
        out.push(r);
        rest = rest.subarray(r.length);
        if (!r.complete) {
            break;
        }
    }
    return out;
}

/* Build a request: httpRequest('POST', '/x', {host, headers, body, chunked}). */
export function buildRequest(method, target, { headers = {}, body, host = '127.0.0.1' } = {}) {
    const b = body === undefined ? null
        : Buffer.isBuffer(body) ? body
            : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    let s = `${method} ${target} HTTP/1.1\r\nHost: ${host}\r\n`;
    const have = Object.fromEntries(Object.keys(headers).map((k) => [k.toLowerCase(), true]));
    for (const [k, v] of Object.entries(headers)) {
        s += `${k}: ${v}\r\n`;
    }
    if (b && !have['content-type']) {
        s += 'Content-Type: application/json\r\n';
    }
    if (b && !have['content-length'] && !have['transfer-encoding']) {
        s += `Content-Length: ${b.length}\r\n`;
    }
    s += '\r\n';
    return b ? Buffer.concat([Buffer.from(s, 'latin1'), b]) : Buffer.from(s, 'latin1');
}

/* ---- event streams -------------------------------------------------------------------- */

/* Parse an SSE body into [{event, data, id}] (data lines joined by "\n"). */
export function parseSSE(text) {
    const events = [];
    const blocks = text.replace(/\r\n/g, '\n').replace(/\r/g, '\n').split('\n\n');
    for (const block of blocks) {
        if (block.trim() === '') {
            continue;
        }
        const ev = { event: 'message', data: null, id: null, comment: false };
        const data = [];
        let fields = 0;
        for (const line of block.split('\n')) {
            if (line.startsWith(':')) {
                continue;
            }
            const i = line.indexOf(':');
            const name = i < 0 ? line : line.slice(0, i);
            let value = i < 0 ? '' : line.slice(i + 1);
            if (value.startsWith(' ')) {
                value = value.slice(1);
            }
            fields++;
            if (name === 'data') {
                data.push(value);
            } else if (name === 'event') {
                ev.event = value;
            } else if (name === 'id') {
                ev.id = value;
            }
        }
        if (fields === 0) {
            continue;
        }
        ev.data = data.length ? data.join('\n') : null;
        events.push(ev);
    }
    return events;
}

/* The data payloads of an SSE body. */
export function sseData(text) {
    return parseSSE(text).map((e) => e.data).filter((d) => d !== null);
}

/* Parse an NDJSON body into objects (throws on a bad line). */
export function parseNDJSON(text) {
    return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
}

/* ---- HTTP clients --------------------------------------------------------------------- */

/*
 * One HTTP request over a fresh connection (no pooling), recording when each
 * piece of the body arrived.  Resolves {status, headers, body (string), buf,
 * chunks: [{t, data}], t0, tHeaders, tEnd, aborted}; times are ms since t0.
 * Does not reject when the server cuts the body short: aborted is set then.
 */
export function request(url, { method = 'GET', headers = {}, body, timeoutMs = 15000 } = {}) {
    return new Promise((resolve, reject) => {
        const u = new URL(url);
        const payload = body === undefined ? null
            : Buffer.isBuffer(body) ? body
                : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
        const h = { ...headers };
        if (payload && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
            h['content-type'] = 'application/json';
        }
        if (payload) {
            h['content-length'] = String(payload.length);
        }
        const t0 = now();
        const req = http.request({
            host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers: h,
            agent: false,
        }, (res) => {
            const tHeaders = now() - t0;
            const chunks = [];
            let aborted = false;
            res.on('data', (d) => chunks.push({ t: now() - t0, data: d }));
            res.on('aborted', () => {
                aborted = true;
            });
            let done = false;
            const finish = () => {
                if (done) {
                    return;
                }
                done = true;
                clearTimeout(timer);
                const buf = Buffer.concat(chunks.map((c) => c.data));
                resolve({
                    status: res.statusCode, headers: res.headers, buf, body: buf.toString('utf8'),
                    chunks: chunks.map((c) => ({ t: c.t, data: c.data.toString('utf8') })),
                    t0, tHeaders, tEnd: now() - t0, aborted: aborted || !res.complete,
                });
            };
            res.on('end', finish);
            res.on('error', () => {
                aborted = true;
                finish();
            });
            res.on('close', () => {
                if (!res.complete) {
                    aborted = true;
                }
                finish();
            });
        });
        const timer = setTimeout(() => {
            req.destroy(new Error(`request to ${url} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        req.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        if (payload) {
            req.end(payload);
        } else {
            req.end();
        }
    });
}

/* POST JSON and parse a JSON reply: {status, headers, json, body}. */
export async function postJSON(url, body, opts = {}) {
    const r = await request(url, { method: 'POST', body, ...opts });
    let json;
    try {
        json = JSON.parse(r.body);
    } catch {
        json = undefined;
    }
    return { ...r, json };
}

export async function getJSON(url, opts = {}) {
    const r = await request(url, { method: 'GET', ...opts });
    let json;
    try {
        json = JSON.parse(r.body);
    } catch {
        json = undefined;
    }
    return { ...r, json };
}

/*
 * Reassemble a recorded streaming body into SSE events stamped with the
 * arrival time of the piece that completed them: [{t, data, event}].
 */
export function timedSSE(chunks) {
    const out = [];
    let acc = '';
    for (const c of chunks) {
        acc += c.data;
        acc = acc.replace(/\r\n/g, '\n');
        let i;
        while ((i = acc.indexOf('\n\n')) >= 0) {
            const block = acc.slice(0, i + 2);
            acc = acc.slice(i + 2);
            for (const ev of parseSSE(block)) {
                out.push({ t: c.t, ...ev });
            }
        }
    }
    return out;
}

/* Same for NDJSON: [{t, obj}]. */
export function timedNDJSON(chunks) {
    const out = [];
    let acc = '';
    for (const c of chunks) {
        acc += c.data;
        let i;
        while ((i = acc.indexOf('\n')) >= 0) {
            const line = acc.slice(0, i);
            acc = acc.slice(i + 1);
            if (line.trim() !== '') {
                out.push({ t: c.t, obj: JSON.parse(line) });
            }
        }
    }
    return out;
}

/* Parse a Prometheus text exposition into [{name, labels, value}]. */
export function parseMetrics(text) {
    const out = [];
    for (const line of text.split('\n')) {
        if (line === '' || line.startsWith('#')) {
            continue;
        }
        const m = line.match(/^([A-Za-z_:][A-Za-z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$/);
        if (!m) {
            throw new Error(`unparsable metrics line: ${line}`);
        }
        const labels = {};
        if (m[3]) {
            for (const lm of m[3].matchAll(/([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
                labels[lm[1]] = lm[2];
            }
        }
        out.push({ name: m[1], labels, value: Number(m[4]) });
    }
    return out;
}

/* Sum of every sample named `name` (across label sets); undefined if none. */
export function metricSum(samples, name) {
    const s = samples.filter((x) => x.name === name);
    return s.length ? s.reduce((a, x) => a + x.value, 0) : undefined;
}

/* Poll fn() until it returns a truthy value or timeoutMs passes. */
export async function waitUntil(fn, { timeoutMs = 3000, intervalMs = 25 } = {}) {
    const deadline = now() + timeoutMs;
    let v;
    for (;;) {
        v = await fn();
        if (v || now() >= deadline) {
            return v;
        }
        await sleep(intervalMs);
    }
}

/*
 * Settle `promise` within ms or reject with a timeout error.  The timer keeps
 * the event loop alive, so a client library that stops waking up (for
 * example on a connection the server cut) fails the one test, not the file.
 */
export function deadline(promise, ms, what = 'operation') {
    let timer;
    const t = new Promise((resolve, reject) => {
        timer = setTimeout(() => {
            const e = new Error(`${what} did not settle within ${ms} ms`);
            e.code = 'TAP_DEADLINE';
            reject(e);
        }, ms);
    });
    return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}
