/*
 * The command line and configuration checks as a user meets them: `-t`
 * names the file, line and key of an error; usage errors exit 2,
 * configuration errors 1; -V, -T and -h.
 */

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { BUILDDIR, SRCDIR, run } from './lib/harness.mjs';

const TAP_BIN = path.join(BUILDDIR, 'infertap');
const DATA = path.join(SRCDIR, 'tests', 'data', 'conf');

function tap(args, env = {}) {
    return new Promise((resolve) => {
        const saved = { ...process.env };
        Object.assign(process.env, env);
        run(TAP_BIN, args).then((r) => {
            process.env = saved;
            resolve(r);
        });
    });
}

test('-t reports file, line and key of a configuration error, exit 1', async () => {
    const cases = [
        ['unknown_key.yaml', /unknown_key\.yaml:7: key 'timeouts\.conect': unknown key/],
        ['bad_duration.yaml', /bad_duration\.yaml:3: key 'timeouts\.connect': invalid duration 'abc'/],
        ['syntax_error.yaml', /syntax_error\.yaml:\d+: /],
        ['tls_half.yaml', /tls\.cert is set but tls\.key is not|tls\.key is set but tls\.cert is not/],
        ['bad_url.yaml', /bad_url\.yaml:\d+: key 'upstreams'/],
    ];
    for (const [file, re] of cases) {
        const r = await tap(['-t', '-c', path.join(DATA, file)]);
        assert.equal(r.code, 1, `${file}: ${r.stderr}`);
        assert.match(r.stderr, re, file);
    }
});

test('-t on a good configuration says so, exit 0; conf/ examples are valid', async () => {
    const r = await tap(['-t', '--upstream', 'http://127.0.0.1:8000']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr + r.stdout, /configuration is valid/);
    for (const f of fs.readdirSync(path.join(SRCDIR, 'conf')).filter((n) => n.endsWith('.yaml'))) {
        const c = await tap(['-t', '-c', path.join(SRCDIR, 'conf', f)]);
        assert.equal(c.code, 0, `conf/${f}: ${c.stderr}`);
    }
});

test('errors from the environment and the command line name their origin', async () => {
    let r = await tap(['-t', '--upstream', 'http://127.0.0.1:1'], { INFERTAP_WORKERS: 'x' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /INFERTAP_WORKERS: key 'workers': invalid integer 'x'/);
    r = await tap(['-t', '--upstream', 'http://127.0.0.1:1', '--set', 'nope=1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /command line: key 'nope': unknown key/);
    r = await tap(['-t']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no upstream configured/);
    r = await tap(['-t', '-c', path.join(os.tmpdir(), 'infertap-no-such-file.yaml')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /infertap-no-such-file\.yaml/);
});

test('usage errors exit 2 with the usage text', async () => {
    for (const args of [['--bogus'], ['--set', 'x']]) {
        const r = await tap(args);
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /usage: infertap/);
    }
});

test('-V, -T and -h', async () => {
    const v = await tap(['-V']);
    assert.equal(v.code, 0);
    assert.match(v.stdout + v.stderr, /^infertap \d+\.\d+\.\d+/m);
    assert.match(v.stdout + v.stderr, /llhttp .*libevent .*OpenSSL/);

    const items = await tap(['-T']);
    assert.equal(items.code, 0);
    for (const key of ['listen', 'upstreams', 'timeouts.stream_idle', 'limits.max_body_bytes',
        'health.interval', 'tls.cert', 'upstream_tls.verify', 'otlp.endpoint']) {
        assert.match(items.stdout, new RegExp(`^${key.replace('.', '\\.')}\\b`, 'm'), key);
    }

    const h = await tap(['-h']);
    assert.equal(h.code, 0);
    assert.match(h.stdout + h.stderr, /--upstream URL/);
});
