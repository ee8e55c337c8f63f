// The WASI shim and the module wrapper, with the real module (KAVACH_TEST_WASM, built from the
// current sources by edge_test.go; default build/kavach.wasm).
import test from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createWasiShim, WasiExit } from '../src/wasi.mjs';
import { KavachModule, KavachTrap, ABI_VERSION, MAX_ENVELOPE_BYTES, EnvelopeTooLarge } from '../src/module.mjs';
import { trappingModule } from './trapping-module.mjs';

const wasmPath = process.env.KAVACH_TEST_WASM ?? new URL('../../build/kavach.wasm', import.meta.url).pathname;
const compiled = await WebAssembly.compile(readFileSync(wasmPath));
const enc = new TextEncoder();
const dec = new TextDecoder();
const seed = btoa(String.fromCharCode(...new Uint8Array(32).fill(7)));
const verify = enc.encode(JSON.stringify({ op: 'verify', now: 1764068400000, seed }));
const call = (m, s) => JSON.parse(dec.decode(m.call(typeof s === 'string' ? enc.encode(s) : s)));

// A shim over a fresh memory, to call its imports directly.
function shimWithMemory(pages = 4, opts) {
  const shim = createWasiShim(opts);
  const memory = new WebAssembly.Memory({ initial: pages });
  shim.initialize({ exports: { memory, _initialize() {} } });
  return { w: shim.imports, memory };
}

test('the shim provides exactly the imports the module needs', () => {
  const needed = new Set(WebAssembly.Module.imports(compiled).map((i) => `${i.module}.${i.name}`));
  const provided = new Set(Object.keys(createWasiShim().imports).map((n) => `wasi_snapshot_preview1.${n}`));
  assert.deepEqual([...needed].sort(), [...provided].sort());
});

test('shim: random_get fills more than the 64 KiB getRandomValues allows per call', () => {
  const { w, memory } = shimWithMemory(8);
  const len = 200_000;
  assert.equal(w.random_get(1024, len), 0);
  const b = new Uint8Array(memory.buffer, 1024, len);
  // Every 64 KiB chunk got bytes (a chunk left zero would show as a long run of zeros).
  for (let off = 0; off < len; off += 65536) assert.ok(b.subarray(off, off + 4096).some((x) => x !== 0), `chunk at ${off}`);
  assert.equal(new Uint8Array(memory.buffer, 0, 1024).every((x) => x === 0), true, 'nothing before the buffer');
  assert.equal(new Uint8Array(memory.buffer, 1024 + len, 1024).every((x) => x === 0), true, 'nothing after it');
});

test('shim: clocks, stdio, preopens and proc_exit', () => {
  const out = [];
  const { w, memory } = shimWithMemory(1, { stdout: (s) => out.push(['out', s]), stderr: (s) => out.push(['err', s]) });
  const v = new DataView(memory.buffer);
  assert.equal(w.clock_time_get(0, 0n, 8), 0);
  const wall = Number(v.getBigUint64(8, true) / 1000000n);
  assert.ok(Math.abs(wall - Date.now()) < 1000, 'realtime is the wall clock in ns');
  assert.equal(w.clock_time_get(1, 0n, 16), 0);
  const m1 = v.getBigUint64(16, true);
  assert.equal(w.clock_time_get(1, 0n, 16), 0);
  assert.ok(v.getBigUint64(16, true) >= m1, 'monotonic');
  assert.equal(w.clock_time_get(99, 0n, 16), 28, 'EINVAL for an unknown clock');

  // fd_write gathers iovecs and prints whole lines only.
  const text = enc.encode('fatal error: out');
  new Uint8Array(memory.buffer).set(text, 100);
  new Uint8Array(memory.buffer).set(enc.encode(' of memory\nnext'), 200);
  v.setUint32(300, 100, true), v.setUint32(304, text.length, true);
  v.setUint32(308, 200, true), v.setUint32(312, 15, true);
  assert.equal(w.fd_write(2, 300, 2, 400), 0);
  assert.equal(v.getUint32(400, true), text.length + 15);
  assert.deepEqual(out, [['err', 'fatal error: out of memory']]);
  assert.equal(w.fd_write(9, 300, 2, 400), 8, 'EBADF');

  assert.equal(w.fd_prestat_get(3, 500), 8, 'no preopened directories');
  assert.equal(w.fd_fdstat_get(1, 500), 0);
  assert.equal(v.getUint8(500), 2, 'stdout is a character device');
  assert.equal(w.args_sizes_get(600, 604), 0);
  assert.equal(v.getUint32(600, true), 0);

  // poll_oneoff reports every subscription as due at once: a synchronous host cannot sleep.
  v.setBigUint64(700, 0xfeedn, true); // userdata
  v.setUint8(708, 0); // tag: clock
  assert.equal(w.poll_oneoff(700, 800, 1, 900), 0);
  assert.equal(v.getBigUint64(800, true), 0xfeedn);
  assert.equal(v.getUint16(808, true), 0);
  assert.equal(v.getUint8(810), 0);
  assert.equal(v.getUint32(900, true), 1);

  // The environment, as "KEY=VALUE\0" strings with a pointer to each.
  const { w: we, memory: em } = shimWithMemory(1, { env: { GOGC: '400', A: 'ü' } });
  const ev = new DataView(em.buffer);
  assert.equal(we.environ_sizes_get(0, 4), 0);
  assert.equal(ev.getUint32(0, true), 2);
  assert.equal(ev.getUint32(4, true), 'GOGC=400\0A=ü\0'.length + 1, 'sizes count bytes, not characters');
  assert.equal(we.environ_get(8, 100), 0);
  const at = (i) => ev.getUint32(8 + 4 * i, true);
  assert.equal(dec.decode(new Uint8Array(em.buffer, at(0), 9)), 'GOGC=400\0');
  assert.equal(dec.decode(new Uint8Array(em.buffer, at(1), 5)), 'A=ü\0');

  assert.throws(() => w.proc_exit(2), (e) => e instanceof WasiExit && e.code === 2);
  assert.deepEqual(out.at(-1), ['err', 'next'], 'proc_exit flushes a partial line');
});

for (const wasi of ['node', 'shim']) {
  test(`${wasi}: the module answers, and malformed envelopes are error results, not throws`, async () => {
    const m = await KavachModule.load(compiled, { wasi });
    assert.equal(m.compileMs, 0, 'a compiled module is not compiled again');
    const ok = call(m, verify);
    assert.equal(ok.status, 'need');
    assert.ok(ok.stmts.length > 0 && ok.readOnly === true);
    for (const bad of ['', 'garbage', '{"op":', '{"op":"verify"}', '{"op":"verify","now":1,"seed":"AAAA"}',
      '[1,2]', '{"op":"verify","now":1,"seed":"' + seed + '"} trailing', '{"op":"nope","now":1,"seed":"' + seed + '"}',
      '{"op":"handle","input":{"method":1},"now":1,"seed":"' + seed + '"}', new Uint8Array([0x7b, 0xff, 0xfe, 0x00])]) {
      const out = call(m, bad);
      assert.equal(out.status, 'error', `envelope ${JSON.stringify(typeof bad === 'string' ? bad : [...bad])}`);
      assert.ok(out.error.code && out.error.message, JSON.stringify(out));
    }
    // callText (strings straight into and out of memory) answers exactly what call does, also
    // when the envelope is not ASCII and the first, exact-size buffer is too small.
    for (const path of ['/health', '/h\u00e9alth/\u{1F642}', '/\u0000']) {
      const env = JSON.stringify({ op: 'handle', now: 1764068400000, seed, input: { method: 'GET', path, headers: { 'x-note': 'ünï 🙂' } } });
      const text = m.callText(env);
      assert.equal(text, dec.decode(m.call(enc.encode(env))));
      assert.notEqual(JSON.parse(text).status, 'error', text);
    }
    assert.equal(m.instances, 1, 'no error needed a new instance');
    assert.equal(call(m, verify).key, ok.key, 'the same envelope gives the same answer');
  });

  test(`${wasi}: an envelope over the limit is refused before the module, which is unharmed`, async () => {
    const m = await KavachModule.load(compiled, { wasi });
    const before = call(m, verify);
    // The JS buffers are never written, so they cost no real memory.
    for (const size of [MAX_ENVELOPE_BYTES + 1, 2 ** 32 - 1]) {
      assert.throws(() => m.call(new Uint8Array(size)), EnvelopeTooLarge);
    }
    assert.throws(() => m.callText('x'.repeat(MAX_ENVELOPE_BYTES + 1)), EnvelopeTooLarge);
    // Under the limit in UTF-16 units, over it in UTF-8 bytes: found while encoding.
    assert.throws(() => m.callText('\u00e9'.repeat(MAX_ENVELOPE_BYTES / 2 + 1)), EnvelopeTooLarge);
    assert.deepEqual(call(m, verify), before);
    assert.equal(m.instances, 1, 'refusing an envelope does not cost the instance');
  });

  test(`${wasi}: a trap discards the instance and the next call gets a fresh one`, async () => {
    // Kavach's module no longer traps on any input it is given (it refuses oversized envelopes
    // and answers malformed ones), so the trap comes from a minimal module with the same ABI
    // whose kavach_call executes \`unreachable\` for envelopes of 13 bytes or more.
    const m = await KavachModule.load(trappingModule(13), { wasi });
    assert.equal(m.call(enc.encode('fine')).length, 0);
    const t0 = performance.now();
    assert.throws(() => m.call(enc.encode('thirteen byte')), (e) => e instanceof KavachTrap && e.cause instanceof WebAssembly.RuntimeError);
    assert.ok(performance.now() - t0 < 5000, 'the trap is quick, not a hang');
    assert.equal(m.instances, 1, 'the next instance is made when needed');
    assert.equal(m.call(enc.encode('fine')).length, 0);
    assert.equal(m.instances, 2);
    // Again: recovery is repeatable, and interleaved with ordinary calls.
    assert.throws(() => m.call(enc.encode('thirteen byte')), KavachTrap);
    assert.throws(() => m.callText('thirteen byte'), KavachTrap);
    assert.equal(m.callText('fine'), '');
    assert.equal(m.instances, 4);
  });
}

test('load rejects what is not Kavach\'s module', async () => {
  // A minimal valid module with no kavach_* exports.
  const empty = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
  await assert.rejects(KavachModule.load(empty, { wasi: 'shim' }), /kavach_\* exports|_initialize/);
  await assert.rejects(KavachModule.load(new Uint8Array([1, 2, 3])), WebAssembly.CompileError);
  assert.equal(ABI_VERSION, 1);
});

test('one instance serves interleaved operations (state lives in the host, not the module)', async () => {
  const m = await KavachModule.load(compiled, { wasi: 'shim' });
  // Two operations in flight at once, their steps interleaved: each gets its own answers.
  const a = enc.encode(JSON.stringify({ op: 'verify', now: 1764068400000, seed }));
  const b = enc.encode(JSON.stringify({ op: 'migrate', now: 1764068400000, seed }));
  const soloA = call(m, a);
  const soloB = call(m, b);
  const results = await Promise.all([0, 1, 2, 3, 4, 5].map(async (i) => {
    await new Promise((r) => setTimeout(r, (6 - i) * 2));
    return call(m, i % 2 ? b : a);
  }));
  results.forEach((r, i) => assert.deepEqual(r, i % 2 ? soloB : soloA));
  assert.equal(m.instances, 1);
});
