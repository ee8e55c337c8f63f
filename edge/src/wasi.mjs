// A WASI preview 1 shim for runtimes without a usable node:wasi (workerd, Bun, Deno): exactly the
// imports Go's wasip1 runtime links into Kavach's module, which does no I/O of its own. List them
// with WebAssembly.Module.imports(module); a module needing one more fails at instantiation with
// a LinkError naming it, never later.
//
// There is no file system and there are no arguments; the environment is what the host passes
// (the Go runtime reads GOGC and GOMEMLIMIT from it). Clocks and randomness come from the
// platform, stdout and stderr go to the console line by line, and proc_exit throws WasiExit,
// which ends the call in progress (the instance must then be discarded).

const ESUCCESS = 0;
const EBADF = 8;
const EINVAL = 28;

const CLOCK_REALTIME = 0;
const CLOCK_MONOTONIC = 1;
const CLOCK_PROCESS_CPUTIME = 2;
const CLOCK_THREAD_CPUTIME = 3;

// crypto.getRandomValues fills at most 65,536 bytes per call (the Web Crypto limit).
const RANDOM_CHUNK = 65536;

/** WasiExit is thrown by proc_exit: the module asked to stop (Go does after a fatal error). */
export class WasiExit extends Error {
  constructor(code) {
    super(`the module exited with code ${code}`);
    this.name = 'WasiExit';
    this.code = code;
  }
}

/**
 * createWasiShim returns {imports, initialize(instance)}. imports is the
 * wasi_snapshot_preview1 import object; initialize binds it to the instance's memory and runs
 * the reactor's _initialize export once.
 */
export function createWasiShim({ env = {}, stdout = (s) => console.log(s), stderr = (s) => console.error(s) } = {}) {
  let memory = null;
  // "KEY=VALUE\0" each, as environ_get hands them over.
  const environ = Object.entries(env).map(([k, v]) => new TextEncoder().encode(`${k}=${v}\0`));
  // The memory's buffer is detached whenever the module grows its memory, so every import takes
  // a fresh view.
  const view = () => new DataView(memory.buffer);
  const bytes = (ptr, len) => new Uint8Array(memory.buffer, ptr, len);
  const decoders = { 1: new TextDecoder(), 2: new TextDecoder() };
  const sinks = { 1: stdout, 2: stderr };
  const pending = { 1: '', 2: '' }; // output without a final newline yet, by fd

  const monotonicNs = () => BigInt(Math.round(performance.now() * 1e6));

  const imports = {
    args_sizes_get(argcPtr, bufSizePtr) {
      const v = view();
      v.setUint32(argcPtr, 0, true);
      v.setUint32(bufSizePtr, 0, true);
      return ESUCCESS;
    },
    args_get: () => ESUCCESS,
    environ_sizes_get(countPtr, bufSizePtr) {
      const v = view();
      v.setUint32(countPtr, environ.length, true);
      v.setUint32(bufSizePtr, environ.reduce((n, e) => n + e.length, 0), true);
      return ESUCCESS;
    },
    environ_get(environPtr, bufPtr) {
      const v = view();
      for (const [i, e] of environ.entries()) {
        v.setUint32(environPtr + i * 4, bufPtr, true);
        bytes(bufPtr, e.length).set(e);
        bufPtr += e.length;
      }
      return ESUCCESS;
    },

    clock_time_get(id, _precision, timePtr) {
      let t;
      switch (id) {
        case CLOCK_REALTIME:
          t = BigInt(Date.now()) * 1000000n;
          break;
        case CLOCK_MONOTONIC:
        case CLOCK_PROCESS_CPUTIME:
        case CLOCK_THREAD_CPUTIME:
          // On Workers both clocks stand still during a request; the core takes its time from
          // the envelope, so the runtime's own uses (GC pacing, timers) only need monotonicity.
          t = monotonicNs();
          break;
        default:
          return EINVAL;
      }
      view().setBigUint64(timePtr, t, true);
      return ESUCCESS;
    },

    random_get(ptr, len) {
      for (let off = 0; off < len; off += RANDOM_CHUNK) {
        crypto.getRandomValues(bytes(ptr + off, Math.min(RANDOM_CHUNK, len - off)));
      }
      return ESUCCESS;
    },

    fd_write(fd, iovsPtr, iovsLen, nwrittenPtr) {
      if (fd !== 1 && fd !== 2) return EBADF;
      const v = view();
      let n = 0;
      let text = pending[fd];
      for (let i = 0; i < iovsLen; i++) {
        const ptr = v.getUint32(iovsPtr + i * 8, true);
        const len = v.getUint32(iovsPtr + i * 8 + 4, true);
        text += decoders[fd].decode(bytes(ptr, len), { stream: true });
        n += len;
      }
      // Print whole lines: Go writes a panic message in many small pieces.
      const nl = text.lastIndexOf('\n');
      if (nl >= 0) {
        sinks[fd](text.slice(0, nl));
        text = text.slice(nl + 1);
      }
      pending[fd] = text;
      v.setUint32(nwrittenPtr, n, true);
      return ESUCCESS;
    },
    fd_read(fd, _iovsPtr, _iovsLen, nreadPtr) {
      if (fd !== 0) return EBADF;
      view().setUint32(nreadPtr, 0, true); // stdin is empty
      return ESUCCESS;
    },
    fd_close: (fd) => (fd <= 2 ? ESUCCESS : EBADF),
    fd_fdstat_get(fd, statPtr) {
      if (fd > 2) return EBADF;
      const v = view();
      v.setUint8(statPtr, 2); // filetype: character device
      v.setUint16(statPtr + 2, 0, true); // flags
      v.setBigUint64(statPtr + 8, fd === 0 ? 0x2n : 0x40n, true); // rights: fd_read / fd_write
      v.setBigUint64(statPtr + 16, 0n, true);
      return ESUCCESS;
    },
    fd_fdstat_set_flags: (fd) => (fd <= 2 ? ESUCCESS : EBADF),
    // No preopened directories: Go probes fds from 3 up until EBADF.
    fd_prestat_get: () => EBADF,
    fd_prestat_dir_name: () => EBADF,

    // Go calls poll_oneoff to sleep when it has nothing to run. The core never sleeps, and a
    // synchronous host cannot block anyway, so every subscription is reported as due at once.
    poll_oneoff(inPtr, outPtr, nsubs, neventsPtr) {
      const v = view();
      for (let i = 0; i < nsubs; i++) {
        const sub = inPtr + i * 48;
        const ev = outPtr + i * 32;
        v.setBigUint64(ev, v.getBigUint64(sub, true), true); // userdata
        v.setUint16(ev + 8, ESUCCESS, true); // error
        v.setUint8(ev + 10, v.getUint8(sub + 8)); // type: the subscription's tag
        v.setBigUint64(ev + 16, 0n, true); // fd_readwrite.nbytes
        v.setUint16(ev + 24, 0, true); // fd_readwrite.flags
      }
      v.setUint32(neventsPtr, nsubs, true);
      return ESUCCESS;
    },
    sched_yield: () => ESUCCESS,

    proc_exit(code) {
      for (const fd of [1, 2]) {
        if (pending[fd]) sinks[fd](pending[fd]);
        pending[fd] = '';
      }
      throw new WasiExit(code);
    },
  };

  return {
    imports,
    initialize(instance) {
      memory = instance.exports.memory;
      instance.exports._initialize();
    },
  };
}
