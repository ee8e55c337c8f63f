// The Kavach WebAssembly module (build/kavach.wasm, `make wasm`) behind one synchronous call:
// envelope bytes in, output envelope bytes out (the step protocol, api/step.go).
//
// Invariants:
// - One instance per isolate or process. Calls are synchronous and the module keeps no state
//   between them, so one instance serves any number of interleaved requests: a request's state
//   (its input and facts) lives in the host's async function, not in the module.
// - memory.buffer is re-read after every call into the module: growing memory detaches it.
// - A call that throws (a WebAssembly.RuntimeError, or WASI proc_exit after a Go fatal error)
//   leaves the instance in an unknown state. It is discarded, the caller gets a KavachTrap, and
//   the next call instantiates a fresh one from the compiled module. A malformed envelope is not
//   a trap: the module answers {"status":"error"}.

import { createWasiShim } from './wasi.mjs';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The ABI and envelope version this host speaks (api.StepABIVersion). */
export const ABI_VERSION = 1;

/** The largest input envelope the module accepts (api.MaxEnvelopeBytes); kavach_alloc refuses more. */
export const MAX_ENVELOPE_BYTES = 64 << 20;

/** EnvelopeTooLarge: the envelope is over MAX_ENVELOPE_BYTES. The instance is unharmed. */
export class EnvelopeTooLarge extends RangeError {
  constructor(size) {
    super(`kavach: the envelope is ${size} bytes; the limit is ${MAX_ENVELOPE_BYTES}`);
    this.name = 'EnvelopeTooLarge';
  }
}

// The Go runtime's environment. Its collector paces itself by GOGC, and the module's live heap is
// small, so at the default (100) it collects every few calls: GOGC=400 made the authorize step
// about 10% cheaper (55 -> 50 µs in Node 20) for a steady-state memory of 22 MiB instead of
// 9 MiB. GOMEMLIMIT keeps a large operation (an audit export) from growing the heap by the same
// factor: the collector works harder instead. Linear memory never shrinks, so this bounds what
// an instance keeps of the 128 MB a Worker isolate has.
const DEFAULT_ENV = { GOGC: '400', GOMEMLIMIT: '64MiB' };

/** KavachTrap reports that the module failed during a call; the instance has been discarded. */
export class KavachTrap extends Error {
  constructor(cause) {
    super(`kavach: the module instance failed: ${describe(cause)}`, { cause });
    this.name = 'KavachTrap';
  }
}

function describe(e) {
  if (typeof e === 'symbol') return 'it exited'; // node:wasi's proc_exit throws a symbol
  return e?.message ?? String(e);
}

export class KavachModule {
  #module;
  #newWasi;
  #inst = null;
  /** How many instances were made (1 + the number of traps recovered from). */
  instances = 0;
  /** Milliseconds the last instantiation took (instantiate + _initialize). */
  instantiateMs = 0;
  /** Milliseconds compiling took in load() (0 when given a compiled module). */
  compileMs = 0;

  /**
   * load compiles (unless given a WebAssembly.Module, as Workers require) and instantiates the
   * module, and checks its ABI version.
   * @param {WebAssembly.Module|ArrayBuffer|ArrayBufferView} wasm
   * @param {{wasi?: 'auto'|'node'|'shim', env?: object, stdout?: (line: string) => void, stderr?: (line: string) => void}} [options]
   *   wasi: node:wasi on Node, the shim elsewhere (auto), or one of them. env: the module's
   *   environment (default GOGC=400, GOMEMLIMIT=64MiB; see DEFAULT_ENV). stdout and stderr
   *   receive the module's output lines (the shim only; default the console). The module
   *   writes nothing but a Go runtime's fatal error report.
   */
  static async load(wasm, { wasi = 'auto', env = DEFAULT_ENV, stdout, stderr } = {}) {
    const t0 = performance.now();
    const module = wasm instanceof WebAssembly.Module ? wasm : await WebAssembly.compile(wasm);
    const compileMs = wasm instanceof WebAssembly.Module ? 0 : performance.now() - t0;
    const m = new KavachModule(module, await wasiFactory(wasi, { env, stdout, stderr }));
    m.compileMs = compileMs;
    const version = m.#instance().abi() >>> 0;
    if (version !== ABI_VERSION) {
      throw new Error(`kavach: the module speaks ABI version ${version}; this host speaks ${ABI_VERSION}`);
    }
    return m;
  }

  /** The current instance's linear memory in bytes (0 before the first instance). */
  get memoryBytes() {
    return this.#inst?.memory.buffer.byteLength ?? 0;
  }

  constructor(module, newWasi) {
    this.#module = module;
    this.#newWasi = newWasi;
  }

  /** call runs one step: it copies envelope (bytes) into the module and returns a copy of the output. */
  call(envelope) {
    if (envelope.length > MAX_ENVELOPE_BYTES) throw new EnvelopeTooLarge(envelope.length);
    return this.#step((inst) => {
      const ptr = inst.alloc(envelope.length) >>> 0;
      new Uint8Array(inst.memory.buffer, ptr, envelope.length).set(envelope);
      return [ptr, envelope.length];
    }, (view) => view.slice());
  }

  /**
   * callText is call for an envelope and output as strings, without intermediate copies: the
   * envelope is encoded straight into the module's memory and the output decoded straight out
   * of it (the authorize step costs a few µs less than with call).
   */
  callText(envelope) {
    // A UTF-16 unit is at least one UTF-8 byte and at most 3.
    if (envelope.length > MAX_ENVELOPE_BYTES) throw new EnvelopeTooLarge(envelope.length);
    let tooLarge = false;
    const out = this.#step((inst) => {
      // Try the exact size first: JSON envelopes are usually ASCII.
      for (const size of [envelope.length, Math.min(envelope.length * 3, MAX_ENVELOPE_BYTES)]) {
        const ptr = inst.alloc(size) >>> 0;
        const { read, written } = encoder.encodeInto(envelope, new Uint8Array(inst.memory.buffer, ptr, size));
        if (read === envelope.length) return [ptr, written];
        inst.free(ptr);
      }
      tooLarge = true;
      return null;
    }, (view) => decoder.decode(view));
    if (tooLarge) throw new EnvelopeTooLarge(encoder.encode(envelope).length);
    return out;
  }

  // #step writes an envelope with put (which returns its pointer and length, or null to call
  // nothing), runs the step and reads the output with take before freeing both buffers.
  #step(put, take) {
    const inst = this.#instance();
    try {
      const buf = put(inst);
      if (buf === null) return null; // put freed what it allocated
      const [ptr, len] = buf;
      const packed = BigInt.asUintN(64, inst.call(ptr, len)); // an i64 result arrives as a BigInt
      const outPtr = Number(packed >> 32n);
      const outLen = Number(packed & 0xffffffffn);
      const mem = inst.memory.buffer; // re-read: the call may have grown memory
      if (outPtr + outLen > mem.byteLength) throw new RangeError('the module returned an output outside its memory');
      const out = take(new Uint8Array(mem, outPtr, outLen));
      inst.free(ptr);
      inst.free(outPtr);
      return out;
    } catch (e) {
      this.#inst = null;
      throw new KavachTrap(e);
    }
  }

  #instance() {
    if (this.#inst) return this.#inst;
    const t0 = performance.now();
    const wasi = this.#newWasi();
    let instance;
    try {
      // Synchronous, so recovery after a trap happens inside call(). Workers allow it for a
      // module that is already compiled.
      instance = new WebAssembly.Instance(this.#module, { wasi_snapshot_preview1: wasi.imports });
      wasi.initialize(instance); // the reactor's _initialize, exactly once
    } catch (e) {
      throw new KavachTrap(e);
    }
    const x = instance.exports;
    if (!x.kavach_alloc || !x.kavach_free || !x.kavach_call || !x.kavach_abi_version) {
      throw new Error("kavach: the module lacks the kavach_* exports; is it Kavach's module (build/kavach.wasm)?");
    }
    this.#inst = { memory: x.memory, alloc: x.kavach_alloc, free: x.kavach_free, call: x.kavach_call, abi: x.kavach_abi_version };
    this.instances++;
    this.instantiateMs = performance.now() - t0;
    return this.#inst;
  }
}

// wasiFactory returns a function making one WASI per instance: {imports, initialize(instance)}.
async function wasiFactory(kind, stdio) {
  const shim = () => createWasiShim(stdio);
  if (kind === 'shim' || (kind === 'auto' && !isNode())) return shim;
  let WASI;
  try {
    ({ WASI } = await import('node:wasi'));
  } catch (e) {
    if (kind === 'node') throw new Error(`kavach: node:wasi is not available: ${e.message}`);
    return shim;
  }
  if (typeof WASI?.prototype?.initialize !== 'function') {
    if (kind === 'node') throw new Error('kavach: this node:wasi has no initialize() for reactor modules');
    return shim;
  }
  return () => {
    // returnOnExit: proc_exit throws out of the call instead of ending the process.
    const w = new WASI({ version: 'preview1', returnOnExit: true, env: stdio.env });
    return { imports: w.wasiImport, initialize: (instance) => w.initialize(instance) };
  };
}

// Node itself, not a runtime imitating it (Bun's node:wasi lacks initialize; Deno's was a stub
// until 2026; workerd has none).
function isNode() {
  return typeof globalThis.process?.versions?.node === 'string' && !globalThis.Bun && !globalThis.Deno &&
    globalThis.navigator?.userAgent !== 'Cloudflare-Workers';
}
