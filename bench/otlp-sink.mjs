#!/usr/bin/env node
/*
 * bench/otlp-sink.mjs: the cheapest OTLP/HTTP receiver there is, for
 * bench/compare's infertap+otlp row.  It reads each request, answers 200
 * with an empty (valid) protobuf response, and on SIGTERM prints how many
 * requests and bytes per path it got.  It decodes nothing: the benchmark
 * measures infertap's cost of exporting, not a collector's.
 *
 *   node bench/otlp-sink.mjs PORT
 */

import http from 'node:http';

const port = Number(process.argv[2] || 4318);
const seen = new Map();

const server = http.createServer({ keepAliveTimeout: 60000 }, (req, res) => {
    let bytes = 0;
    req.on('data', (c) => { bytes += c.length; });
    req.on('end', () => {
        const s = seen.get(req.url) || { requests: 0, bytes: 0 };
        s.requests += 1;
        s.bytes += bytes;
        seen.set(req.url, s);
        res.writeHead(200, { 'content-type': 'application/x-protobuf', 'content-length': 0 });
        res.end();
    });
});

server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => {
    for (const [p, s] of seen) {
        console.log(`${p} ${s.requests} requests ${s.bytes} bytes`);
    }
    process.exit(0);
});
