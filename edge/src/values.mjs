// Database values between the step protocol's wire form and @libsql/client.
//
// Wire form (api/step.go, Value): null, a JSON string, an integer as a JSON number (only within
// ±(2^53-1), where a JS number is exact) or {"int":"<decimal>"} beyond, {"float":x} (x may be the
// string "NaN", "+Inf" or "-Inf"), and {"blob":"<base64>"}. A plain JSON number is always an
// integer, so the wire form never confuses 1 with 1.0.
//
// @libsql/client side, with intMode "bigint": INTEGER is a BigInt, REAL a number, TEXT a string,
// BLOB an ArrayBuffer (we also accept any ArrayBufferView), NULL null. Integers go to the client
// as BigInt because the client sends a JS number as a REAL.

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

/** wireToArg converts a wire value (already JSON-parsed) to an @libsql/client argument. */
export function wireToArg(v) {
  if (v === null || typeof v === 'string') return v;
  if (typeof v === 'number') {
    // A bare number is an integer by the wire contract; a fraction would be a producer's bug,
    // but it is still a REAL rather than silently truncated.
    return Number.isInteger(v) ? BigInt(v) : v;
  }
  if (typeof v === 'object') {
    if (typeof v.int === 'string') {
      const n = BigInt(v.int); // throws SyntaxError on a malformed decimal
      if (n < INT64_MIN || n > INT64_MAX) throw new RangeError(`value {"int":"${v.int}"} is outside int64`);
      return n;
    }
    if ('float' in v) return floatFromWire(v.float);
    if (typeof v.blob === 'string') return base64Decode(v.blob);
  }
  throw new TypeError(`not a wire value: ${JSON.stringify(v)}`);
}

/** valueToWire converts a value read by @libsql/client (intMode "bigint") to the wire form. */
export function valueToWire(v) {
  switch (typeof v) {
    case 'string':
      return v;
    case 'bigint':
      return v >= -MAX_SAFE && v <= MAX_SAFE ? Number(v) : { int: v.toString() };
    case 'number':
      // With intMode "bigint" a number is always a REAL, even when it has no fraction.
      return { float: Number.isFinite(v) ? v : Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf' };
    case 'boolean':
      return v ? 1 : 0;
    case 'undefined':
      return null;
  }
  if (v === null) return null;
  if (v instanceof ArrayBuffer) return { blob: base64Encode(new Uint8Array(v)) };
  if (ArrayBuffer.isView(v)) return { blob: base64Encode(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
  throw new TypeError(`a database value of type ${Object.prototype.toString.call(v)} has no wire form`);
}

function floatFromWire(f) {
  if (typeof f === 'number') return f;
  switch (f) {
    case 'NaN':
      return NaN;
    case '+Inf':
    case 'Inf':
      return Infinity;
    case '-Inf':
      return -Infinity;
  }
  const n = Number(f);
  if (typeof f !== 'string' || Number.isNaN(n)) throw new TypeError(`value {"float":${JSON.stringify(f)}} is not a float`);
  return n;
}

// Base64 with the platform's btoa/atob, which every target (Node 16+, workerd, Deno, Bun) has;
// Buffer exists only in Node. Chunks keep String.fromCharCode's argument list short.
export function base64Encode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

export function base64Decode(b64) {
  const s = atob(b64); // throws on characters outside the alphabet
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}
