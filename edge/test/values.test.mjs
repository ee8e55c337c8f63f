// Value conversion between the step protocol's wire form and @libsql/client, in memory and
// through a real sqld (KAVACH_TEST_SQLD_URL) where the database's own types are the judge.
import test from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@libsql/client/web';
import { wireToArg, valueToWire, base64Encode, base64Decode } from '../src/values.mjs';

const I64_MAX = 9223372036854775807n;
const I64_MIN = -9223372036854775808n;
const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

test('integers: JSON numbers within 2^53, {"int"} beyond, and BigInt towards the client', () => {
  const cases = [
    [0n, 0],
    [1n, 1],
    [-1n, -1],
    [SAFE, Number.MAX_SAFE_INTEGER],
    [-SAFE, -Number.MAX_SAFE_INTEGER],
    [SAFE + 1n, { int: '9007199254740992' }],
    [-SAFE - 1n, { int: '-9007199254740992' }],
    [I64_MAX, { int: '9223372036854775807' }],
    [I64_MIN, { int: '-9223372036854775808' }],
  ];
  for (const [big, wire] of cases) {
    assert.deepEqual(valueToWire(big), wire, `valueToWire(${big})`);
    const back = wireToArg(wire);
    assert.equal(typeof back, 'bigint', `wireToArg(${JSON.stringify(wire)}) must be a BigInt: the client sends numbers as REAL`);
    assert.equal(back, big);
    // And through JSON text, as the envelope carries it.
    assert.equal(wireToArg(JSON.parse(JSON.stringify(wire))), big);
  }
  assert.throws(() => wireToArg({ int: '9223372036854775808' }), RangeError);
  assert.throws(() => wireToArg({ int: '-9223372036854775809' }), RangeError);
  assert.throws(() => wireToArg({ int: '12x' }), SyntaxError);
});

test('floats are always {"float"}, even without a fraction, and non-finite ones are named', () => {
  assert.deepEqual(valueToWire(1), { float: 1 });
  assert.deepEqual(valueToWire(-0.5), { float: -0.5 });
  assert.deepEqual(valueToWire(1e300), { float: 1e300 });
  assert.deepEqual(valueToWire(NaN), { float: 'NaN' });
  assert.deepEqual(valueToWire(Infinity), { float: '+Inf' });
  assert.deepEqual(valueToWire(-Infinity), { float: '-Inf' });
  assert.equal(wireToArg({ float: 1 }), 1);
  assert.equal(typeof wireToArg({ float: 2 }), 'number');
  assert.equal(wireToArg({ float: '+Inf' }), Infinity);
  assert.equal(wireToArg({ float: '-Inf' }), -Infinity);
  assert.ok(Number.isNaN(wireToArg({ float: 'NaN' })));
  assert.equal(wireToArg({ float: '2.5' }), 2.5); // Go may send a float as a string
  assert.throws(() => wireToArg({ float: 'abc' }), TypeError);
  // A bare number with a fraction is not valid wire, but it stays a REAL rather than truncated.
  assert.equal(wireToArg(2.5), 2.5);
});

test('strings, null and blobs', () => {
  assert.equal(valueToWire(''), '');
  assert.equal(valueToWire('ünï\u0000cødé 🙂'), 'ünï\u0000cødé 🙂');
  assert.equal(wireToArg('{"int":"1"}'), '{"int":"1"}'); // a string that looks like a value stays a string
  assert.equal(valueToWire(null), null);
  assert.equal(valueToWire(undefined), null);
  assert.equal(wireToArg(null), null);

  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.deepEqual(valueToWire(all.buffer), { blob: base64Encode(all) });
  assert.deepEqual(valueToWire(all.subarray(250)), { blob: '+vv8/f7/' }); // a view: only its bytes
  assert.deepEqual(valueToWire(new ArrayBuffer(0)), { blob: '' });
  assert.deepEqual(wireToArg({ blob: base64Encode(all) }), all);
  assert.deepEqual(wireToArg({ blob: '' }), new Uint8Array(0));
  // Large blobs cross the String.fromCharCode chunking.
  const big = Uint8Array.from({ length: 100_003 }, (_, i) => (i * 7919) & 255);
  assert.deepEqual(base64Decode(base64Encode(big)), big);
  assert.equal(base64Encode(big), Buffer.from(big).toString('base64'));
  assert.throws(() => wireToArg({ blob: '***' }));
  assert.throws(() => wireToArg({ nothing: 1 }), TypeError);
  assert.throws(() => wireToArg([1]), TypeError);
  assert.throws(() => valueToWire(Symbol('x')), TypeError);
});

test('round trip through sqld keeps every type and int64 exactly', { skip: !process.env.KAVACH_TEST_SQLD_URL && 'KAVACH_TEST_SQLD_URL is not set' }, async () => {
  const db = createClient({ url: process.env.KAVACH_TEST_SQLD_URL, intMode: 'bigint' });
  try {
    const wires = [
      null, 'text', '', 0, 42, -42, Number.MAX_SAFE_INTEGER,
      { int: '9007199254740993' }, { int: '9223372036854775807' }, { int: '-9223372036854775808' },
      { float: 1 }, { float: -2.5 }, { float: 1e-300 },
      { blob: '' }, { blob: base64Encode(Uint8Array.from({ length: 256 }, (_, i) => i)) },
    ];
    const rs = await db.execute({ sql: `SELECT ${wires.map(() => '?').join(', ')}`, args: wires.map(wireToArg) });
    const back = wires.map((_, i) => valueToWire(rs.rows[0][i]));
    assert.deepEqual(back, wires);
    // SQLite's own view of the types: INTEGER for every integer, REAL for 1.0.
    const types = await db.execute({ sql: 'SELECT typeof(?), typeof(?), typeof(?), typeof(?)', args: [wireToArg(1), wireToArg({ int: '9223372036854775807' }), wireToArg({ float: 1 }), wireToArg({ blob: 'AA==' })] });
    assert.deepEqual(Array.from(types.rows[0]), ['integer', 'integer', 'real', 'blob']);
  } finally {
    db.close();
  }
});
