// The JavaScript host of Kavach's WebAssembly module: it drives the step protocol (DESIGN.md,
// "Running everywhere"; the Go reference is api/drive.go) against Turso or sqld through
// @libsql/client, on Node 20+, Cloudflare Workers (workerd), Deno and Bun.
//
//   const kavach = await createKavach({ wasm, url, authToken });
//   const d = await kavach.authorize(agentId, { action: 'read', resource: 'mcp:github:repos' });
//   const res = await kavach.handle(request, { waitUntil: (p) => ctx.waitUntil(p) }); // the REST API
//   export default fetchHandler(wasm); // a whole Worker (src/worker.mjs)
//
// Invariants:
// - One operation = one seed (32 random bytes) and one `now` (Date.now()), the same in every
//   round, so a re-run with more facts repeats the same batches, ids and tokens.
// - Each "need" is one @libsql/client batch (one round trip, one transaction), in "read" mode
//   when the module says the batch only reads. Its outcome, results or classified error, is
//   appended to the facts; a database error is a fact too, never an exception, so the core's
//   fail-closed paths decide what it means.
// - Effects (audit rows) are written after the answer: through waitUntil when given (Workers'
//   ctx.waitUntil), otherwise in the background, tracked until flush(). A failed write is
//   retried; one that still fails is logged with its statements, never dropped silently.
// - Read-your-writes within one host: before a batch that touches a table written by effects
//   still in flight from operations answered earlier, the host waits for those writes. An audit
//   query made right after an authorize sees its row, as with the native server; an authorize,
//   which reads no audit rows, does not wait.

import { createClient } from '@libsql/client/web';
import { KavachModule, KavachTrap, EnvelopeTooLarge, MAX_ENVELOPE_BYTES } from './module.mjs';
import { wireToArg, valueToWire, base64Encode, base64Decode } from './values.mjs';

export { KavachModule, KavachTrap, EnvelopeTooLarge, MAX_ENVELOPE_BYTES };

/** KavachError is an error answered by the core: code is its stable error code. */
export class KavachError extends Error {
  constructor(code, message, status) {
    super(message);
    this.name = 'KavachError';
    this.code = code;
    if (status !== undefined) this.status = status;
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const strictUTF8 = new TextDecoder('utf-8', { fatal: true });

/** Delays between attempts to write effects; after the last, the statements are logged. */
const EFFECT_RETRY_MS = [100, 400, 1600];

/**
 * createKavach loads the module (once: pass the same KavachModule to share it) and connects to
 * the database.
 *
 * @param {object} o
 * @param {WebAssembly.Module|ArrayBuffer|ArrayBufferView|KavachModule} o.wasm the module
 *   (build/kavach.wasm); on Workers the module binding, since Workers cannot compile bytes
 * @param {string} [o.url] libsql://, https://, http:// (sqld) or ws(s):// where WebSocket exists
 * @param {string} [o.authToken]
 * @param {Function} [o.fetch] the fetch the client uses (default the global one; the Node entry
 *   passes nodeFetch)
 * @param {object} [o.client] an @libsql/client Client instead of url; it must be created with
 *   intMode "bigint", or integers beyond 2^53 lose precision and integers read back as REALs
 * @param {object} [o.config] the step config (api.StepConfig): dialect, envelope, basePath,
 *   insecureNoAuth, trustedProxies, agents: {maxPerUser, tokenExpiry, requireExistingOwners}
 * @param {string} [o.apiKey] the admin API key the conveniences (agents.*) send
 * @param {number} [o.maxRounds] database round trips one operation may take (default 1000: an
 *   audit export reads a page per round)
 * @param {(p: Promise<void>) => void} [o.waitUntil] keeps effect writes alive after the answer
 * @param {'auto'|'node'|'shim'} [o.wasi] and {object} [o.env]: see KavachModule.load
 * @param {(e: {op: string, round: number, envelope: string, output: object}) => void} [o.onStep]
 *   sees every step (tests, tracing)
 * @param {{error: Function}} [o.logger] default console
 */
export async function createKavach(o) {
  const module = o.wasm instanceof KavachModule ? o.wasm : await KavachModule.load(o.wasm, { wasi: o.wasi, env: o.env });
  let client = o.client;
  if (!client) {
    if (!o.url) throw new Error('kavach: createKavach needs url (or client)');
    client = createClient({ url: o.url, authToken: o.authToken, intMode: 'bigint', fetch: o.fetch });
  }
  return new Kavach(module, client, o);
}

export class Kavach {
  #pending = new Map(); // effect writes in flight -> the tables they write
  #configJSON;
  #secret;

  constructor(module, client, o = {}) {
    this.module = module;
    this.client = client;
    this.config = o.config ?? {};
    this.apiKey = o.apiKey;
    this.maxRounds = o.maxRounds ?? 1000;
    this.waitUntil = o.waitUntil;
    this.onStep = o.onStep;
    this.logger = o.logger ?? console;
    this.effectRetryMs = o.effectRetryMs ?? EFFECT_RETRY_MS;
    this.#configJSON = JSON.stringify(this.config);
    this.#secret = o.authToken;
    const req = (method, path, body) => this.request(method, path, body);
    const id = (s) => encodeURIComponent(s);
    /** Agents through the REST API, as the admin key (apiKey) or without auth (insecureNoAuth). */
    this.agents = {
      create: (agent) => req('POST', '/agents', agent),
      get: (agentId) => req('GET', `/agents/${id(agentId)}`),
      list: (filters = {}) => req('GET', `/agents${query(filters)}`),
      update: (agentId, patch) => req('PATCH', `/agents/${id(agentId)}`, patch),
      revoke: (agentId) => req('DELETE', `/agents/${id(agentId)}`),
      rotate: (agentId) => req('POST', `/agents/${id(agentId)}/rotate`),
    };
  }

  /**
   * run performs one operation to the end and returns its result; an error answered by the core
   * throws a KavachError. Operations: handle, authorize, authorizeToken, migrate, verify.
   * options.waitUntil overrides the host's for this operation (a Worker's per-request ctx).
   */
  async run(op, input, options) {
    const out = await this.step(op, input, options);
    if (out.status === 'error') throw new KavachError(out.error?.code ?? 'INTERNAL_ERROR', out.error?.message ?? 'the step failed');
    return out.result;
  }

  /**
   * step drives one operation and returns the final output envelope ({status:"done", result,
   * effects} or {status:"error", error}) plus rounds, the database round trips it took. A trap,
   * a malformed output or too many rounds throw.
   */
  async step(op, input, { waitUntil = this.waitUntil } = {}) {
    const seed = new Uint8Array(32);
    crypto.getRandomValues(seed);
    // Every round sends the same head; facts are appended as JSON text, so a long operation (an
    // audit export) does not re-serialize its earlier facts each round.
    const head = `{"op":${JSON.stringify(op)},"now":${Date.now()},"seed":"${base64Encode(seed)}","config":${this.#configJSON},"input":${JSON.stringify(input ?? null)},"facts":[`;
    let facts = '';
    const earlier = [...this.#pending]; // effects of the operations answered before this one
    for (let round = 0; ; round++) {
      const envelope = head + facts + ']}';
      const out = parseOutput(this.module.callText(envelope));
      this.onStep?.({ op, round, envelope, output: out });
      switch (out.status) {
        case 'need': {
          if (round >= this.maxRounds) throw new Error(`kavach: operation ${op} needed more than ${this.maxRounds} rounds`);
          if (earlier.length) await this.#effectsBefore(earlier, out.stmts);
          const fact = await this.#execute(out);
          facts += (round ? ',' : '') + JSON.stringify(fact);
          continue;
        }
        case 'done':
          if (out.effects?.length) this.#writeEffects(out.effects, waitUntil);
          out.rounds = round;
          return out;
        case 'error':
          out.rounds = round;
          return out;
        default:
          throw new Error(`kavach: the module answered an unknown status ${JSON.stringify(out.status)}`);
      }
    }
  }

  /** authorize decides for an agent by id: request is {action, resource, arguments, ip, userAgent}. */
  authorize(agentId, request, options) {
    return this.run('authorize', { ...request, agentId }, options);
  }

  /** authorizeToken decides for the agent holding token. */
  authorizeToken(token, request, options) {
    return this.run('authorizeToken', { ...request, token }, options);
  }

  /** migrate creates or upgrades the schema (safe to run again and concurrently). */
  migrate() {
    return this.run('migrate', null);
  }

  /** verify checks that every table and column exists; throws KavachError SCHEMA_INVALID if not. */
  verify() {
    return this.run('verify', null);
  }

  /**
   * request sends one REST call through the module (with apiKey as the bearer unless headers
   * say otherwise) and returns the decoded JSON, unwrapped from {"data"} when that envelope is
   * configured. An error status throws a KavachError with the API's code.
   */
  async request(method, path, body, headers = {}) {
    const h = { 'user-agent': 'kavach-edge', ...lowerCase(headers) };
    if (this.apiKey && !h.authorization) h.authorization = `Bearer ${this.apiKey}`;
    const [p, q = ''] = splitOnce(path, '?');
    const input = { method, path: p, query: q, headers: h, body: '', remoteIp: '' };
    if (body !== undefined) {
      input.body = JSON.stringify(body);
      h['content-type'] = 'application/json';
    }
    const res = await this.run('handle', input);
    const text = res.bodyBase64 ? decoder.decode(base64Decode(res.bodyBase64)) : res.body ?? '';
    const value = text ? JSON.parse(text) : undefined;
    if (res.status >= 400) {
      throw new KavachError(value?.error?.code ?? `HTTP_${res.status}`, value?.error?.message ?? text, res.status);
    }
    if (this.config.envelope === 'data' && value && typeof value === 'object' && 'data' in value) return value.data;
    return value;
  }

  /**
   * handle answers a fetch Request with the full REST API from the module. remoteIp is the
   * client's address (on Workers, the CF-Connecting-IP header). A failure of the host itself (a
   * trap, too many rounds) is a JSON 503, never a thrown error or a hung request.
   */
  async handle(request, { remoteIp = '', waitUntil } = {}) {
    const url = new URL(request.url);
    const headers = {};
    for (const [name, value] of request.headers) headers[name] = value; // names come lower-case
    const body = new Uint8Array(await request.arrayBuffer());
    const res = await this.handleInput({ method: request.method, path: url.pathname, query: url.search.slice(1), headers, remoteIp }, body, { waitUntil });
    const out = new Headers();
    for (const [name, value] of res.headers) out.append(name, value);
    const empty = res.status === 204 || res.status === 304 || request.method === 'HEAD';
    return new Response(empty ? null : res.body, { status: res.status, headers: out });
  }

  /**
   * handleInput runs the handle operation for a request already read (the Node entry uses it):
   * body is bytes. It returns {status, headers: [[name, value]...], body: Uint8Array}.
   */
  async handleInput(req, body, options) {
    const input = { ...req, body: '' };
    if (body.length) {
      try {
        input.body = strictUTF8.decode(body);
      } catch {
        input.bodyBase64 = base64Encode(body);
      }
    }
    let res;
    try {
      res = await this.run('handle', input, options);
    } catch (e) {
      if (e instanceof EnvelopeTooLarge) {
        // The API refuses bodies over its limit (1 MiB by default) itself; this one was too
        // large even to hand to the module.
        const error = { code: 'PAYLOAD_TOO_LARGE', message: 'the request is too large' };
        return { status: 413, headers: [['Content-Type', 'application/json']], body: encoder.encode(JSON.stringify({ error })) };
      }
      this.logger.error(`kavach: ${req.method} ${req.path}: ${e.message}`);
      const error = { code: e instanceof KavachError ? e.code : 'STORAGE_UNAVAILABLE', message: e.message };
      return { status: 503, headers: [['Content-Type', 'application/json']], body: encoder.encode(JSON.stringify({ error })) };
    }
    return { status: res.status, headers: res.headers ?? [], body: res.bodyBase64 ? base64Decode(res.bodyBase64) : encoder.encode(res.body ?? '') };
  }

  /** flush waits until every effect write started so far has finished (or been logged as failed). */
  async flush() {
    while (this.#pending.size) await Promise.all(this.#pending.keys());
  }

  /** close flushes the effects and closes the database client. */
  async close() {
    await this.flush();
    this.client.close();
  }

  // #execute runs a needed batch and returns its fact.
  async #execute(out) {
    try {
      const stmts = out.stmts.map(toStmt);
      const results = await this.client.batch(stmts, out.readOnly ? 'read' : 'write');
      return { key: out.key, results: results.map(resultToWire) };
    } catch (e) {
      return { key: out.key, error: { kind: classify(e), message: this.#redact(e), index: e?.statementIndex ?? 0 } };
    }
  }

  // #effectsBefore waits for the earlier effect writes that touch a table the batch names, and
  // removes them from earlier (each is awaited at most once per operation).
  async #effectsBefore(earlier, stmts) {
    const waits = [];
    for (let i = earlier.length - 1; i >= 0; i--) {
      const [p, tables] = earlier[i];
      if (tables.some((t) => t === null || stmts.some((s) => t.test(s.sql)))) {
        waits.push(p);
        earlier.splice(i, 1);
      }
    }
    if (waits.length) await Promise.all(waits);
  }

  // #writeEffects writes effects in the background. The promise never rejects: a failure is
  // retried, then logged.
  #writeEffects(effects, waitUntil) {
    const p = this.#writeWithRetries(effects.map(toStmt), effects).finally(() => this.#pending.delete(p));
    this.#pending.set(p, effects.map((e) => writtenTable(e.sql)));
    waitUntil?.(p);
  }

  async #writeWithRetries(stmts, wire) {
    let unknownOutcome = false; // an earlier attempt may have committed
    for (let attempt = 0; ; attempt++) {
      let kind, err;
      try {
        await this.client.batch(stmts, 'write');
        return;
      } catch (e) {
        err = e;
        kind = classify(e);
      }
      // The batch is one transaction and its rows have unique ids: a duplicate after an attempt
      // that failed in transit means that attempt committed. (The module's audit rows are
      // inserted OR IGNORE, so repeating them is a no-op anyway.)
      if (unknownOutcome && kind === 'unique') return;
      if (kind === 'unavailable') unknownOutcome = true;
      if (kind !== 'unavailable' || attempt >= this.effectRetryMs.length) {
        this.logger.error(`kavach: writing ${stmts.length} effect statement(s) failed after ${attempt + 1} attempt(s): ${this.#redact(err)}; ` +
          `the statements, to replay: ${JSON.stringify(wire)}`);
        return;
      }
      await new Promise((r) => setTimeout(r, this.effectRetryMs[attempt]));
    }
  }

  #redact(e) {
    let msg = String(e?.message ?? e).replace(/\s+/g, ' ');
    if (this.#secret) msg = msg.split(this.#secret).join('xxxxx');
    return msg;
  }
}

/**
 * fetchHandler returns a Worker's default export serving the REST API from the module. The
 * host is made once per isolate, on the first request (env is known only then): the database
 * comes from env.KAVACH_DATABASE_URL and env.KAVACH_DATABASE_AUTH_TOKEN, the config from
 * KAVACH_ENVELOPE, KAVACH_BASE_PATH, KAVACH_AGENTS_MAX_PER_USER and KAVACH_AGENTS_TOKEN_EXPIRY
 * (the names the Go server reads).
 */
export function fetchHandler(wasm, options = {}) {
  let host = null;
  return {
    async fetch(request, env, ctx) {
      host ??= createKavach({ wasi: 'shim', ...options, wasm, url: env.KAVACH_DATABASE_URL, authToken: env.KAVACH_DATABASE_AUTH_TOKEN, config: { ...configFromEnv(env), ...options.config } });
      let k;
      try {
        k = await host;
      } catch (e) {
        host = null; // the next request tries again
        console.error(`kavach: starting: ${e.message}`);
        return Response.json({ error: { code: 'STORAGE_UNAVAILABLE', message: 'kavach could not start; see the logs' } }, { status: 503 });
      }
      return k.handle(request, { remoteIp: request.headers.get('cf-connecting-ip') ?? '', waitUntil: (p) => ctx.waitUntil(p) });
    },
  };
}

/** configFromEnv reads the step config from KAVACH_* variables. */
export function configFromEnv(env) {
  const config = { agents: {} };
  if (env.KAVACH_ENVELOPE) config.envelope = env.KAVACH_ENVELOPE;
  if (env.KAVACH_BASE_PATH) config.basePath = env.KAVACH_BASE_PATH;
  if (env.KAVACH_AGENTS_MAX_PER_USER) config.agents.maxPerUser = Number(env.KAVACH_AGENTS_MAX_PER_USER);
  if (env.KAVACH_AGENTS_TOKEN_EXPIRY) config.agents.tokenExpiry = env.KAVACH_AGENTS_TOKEN_EXPIRY;
  return config;
}

function parseOutput(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`kavach: the module answered a malformed envelope: ${e.message}`);
  }
}

function toStmt(s) {
  return { sql: s.sql, args: (s.args ?? []).map(wireToArg) };
}

// resultToWire converts a ResultSet to a fact result (api.FactResult). Like the Go hosts, it
// omits zero rowsAffected, and columns and rows for statements that return no columns.
function resultToWire(rs) {
  const r = {};
  if (rs.rowsAffected) r.rowsAffected = rs.rowsAffected;
  const n = rs.columns.length;
  if (n) {
    r.columns = rs.columns;
    r.rows = rs.rows.map((row) => {
      const out = new Array(n);
      for (let i = 0; i < n; i++) out[i] = valueToWire(row[i]);
      return out;
    });
  }
  return r;
}

// classify maps an @libsql/client error to a fact error kind, as the Go libSQL backend does:
// constraint violations by their SQLite message, anything that is not an SQL error (transport,
// server, auth, busy) as unavailable.
function classify(e) {
  const msg = String(e?.message ?? '');
  const code = String(e?.code ?? '');
  if (/UNIQUE constraint failed|PRIMARY KEY constraint failed/.test(msg)) return 'unique';
  if (/FOREIGN KEY constraint failed/.test(msg)) return 'foreignKey';
  if (/constraint failed/.test(msg) || code.startsWith('SQLITE_CONSTRAINT')) return 'constraint';
  if (/^SQLITE_(BUSY|LOCKED)/.test(code) || /database is locked/.test(msg)) return 'unavailable';
  if (code.startsWith('SQLITE_') || code === 'SQL_PARSE_ERROR' || code === 'SQL_INPUT_ERROR') return 'other';
  return 'unavailable';
}

// writtenTable matches the name of the table a write statement writes, or is null when it
// cannot tell (then every later batch waits for the write).
function writtenTable(sql) {
  const m = /^\s*(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+["`]?(\w+)/i.exec(sql);
  return m ? new RegExp(`\\b${m[1]}\\b`, 'i') : null;
}

function splitOnce(s, sep) {
  const i = s.indexOf(sep);
  return i < 0 ? [s] : [s.slice(0, i), s.slice(i + 1)];
}

function query(filters) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v !== undefined && v !== null) q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

function lowerCase(headers) {
  const out = {};
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = v;
  return out;
}
