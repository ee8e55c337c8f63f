// A stand-in for Kavach's module that traps on demand, for the trap-recovery tests: the real
// module refuses oversized envelopes and answers malformed ones, so no input makes it trap.
const enc = new TextEncoder();

// trappingModule assembles a WebAssembly module with Kavach's exports: kavach_abi_version
// answers 1, kavach_alloc 16, kavach_free nothing, and kavach_call(ptr, len) an empty output at
// 16, except that it traps (unreachable) when len is at least minLen.
export function trappingModule(minLen) {
  const vec = (items) => [items.length, ...items.flat()];
  const name = (s) => [s.length, ...enc.encode(s)];
  const section = (id, body) => [id, ...leb(body.length), ...body];
  const i32 = 0x7f, i64 = 0x7e;
  const types = vec([[0x60, 0, 1, i32], [0x60, 1, i32, 1, i32], [0x60, 1, i32, 0], [0x60, 2, i32, i32, 1, i64], [0x60, 0, 0]]);
  const exports = vec([
    [...name('memory'), 2, 0], [...name('kavach_abi_version'), 0, 0], [...name('kavach_alloc'), 0, 1],
    [...name('kavach_free'), 0, 2], [...name('kavach_call'), 0, 3], [...name('_initialize'), 0, 4],
  ]);
  const body = (code) => [...leb(code.length + 1), 0, ...code]; // no locals
  const code = vec([
    body([0x41, 1, 0x0b]), // i32.const 1
    body([0x41, 16, 0x0b]), // i32.const 16
    body([0x0b]),
    // local.get 1; i32.const minLen; i32.ge_u; if; unreachable; end; i64.const 16<<32
    body([0x20, 1, 0x41, ...sleb(BigInt(minLen)), 0x4f, 0x04, 0x40, 0x00, 0x0b, 0x42, ...sleb(16n << 32n), 0x0b]),
    body([0x0b]),
  ]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...section(1, types), ...section(3, vec([[0], [1], [2], [3], [4]])),
    ...section(5, [1, 0, 1]), ...section(7, exports), ...section(10, code)]);
}

function leb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n) {
  const out = [];
  for (;;) {
    const b = Number(n & 0x7fn);
    n >>= 7n;
    if ((n === 0n && !(b & 0x40)) || (n === -1n && b & 0x40)) return [...out, b];
    out.push(b | 0x80);
  }
}
