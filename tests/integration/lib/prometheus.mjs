/*
 * tests/integration/lib/prometheus.mjs: a real Prometheus server scraping
 * the programs under test.
 *
 * startPrometheus() writes a configuration into a temporary directory and
 * runs /usr/bin/prometheus (2.42 in Debian) on a free loopback port with
 * its TSDB there too, so that a test can check that an exposition is not
 * only well formed (promtool does that) but scraped and queryable: the
 * target is up, the series exist with the expected labels and values.
 * Start-up stays short: no remote write, no rules, a small retention.
 * When the binary is missing it returns null and the caller skips.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { freePort, getJSON, now, sleep, startProcess } from './harness.mjs';

export const PROMETHEUS_BIN = process.env.TAP_PROMETHEUS || '/usr/bin/prometheus';

/*
 * A scrape target as {scheme, address, path}: a 'host:port' string, a URL
 * (its path is the metrics path), a port number, or a handle with an
 * adminUrl (infertap) or a url (the simulator, node servers).
 */
function promTarget(t, metricsPath) {
    let u;
    if (typeof t === 'number') {
        u = `http://127.0.0.1:${t}`;
    } else if (typeof t === 'string') {
        u = /^[a-z]+:\/\//.test(t) ? t : `http://${t}`;
    } else {
        u = t.adminUrl || t.url;
    }
    const url = new URL(u);
    const p = url.pathname === '/' ? metricsPath : url.pathname;
    return { scheme: url.protocol.replace(':', ''), address: url.host, path: p };
}

/* A Prometheus duration of ms milliseconds. */
function promDuration(ms) {
    return `${Math.max(1, Math.round(ms))}ms`;
}

/*
 * Start Prometheus scraping targets (see promTarget) every scrapeIntervalMs
 * (default 1000).  The targets are grouped by scheme and metrics path
 * (default metricsPath '/metrics'), one scrape job each, named job (default
 * 'infertap') or job-1, job-2... when there are several; labels are added
 * to every target.  bearerToken sends "Authorization: Bearer TOKEN"; https
 * targets are scraped without verifying the certificate.  Returns null
 * when the binary (bin: $TAP_PROMETHEUS or /usr/bin/prometheus) is
 * missing, else the startProcess handle plus {url, port, dir, config (the
 * YAML written), query(expr, time?) (the result array of GET
 * /api/v1/query), waitQuery(expr, pred?, timeoutMs?) (polls query until
 * pred(result) holds, default a non-empty result), targets() (the
 * activeTargets of /api/v1/targets), waitUp(timeoutMs?) (until every
 * target has been scraped and is up), close() (stops Prometheus, judging
 * its exit like stop(), and removes the directory)}.
 */
export async function startPrometheus({
    targets = [], scrapeIntervalMs = 1000, scrapeTimeoutMs, bearerToken, job = 'infertap',
    metricsPath = '/metrics', labels = {}, timeoutMs = 15000, bin = PROMETHEUS_BIN,
} = {}) {
    if (!fs.existsSync(bin)) {
        return null;
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'infertap-prom-'));
    const groups = new Map();
    for (const t of targets) {
        const pt = promTarget(t, metricsPath);
        const k = `${pt.scheme} ${pt.path}`;
        if (!groups.has(k)) {
            groups.set(k, { scheme: pt.scheme, path: pt.path, addresses: [] });
        }
        groups.get(k).addresses.push(pt.address);
    }
    const interval = promDuration(scrapeIntervalMs);
    const timeout = promDuration(Math.min(scrapeTimeoutMs || scrapeIntervalMs, scrapeIntervalMs));
    /* JSON is YAML: no quoting rules to get wrong */
    const q = (s) => JSON.stringify(String(s));
    let yml = `global:\n  scrape_interval: ${interval}\n  scrape_timeout: ${timeout}\n` +
        `  evaluation_interval: ${interval}\n`;
    yml += groups.size === 0 ? 'scrape_configs: []\n' : 'scrape_configs:\n';
    let i = 0;
    for (const g of groups.values()) {
        i++;
        const name = groups.size === 1 ? job : `${job}-${i}`;
        yml += `  - job_name: ${q(name)}\n    scheme: ${g.scheme}\n` +
            `    metrics_path: ${q(g.path)}\n`;
        if (bearerToken !== undefined) {
            yml += `    authorization:\n      type: Bearer\n      credentials: ${q(bearerToken)}\n`;
        }
        if (g.scheme === 'https') {
            yml += '    tls_config:\n      insecure_skip_verify: true\n';
        }
        yml += `    static_configs:\n      - targets: [${g.addresses.map(q).join(', ')}]\n`;
        if (Object.keys(labels).length > 0) {
            yml += `        labels: ${JSON.stringify(labels)}\n`;
        }
    }
    const config = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(config, yml);

    const port = await freePort();
    let h;
    try {
        h = await startProcess(bin, [
            `--config.file=${config}`,
            `--storage.tsdb.path=${path.join(dir, 'data')}`,
            '--storage.tsdb.retention.time=1h',
            /* targets are handed to the scrapers every 5 s by default */
            '--scrape.discovery-reload-interval=100ms',
            `--web.listen-address=127.0.0.1:${port}`,
            '--log.level=info',
        ], {
            ready: /msg="Server is ready to receive web requests\."/,
            readyStream: 'stderr',
            name: 'prometheus',
            timeoutMs,
        });
    } catch (e) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw e;
    }
    h.port = port;
    h.url = `http://127.0.0.1:${port}`;
    h.dir = dir;
    h.config = yml;

    const api = async (p) => {
        const r = await getJSON(`${h.url}${p}`);
        if (r.status !== 200 || !r.json || r.json.status !== 'success') {
            throw new Error(`prometheus ${p}: ${r.status} ${r.body}`);
        }
        return r.json.data;
    };

    h.query = async (expr, time) => {
        const t = time === undefined ? '' : `&time=${encodeURIComponent(time)}`;
        const d = await api(`/api/v1/query?query=${encodeURIComponent(expr)}${t}`);
        return d.result;
    };

    h.waitQuery = async (expr, pred = (r) => r.length > 0, ms = 10000) => {
        const deadline = now() + ms;
        let r;
        for (;;) {
            r = await h.query(expr);
            if (pred(r) || now() >= deadline) {
                break;
            }
            await sleep(100);
        }
        if (!pred(r)) {
            throw new Error(`prometheus: ${expr} did not hold within ${ms} ms: ` +
                `${JSON.stringify(r)}`);
        }
        return r;
    };

    h.targets = async () => (await api('/api/v1/targets')).activeTargets;

    h.waitUp = async (ms = 10000) => {
        const deadline = now() + ms;
        let t;
        for (;;) {
            t = await h.targets();
            if ((t.length > 0 && t.every((x) => x.health === 'up')) || now() >= deadline) {
                break;
            }
            await sleep(100);
        }
        if (!(t.length > 0 && t.every((x) => x.health === 'up'))) {
            throw new Error(`prometheus: targets not up within ${ms} ms: ${JSON.stringify(
                t.map((x) => ({ url: x.scrapeUrl, health: x.health, error: x.lastError })))}`);
        }
        return t;
    };

    /* the ready line came first; the HTTP check must agree */
    const ready = await fetchReady(h.url);
    if (!ready) {
        await h.kill();
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`prometheus logged ready but ${h.url}/-/ready did not answer 200\n` +
            `stderr:\n${h.stderr}`);
    }

    h.close = async () => {
        try {
            return await h.stop();
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    };
    return h;
}

/* Poll GET /-/ready for up to two seconds. */
async function fetchReady(url) {
    const deadline = now() + 2000;
    for (;;) {
        try {
            const r = await getJSON(`${url}/-/ready`, { timeoutMs: 1000 });
            if (r.status === 200) {
                return true;
            }
        } catch {
            /* not listening yet */
        }
        if (now() >= deadline) {
            return false;
        }
        await sleep(50);
    }
}
