/*
 * TLS on both sides of infertap, with a throwaway CA made by the openssl
 * command for this run: a TLS listener in front of the simulator, https://
 * upstreams with verification (CA file, host name, SNI), and a client
 * certificate for an upstream that demands one (mutual TLS).
 */

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';

import { startSim, startProxy, stopAll, curl, getJSON } from './lib/harness.mjs';

let dir;
let sim;

function openssl(args) {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/* A CA and a leaf signed by it, for DNS:localhost and IP:127.0.0.1. */
function makeCA(name) {
    openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${name}-ca.key`, '-out', `${name}-ca.pem`, '-days', '2',
        '-subj', `/CN=${name} test CA`]);
}

function makeLeaf(ca, name, san) {
    fs.writeFileSync(path.join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
        '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`]);
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}-ca.pem`, '-CAkey', `${ca}-ca.key`,
        '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`]);
}

const f = (name) => path.join(dir, name);

/* infertap with these arguments on an ephemeral port (lib/harness.mjs). */
function startTap(args) {
    return startProxy({ args });
}

/* An https upstream answering every request with what it saw. */
function startHttpsUpstream(opts) {
    return new Promise((resolve) => {
        const seen = [];
        const srv = https.createServer({
            key: fs.readFileSync(f('upstream.key')),
            cert: fs.readFileSync(f('upstream.pem')),
            ...opts,
        }, (req, res) => {
            const peer = req.socket.getPeerCertificate();
            if (req.headers['user-agent'] === 'infertap-health') {
                res.end('ok');              /* active health checks: not counted */
                return;
            }
            seen.push({ url: req.url, servername: req.socket.servername,
                client: peer && peer.subject ? peer.subject.CN : null,
                proto: req.headers['x-forwarded-proto'] });
            res.setHeader('content-type', 'application/json');
            res.end(JSON.stringify({ ok: true, url: req.url }));
        });
        srv.listen(0, '127.0.0.1', () => {
            srv.port = srv.address().port;
            srv.seen = seen;
            resolve(srv);
        });
    });
}

before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'infertap-tls-'));
    makeCA('good');
    makeCA('other');
    makeLeaf('good', 'proxy', 'DNS:localhost,IP:127.0.0.1');
    makeLeaf('good', 'upstream', 'DNS:localhost,IP:127.0.0.1');
    makeLeaf('good', 'client', 'DNS:infertap-client');
    sim = await startSim([]);
});

after(async () => {
    await sim?.stop();
    await stopAll();
    fs.rmSync(dir, { recursive: true, force: true });
});

test('TLS listener: curl verifies infertap and gets the simulator\'s answer', async () => {
    const tap = await startTap(['--upstream', sim.url,
        '--set', `tls.cert=${f('proxy.pem')}`, '--set', `tls.key=${f('proxy.key')}`]);
    try {
        const r = await curl(['-sS', '--cacert', f('good-ca.pem'),
            `https://localhost:${tap.port}/v1/chat/completions`, '-H', 'content-type: application/json',
            '-d', JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'tls' }],
                max_tokens: 3 })]);
        assert.equal(r.code, 0, r.stderr);
        const body = JSON.parse(r.stdout);
        assert.equal(body.usage.completion_tokens, 3);

        /* streamed too, with TLS 1.2 forced */
        const s = await curl(['-sSN', '--tlsv1.2', '--tls-max', '1.2', '--cacert', f('good-ca.pem'),
            `https://localhost:${tap.port}/v1/completions`, '-H', 'content-type: application/json',
            '-d', JSON.stringify({ model: 'm', prompt: 'tls', stream: true, max_tokens: 4 })]);
        assert.equal(s.code, 0, s.stderr);
        assert.match(s.stdout, /data: \[DONE\]\n\n$/);

        /* a client that does not trust the CA is refused by curl */
        const bad = await curl(['-sS', `https://localhost:${tap.port}/health`]);
        assert.notEqual(bad.code, 0);
    } finally {
        await tap.stop();
    }
});

test('TLS listener refuses TLS 1.1 and plain HTTP', async () => {
    const tap = await startTap(['--upstream', sim.url,
        '--set', `tls.cert=${f('proxy.pem')}`, '--set', `tls.key=${f('proxy.key')}`]);
    try {
        const old = await curl(['-sS', '--tlsv1.1', '--tls-max', '1.1', '--cacert',
            f('good-ca.pem'), `https://localhost:${tap.port}/health`]);
        assert.notEqual(old.code, 0, 'TLS 1.1 handshake must fail');
        const plain = await curl(['-sS', '-m', '3', `http://127.0.0.1:${tap.port}/health`]);
        assert.notEqual(plain.code, 0, 'plain HTTP on a TLS port must fail');
    } finally {
        await tap.stop();
    }
});

test('https upstream: verified against upstream_tls.ca_file, SNI sent, X-Forwarded-Proto', async () => {
    const up = await startHttpsUpstream({});
    const tap = await startTap(['--upstream', `https://localhost:${up.port}`,
        '--set', `upstream_tls.ca_file=${f('good-ca.pem')}`]);
    try {
        const r = await getJSON(`http://127.0.0.1:${tap.port}/v1/models?x=1`);
        assert.equal(r.status, 200, JSON.stringify(r.json));
        assert.deepEqual(r.json, { ok: true, url: '/v1/models?x=1' });
        assert.equal(up.seen.length, 1);
        assert.equal(up.seen[0].servername, 'localhost');
        assert.equal(up.seen[0].proto, 'http');
    } finally {
        await tap.stop();
        up.close();
    }
});

test('https upstream with an untrusted certificate: 502 upstream_tls_failed; verify=false passes',
    async () => {
        const up = await startHttpsUpstream({});
        const strict = await startTap(['--upstream', `https://localhost:${up.port}`,
            '--set', `upstream_tls.ca_file=${f('other-ca.pem')}`, '--set', 'retries=0']);
        const loose = await startTap(['--upstream', `https://localhost:${up.port}`,
            '--set', 'upstream_tls.verify=false']);
        try {
            const r = await getJSON(`http://127.0.0.1:${strict.port}/v1/models`);
            assert.equal(r.status, 502);
            assert.equal(r.json.error.code, 'upstream_tls_failed');
            assert.equal(up.seen.length, 0, 'no request reached the untrusted server');
            const rec = (await strict.waitLogs(1)).at(-1);
            assert.equal(rec.status, 502);
            assert.equal(rec.error, 'upstream_tls_failed');

            const ok = await getJSON(`http://127.0.0.1:${loose.port}/v1/models`);
            assert.equal(ok.status, 200);
        } finally {
            await strict.stop();
            await loose.stop();
            up.close();
        }
    });

test('https upstream: the host name is checked (SNI override to a name not in the certificate)',
    async () => {
        const up = await startHttpsUpstream({});
        const tap = await startTap(['--upstream', `https://127.0.0.1:${up.port}`,
            '--set', `upstream_tls.ca_file=${f('good-ca.pem')}`, '--set', 'retries=0',
            '--set', 'upstream_tls.sni=wrong.example']);
        const byIp = await startTap(['--upstream', `https://127.0.0.1:${up.port}`,
            '--set', `upstream_tls.ca_file=${f('good-ca.pem')}`]);
        try {
            const r = await getJSON(`http://127.0.0.1:${tap.port}/v1/models`);
            assert.equal(r.status, 502);
            assert.equal(r.json.error.code, 'upstream_tls_failed');
            /* an address literal is checked against the certificate's IP names */
            const ok = await getJSON(`http://127.0.0.1:${byIp.port}/v1/models`);
            assert.equal(ok.status, 200);
        } finally {
            await tap.stop();
            await byIp.stop();
            up.close();
        }
    });

test('mutual TLS: infertap presents upstream_tls.cert to an upstream that demands one', async () => {
    const up = await startHttpsUpstream({
        requestCert: true, rejectUnauthorized: true, ca: fs.readFileSync(f('good-ca.pem')),
    });
    const withCert = await startTap(['--upstream', `https://localhost:${up.port}`,
        '--set', `upstream_tls.ca_file=${f('good-ca.pem')}`,
        '--set', `upstream_tls.cert=${f('client.pem')}`, '--set', `upstream_tls.key=${f('client.key')}`]);
    const without = await startTap(['--upstream', `https://localhost:${up.port}`,
        '--set', `upstream_tls.ca_file=${f('good-ca.pem')}`, '--set', 'retries=0']);
    try {
        const r = await getJSON(`http://127.0.0.1:${withCert.port}/v1/models`);
        assert.equal(r.status, 200);
        assert.equal(up.seen.at(-1).client, 'client');

        const n = up.seen.length;
        const bad = await getJSON(`http://127.0.0.1:${without.port}/v1/models`);
        assert.equal(bad.status, 502);
        assert.equal(up.seen.length, n, 'the request without a certificate was not served');
    } finally {
        await withCert.stop();
        await without.stop();
        up.close();
    }
});

test('a missing or mismatched certificate stops infertap at start with a clear message', async () => {
    await assert.rejects(startTap(['--upstream', sim.url,
        '--set', `tls.cert=${f('nope.pem')}`, '--set', `tls.key=${f('proxy.key')}`]),
    /cannot load the certificate .*nope\.pem/);
    await assert.rejects(startTap(['--upstream', sim.url,
        '--set', `tls.cert=${f('proxy.pem')}`, '--set', `tls.key=${f('upstream.key')}`]),
    /private key .*(mismatch|does not match)/);
});
