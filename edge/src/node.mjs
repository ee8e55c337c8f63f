#!/usr/bin/env node
// The Node entry: Kavach's REST API from the WebAssembly module over node:http, with storage on
// Turso or sqld.
//
//   node edge/src/node.mjs --url http://127.0.0.1:8080 [--auth-token T] [--port 8787] [--migrate]
//
// The URL and token may also come from KAVACH_DATABASE_URL and KAVACH_DATABASE_AUTH_TOKEN. The
// first line on stdout is "kavach edge listening on http://<host>:<port>" (with --port 0 the
// system picks the port). SIGINT or SIGTERM stop accepting requests, wait for the audit writes
// still in flight, then exit.

import http from 'node:http';
import https from 'node:https';
import { readFile, realpath } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createKavach, configFromEnv } from './host.mjs';

/** The module as `make wasm` builds it, relative to this file in the repository. */
export const DEFAULT_WASM = new URL('../../build/kavach.wasm', import.meta.url);

/** The API's body limit (api.Options.MaxBodyBytes default). */
const MAX_BODY = 1 << 20;

/**
 * listener returns a node:http request listener serving kavach. A body over maxBodyBytes is
 * passed on cut at maxBodyBytes+1 bytes, so the module answers the API's own 413, and the rest
 * is drained unread.
 */
export function listener(kavach, { maxBodyBytes = MAX_BODY } = {}) {
  return (req, res) => {
    serveOne(kavach, maxBodyBytes, req, res).catch((e) => {
      // A client that went away mid-request, or a bug: never an unhandled rejection, which
      // would end the process.
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'INTERNAL_ERROR', message: 'the request could not be served' } }));
      } else {
        res.destroy();
      }
      if (e?.code !== 'ECONNRESET' && e?.code !== 'ERR_STREAM_PREMATURE_CLOSE') kavach.logger.error(`kavach: ${req.method} ${req.url}: ${e?.message ?? e}`);
    });
  };
}

async function serveOne(kavach, maxBodyBytes, req, res) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    if (size > maxBodyBytes) continue;
    chunks.push(chunk);
    size += chunk.length;
  }
  let body = Buffer.concat(chunks);
  if (body.length > maxBodyBytes + 1) body = body.subarray(0, maxBodyBytes + 1);
  const q = req.url.indexOf('?');
  const [path, query] = q < 0 ? [req.url, ''] : [req.url.slice(0, q), req.url.slice(q + 1)];
  const headers = {};
  for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  const remoteIp = (req.socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.)/, ''); // IPv4-mapped IPv6
  const out = await kavach.handleInput({ method: req.method, path, query, headers, remoteIp }, body);
  const flat = [];
  for (const [name, value] of out.headers) flat.push(name, value);
  const empty = out.status === 204 || out.status === 304 || req.method === 'HEAD';
  if (!empty) flat.push('Content-Length', String(out.body.length));
  res.writeHead(out.status, flat);
  res.end(empty ? undefined : out.body);
}

const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };
const DB_TIMEOUT_MS = 30_000;

/**
 * nodeFetch is a fetch over node:http with keep-alive connections, for @libsql/client's HTTP
 * requests to Turso or sqld. Node 20's built-in fetch took 2.7 ms per batch against a sqld on
 * loopback where this takes 1.6 ms. A request that gets no answer within 30 seconds fails (the
 * database is then unavailable to the operation) instead of hanging it.
 */
export async function nodeFetch(input, init) {
  const req = input instanceof Request ? input : new Request(input, init);
  const body = req.body ? Buffer.from(await req.arrayBuffer()) : undefined;
  const url = new URL(req.url);
  const headers = Object.fromEntries(req.headers);
  if (body) headers['content-length'] = String(body.length);
  return new Promise((resolve, reject) => {
    const r = (url.protocol === 'https:' ? https : http).request(url, { method: req.method, headers, agent: agents[url.protocol] }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) for (const x of [v].flat()) h.append(k, x);
        const empty = res.statusCode === 204 || res.statusCode === 304 || req.method === 'HEAD';
        resolve(new Response(empty ? null : Buffer.concat(chunks), { status: res.statusCode, statusText: res.statusMessage, headers: h }));
      });
    });
    r.setTimeout(DB_TIMEOUT_MS, () => r.destroy(new Error(`no answer from ${url.host} within ${DB_TIMEOUT_MS / 1000}s`)));
    r.on('error', reject);
    r.end(body);
  });
}

/**
 * serve starts the HTTP server. Options are createKavach's (wasm defaults to build/kavach.wasm)
 * plus port (default 8787; 0 picks one), host (default 127.0.0.1) and migrate (run the schema
 * migration first). It returns {server, kavach, url, close()}.
 */
export async function serve({ port = 8787, host = '127.0.0.1', migrate = false, wasm, ...options } = {}) {
  const kavach = await createKavach({ fetch: nodeFetch, ...options, wasm: wasm ?? (await readFile(DEFAULT_WASM)) });
  if (migrate) await kavach.migrate();
  const server = http.createServer(listener(kavach));
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  const close = async () => {
    await new Promise((resolve) => server.close(resolve));
    await kavach.close(); // the audit rows still being written
  };
  return { server, kavach, url: `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`, close };
}

async function main() {
  const { values: a } = parseArgs({
    options: {
      url: { type: 'string', default: process.env.KAVACH_DATABASE_URL },
      'auth-token': { type: 'string', default: process.env.KAVACH_DATABASE_AUTH_TOKEN },
      port: { type: 'string', default: '8787' },
      host: { type: 'string', default: '127.0.0.1' },
      wasm: { type: 'string' },
      migrate: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (a.help || !a.url) {
    console.error('usage: node edge/src/node.mjs --url <libsql/http URL> [--auth-token T] [--port 8787] [--host 127.0.0.1] [--wasm build/kavach.wasm] [--migrate]\n' +
      'KAVACH_DATABASE_URL, KAVACH_DATABASE_AUTH_TOKEN, KAVACH_ENVELOPE, KAVACH_BASE_PATH, KAVACH_AGENTS_MAX_PER_USER and KAVACH_AGENTS_TOKEN_EXPIRY are read too.');
    process.exit(a.help ? 0 : 2);
  }
  const s = await serve({
    url: a.url, authToken: a['auth-token'], port: Number(a.port), host: a.host, migrate: a.migrate,
    wasm: a.wasm ? await readFile(a.wasm) : undefined, config: configFromEnv(process.env),
  });
  console.log(`kavach edge listening on ${s.url}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await s.close();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && (await realpath(process.argv[1]).catch(() => '')) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(`kavach: ${e.message}`);
    process.exit(1);
  });
}
