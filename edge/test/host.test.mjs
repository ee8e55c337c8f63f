// The host against a real sqld (KAVACH_TEST_SQLD_URL, a fresh database started by edge_test.go)
// and the real module (KAVACH_TEST_WASM). Where a test needs the database to fail or stall, the
// real client is wrapped and the fault injected around it; the statements still run on sqld.
//
// The tests in this file run in order and share the database: the first ones create the schema.
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createClient } from '@libsql/client/web';
import { createKavach, KavachModule, KavachError, KavachTrap, EnvelopeTooLarge, MAX_ENVELOPE_BYTES } from '../src/host.mjs';
import { trappingModule } from './trapping-module.mjs';

const url = process.env.KAVACH_TEST_SQLD_URL;
const skip = !url && 'KAVACH_TEST_SQLD_URL is not set (edge_test.go starts a sqld and sets it)';
const wasmPath = process.env.KAVACH_TEST_WASM ?? new URL('../../build/kavach.wasm', import.meta.url).pathname;
const module = skip ? null : await KavachModule.load(readFileSync(wasmPath), { wasi: 'shim', stderr: () => {} }); // the trap test's report is noise
const client = skip ? null : createClient({ url, intMode: 'bigint' });

const isEffect = (stmts) => stmts.every((s) => /^INSERT (OR IGNORE )?INTO kavach_audit_(logs|heads)/.test(s.sql));
const auditCount = async (id) => Number((await client.execute({ sql: 'SELECT COUNT(*) FROM kavach_audit_logs WHERE id = ?', args: [id] })).rows[0][0]);

// host makes a host on the shared module and database; batch, when given, wraps each batch:
// batch(stmts, mode, run) where run() executes it on sqld.
function host({ batch, ...o } = {}) {
  const c = batch ? { batch: (stmts, mode) => batch(stmts, mode, () => client.batch(stmts, mode)), close() {} } : client;
  return createKavach({ wasm: module, client: c, config: { insecureNoAuth: true }, ...o });
}

let agent;

test('verify fails on an empty database, migrate creates the schema and is idempotent', { skip }, async () => {
  const k = await host();
  await assert.rejects(k.verify(), (e) => e instanceof KavachError && e.code === 'SCHEMA_INVALID');
  assert.deepEqual(await k.migrate(), { ok: true });
  assert.deepEqual(await k.migrate(), { ok: true });
  assert.deepEqual(await k.verify(), { ok: true });
});

test('agents and authorize: a cold decision takes at most 2 database round trips', { skip }, async () => {
  const rounds = {};
  const k = await host({ onStep: ({ op, round }) => (rounds[op] = round) });
  agent = await k.agents.create({ ownerId: 'u1', name: 'edge', type: 'autonomous', permissions: [{ resource: 'mcp:github:*', actions: ['read'] }] });
  assert.match(agent.token, /^kv_/);
  assert.equal((await k.agents.get(agent.id)).name, 'edge');
  assert.deepEqual((await k.agents.list({ userId: 'u1' })).map((a) => a.id), [agent.id]);
  assert.equal((await k.agents.update(agent.id, { name: 'edge2' })).name, 'edge2');

  const allow = await k.authorize(agent.id, { action: 'read', resource: 'mcp:github:repos' });
  assert.equal(allow.allowed, true);
  assert.ok(rounds.authorize <= 2, `authorize took ${rounds.authorize} round trips`);
  const deny = await k.authorizeToken(agent.token, { action: 'write', resource: 'mcp:github:repos' });
  assert.equal(deny.allowed, false);
  assert.equal(deny.code, 'NO_MATCHING_PERMISSION');
  assert.ok(rounds.authorizeToken <= 2, `authorizeToken took ${rounds.authorizeToken} round trips`);
  await k.flush();
  assert.equal(await auditCount(allow.auditId), 1);
  assert.equal(await auditCount(deny.auditId), 1);

  const rotated = await k.agents.rotate(agent.id);
  assert.notEqual(rotated.token, agent.token);
  agent.token = rotated.token;
  await assert.rejects(k.agents.get('00000000-0000-7000-8000-000000000000'), (e) => e.code === 'NOT_FOUND' && e.status === 404);
  await assert.rejects(k.run('nope', {}), (e) => e instanceof KavachError && e.code === 'VALIDATION_FAILED');
});

test('effects are written after the answer, and a later operation reads them', { skip }, async () => {
  let open;
  const gate = new Promise((r) => (open = r));
  const effects = [];
  const kept = [];
  const k = await host({
    batch: async (stmts, mode, run) => {
      if (isEffect(stmts)) {
        effects.push(stmts);
        await gate; // the write cannot finish before the gate opens
      }
      return run();
    },
    waitUntil: (p) => kept.push(p),
  });
  const d = await k.authorize(agent.id, { action: 'read', resource: 'mcp:github:x' });
  // The answer came back while its audit row was still being written.
  assert.equal(effects.length, 1);
  assert.equal(kept.length, 1, 'the write was handed to waitUntil');
  assert.equal(await auditCount(d.auditId), 0);
  // Another decision does not wait for it: authorize reads no audit rows.
  const d2 = await k.authorize(agent.id, { action: 'read', resource: 'mcp:github:y' });
  assert.equal(d2.allowed, true);
  assert.equal(effects.length, 2);
  // An audit query started now waits for those writes before it reads.
  let answered = false;
  const audit = k.request('GET', `/audit?agentId=${agent.id}&limit=100`).then((rows) => ((answered = true), rows));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(answered, false, 'the query must not read before the earlier effect is written');
  open();
  const rows = await audit;
  assert.ok(rows.some((r) => r.id === d.auditId) && rows.some((r) => r.id === d2.auditId), 'the audit query sees the decisions just answered');
  await Promise.all(kept);
  assert.equal(kept.length, 2);
  assert.equal(await auditCount(d.auditId), 1);
});

test('effect writes are retried, an ambiguous failure is not written twice, a lasting one is logged', { skip }, async () => {
  const logged = [];
  const logger = { error: (m) => logged.push(m) };
  let failures = 0;
  // Fails twice in transit, as a dropped connection would, then lets the write through.
  const flaky = await host({
    logger, effectRetryMs: [1, 1, 1],
    batch: async (stmts, mode, run) => {
      if (isEffect(stmts) && failures < 2) {
        failures++;
        throw new TypeError('fetch failed');
      }
      return run();
    },
  });
  const d1 = await flaky.authorize(agent.id, { action: 'read', resource: 'mcp:github:a' });
  await flaky.flush();
  assert.equal(failures, 2);
  assert.equal(await auditCount(d1.auditId), 1);

  // Commits, then loses the answer: the retry is a no-op (the row is inserted OR IGNORE, and the
  // chain head moves only if it was), so the entry is written once.
  const outcomes = [];
  const lossy = await host({
    logger, effectRetryMs: [1, 1, 1],
    batch: async (stmts, mode, run) => {
      if (!isEffect(stmts)) return run();
      try {
        await run();
      } catch (e) {
        outcomes.push(e.message);
        throw e;
      }
      outcomes.push('committed');
      if (outcomes.length === 1) throw new TypeError('fetch failed: the response was lost');
    },
  });
  const d2 = await lossy.authorize(agent.id, { action: 'read', resource: 'mcp:github:b' });
  await lossy.flush();
  assert.deepEqual(outcomes, ['committed', 'committed'], 'one retry');
  assert.equal(await auditCount(d2.auditId), 1);
  const head = await client.execute({ sql: 'SELECT last_id FROM kavach_audit_heads WHERE agent_id = ?', args: [agent.id] });
  assert.equal(head.rows[0][0], d2.auditId, 'the chain head is the entry, once');
  assert.deepEqual(logged, []);

  // Never succeeds: the decision is still answered, and the statements are logged for replay.
  let attempts = 0;
  const down = await host({
    logger, effectRetryMs: [1, 1, 1],
    batch: async (stmts, mode, run) => {
      if (isEffect(stmts)) {
        attempts++;
        throw new TypeError('fetch failed');
      }
      return run();
    },
  });
  const d3 = await down.authorize(agent.id, { action: 'read', resource: 'mcp:github:c' });
  assert.equal(d3.allowed, true);
  await down.flush();
  assert.equal(attempts, 4, 'the first attempt and three retries');
  assert.equal(logged.length, 1);
  assert.match(logged[0], /failed after 4 attempt/);
  assert.ok(logged[0].includes(d3.auditId), 'the log holds the statements, to replay');
  assert.equal(await auditCount(d3.auditId), 0);
});

test('a database failure during a need is a fact, and the core fails closed', { skip }, async () => {
  const k = await host({ batch: async () => { throw new TypeError('fetch failed'); } });
  const d = await k.authorize(agent.id, { action: 'read', resource: 'mcp:github:repos' });
  assert.equal(d.allowed, false);
  assert.equal(d.code, 'STORAGE_ERROR');
  const r = await k.handle(new Request('http://edge.test/agents'));
  assert.equal(r.status, 503);
  assert.equal((await r.json()).error.code, 'STORAGE_UNAVAILABLE');
});

test('handle: a fetch Request in, the API\'s Response out', { skip }, async () => {
  const k = await createKavach({ wasm: module, client });
  let r = await k.handle(new Request('http://edge.test/health'));
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'application/json');
  assert.deepEqual(await r.json(), { status: 'ok' });
  r = await k.handle(new Request('http://edge.test/agents'));
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), 'Bearer realm="kavach"');
  // A body that is not UTF-8 travels as bodyBase64 and is refused by the API, not the host.
  r = await k.handle(new Request('http://edge.test/authorize', { method: 'POST', body: new Uint8Array([0xff, 0xfe, 0x7b]), headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'application/json' } }));
  assert.equal(r.status, 400);
  r = await k.handle(new Request('http://edge.test/authorize', { method: 'POST', body: JSON.stringify({ action: 'read', resource: 'mcp:github:z' }), headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'application/json' } }));
  assert.equal(r.status, 200);
  assert.equal((await r.json()).allowed, true);
  r = await k.handle(new Request(`http://edge.test/agents/${agent.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${agent.token}` } }));
  assert.equal(r.status, 403);
  // A body too large even to hand to the module is a 413 from the host.
  r = await k.handle(new Request('http://edge.test/authorize', { method: 'POST', body: new Uint8Array(MAX_ENVELOPE_BYTES + 1).fill(0x20), headers: { authorization: `Bearer ${agent.token}` } }));
  assert.equal(r.status, 413);
  assert.equal((await r.json()).error.code, 'PAYLOAD_TOO_LARGE');
  await k.flush();
});

test('host failures are a JSON 503, never a throw or a hang; the module recovers from a trap', { skip }, async () => {
  const logged = [];
  const k = await host({ maxRounds: 0, logger: { error: (m) => logged.push(m) } });
  const r = await k.handle(new Request('http://edge.test/agents'));
  assert.equal(r.status, 503);
  assert.match((await r.json()).error.message, /more than 0 rounds/);
  assert.equal(logged.length, 1);
  // An envelope over the limit is refused before it reaches the shared instance.
  const before = module.instances;
  assert.throws(() => module.call(new Uint8Array(2 ** 32 - 1)), EnvelopeTooLarge);
  const ok = await host();
  assert.equal((await ok.authorize(agent.id, { action: 'read', resource: 'mcp:github:repos' })).allowed, true);
  assert.equal(module.instances, before, 'the instance survived');
  await ok.flush();
  // A module that traps: each request is a JSON 503, and each trap costs only its instance.
  const trapping = await KavachModule.load(trappingModule(0), { wasi: 'shim' });
  const tk = await createKavach({ wasm: trapping, client, logger: { error: (m) => logged.push(m) } });
  for (let i = 1; i <= 2; i++) {
    const t = await tk.handle(new Request('http://edge.test/health'));
    assert.equal(t.status, 503);
    assert.match((await t.json()).error.message, /module instance failed/);
    assert.equal(trapping.instances, i);
  }
  await assert.rejects(tk.authorize(agent.id, { action: 'read', resource: 'mcp:github:repos' }), KavachTrap);
});

test('one module instance serves many interleaved operations', { skip }, async () => {
  const k = await host();
  const n = 64;
  const ds = await Promise.all(Array.from({ length: n }, (_, i) =>
    k.authorize(agent.id, { action: i % 2 ? 'write' : 'read', resource: `mcp:github:r${i}` })));
  ds.forEach((d, i) => assert.equal(d.allowed, i % 2 === 0, `decision ${i}`));
  assert.equal(new Set(ds.map((d) => d.auditId)).size, n, 'every decision has its own audit id');
  await k.flush();
  const rows = await client.execute(`SELECT COUNT(*) FROM kavach_audit_logs WHERE id IN (${ds.map((d) => `'${d.auditId}'`).join(',')})`);
  assert.equal(Number(rows.rows[0][0]), n);
});

test('the Node entry: HTTP in and out, the API\'s own 413 for a large body, a graceful close', { skip }, async () => {
  const { serve } = await import('../src/node.mjs');
  const s = await serve({ url, wasm: module, port: 0, config: { insecureNoAuth: true } });
  try {
    let r = await fetch(`${s.url}/health`);
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { status: 'ok' });
    r = await fetch(`${s.url}/agents?userId=u1&x=a?b`);
    assert.equal(r.status, 200);
    assert.ok((await r.json()).some((a) => a.id === agent.id));
    r = await fetch(`${s.url}/agents`, { method: 'POST', body: 'x'.repeat((1 << 20) + 100), headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 413);
    assert.equal((await r.json()).error.code, 'PAYLOAD_TOO_LARGE');
    r = await fetch(`${s.url}/authorize`, { method: 'POST', body: JSON.stringify({ agentId: agent.id, action: 'read', resource: 'mcp:github:n' }), headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 200);
    const d = await r.json();
    assert.equal(d.allowed, true);
    r = await fetch(`${s.url}/agents/${agent.id}`, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(await r.text(), '', 'HEAD has no body');
    await s.close(); // waits for the audit row
    assert.equal(await auditCount(d.auditId), 1);
  } finally {
    await s.close().catch(() => {});
  }
});
