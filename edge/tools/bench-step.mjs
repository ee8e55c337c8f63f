// Per-call cost of the authorize step in Node: the final step of an authorize (its facts given,
// JSON envelope) in a loop, through node:wasi and through the shim; plus the module's compile and
// instantiate times and a whole authorize against sqld. Prints one JSON object on stdout.
//
//   KAVACH_TEST_WASM=build/kavach.wasm KAVACH_TEST_SQLD_URL=http://127.0.0.1:8080 node edge/tools/bench-step.mjs
//
// The database must be fresh or already migrated; the script migrates it and adds one agent.
import { readFileSync } from 'node:fs';
import { createClient } from '@libsql/client/web';
import { createKavach, KavachModule } from '../src/host.mjs';
import { nodeFetch } from '../src/node.mjs';

const wasmPath = process.env.KAVACH_TEST_WASM ?? new URL('../../build/kavach.wasm', import.meta.url).pathname;
const url = process.env.KAVACH_TEST_SQLD_URL;
if (!url) throw new Error('KAVACH_TEST_SQLD_URL is not set');
const iterations = Number(process.env.KAVACH_BENCH_ITERATIONS ?? 20000);

const bytes = readFileSync(wasmPath);
const figures = { iterations };

// The envelope of the final round of an authorize by id, captured from a real run.
const client = createClient({ url, intMode: 'bigint', fetch: nodeFetch }); // as the Node entry connects
let finalEnvelope;
const k = await createKavach({
  wasm: bytes, client, wasi: 'node', config: { insecureNoAuth: true },
  onStep: ({ op, envelope, output }) => { if (op === 'authorize' && output.status === 'done') finalEnvelope = envelope; },
});
figures.compileMs = k.module.compileMs;
figures.firstInstantiateMs = k.module.instantiateMs;
await k.migrate();
const agent = await k.agents.create({
  ownerId: 'bench', name: 'bench', type: 'autonomous',
  permissions: ['mcp:github:*', 'mcp:slack:*', 'db:invoices:*', 'ops:*', 'files:reports:read'].map((resource) => ({ resource, actions: ['read', 'write'] })),
});
const request = { action: 'read', resource: 'mcp:github:repos' };
const d = await k.authorize(agent.id, request);
if (!d.allowed || !finalEnvelope) throw new Error(`the authorize to measure failed: ${JSON.stringify(d)}`);
figures.envelopeBytes = finalEnvelope.length;

// A whole authorize against sqld, sequentially: database round trips included.
{
  const n = 200;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await k.authorize(agent.id, request);
  figures.authorizeViaSqldMs = (performance.now() - t0) / n;
  await k.flush();
}

const enc = new TextEncoder();
const dec = new TextDecoder();
for (const wasi of ['node', 'shim']) {
  const t0 = performance.now();
  const m = await KavachModule.load(bytes, { wasi });
  figures[`${wasi}LoadMs`] = performance.now() - t0; // compile + instantiate + _initialize
  figures[`${wasi}InstantiateMs`] = m.instantiateMs;
  const want = m.callText(finalEnvelope);
  if (!want.includes('"status":"done"') || !want.includes('"allowed":true')) throw new Error(`unexpected step output: ${want}`);

  // What the host pays per step (host.mjs does exactly this): the envelope string into the
  // module, the output string out, parsed. The loop
  // runs in batches and the fastest batch counts, in CPU time as well as wall time: tests run
  // beside others on a small machine, and CPU time is what the step costs, not what it waited.
  const step = () => JSON.parse(m.callText(finalEnvelope));
  for (let i = 0; i < 2000; i++) step(); // warm up the JIT tiers
  Object.assign(figures, Object.fromEntries(Object.entries(measure(step)).map(([k, v]) => [`${wasi}Step${k}`, v])));

  // The module alone: the envelope already encoded, the output not parsed.
  const env = enc.encode(finalEnvelope);
  Object.assign(figures, Object.fromEntries(Object.entries(measure(() => m.call(env))).map(([k, v]) => [`${wasi}Call${k}`, v])));
  if (dec.decode(m.call(env)) !== want) throw new Error('the step is not deterministic');
  if (m.instances !== 1) throw new Error('the instance was replaced during the loop');
  figures[`${wasi}MemoryMiB`] = m.memoryBytes / 1048576;
}
client.close();

// measure runs f in 5 batches and returns the fastest batch's wall and CPU time per call, in µs.
function measure(f) {
  const batch = Math.max(1, Math.floor(iterations / 5));
  let wall = Infinity;
  let cpu = Infinity;
  for (let b = 0; b < 5; b++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < batch; i++) f();
    const t = ((performance.now() - t0) * 1000) / batch;
    const c = process.cpuUsage(c0);
    wall = Math.min(wall, t);
    cpu = Math.min(cpu, (c.user + c.system) / batch);
  }
  return { Us: wall, CpuUs: cpu };
}
for (const [key, v] of Object.entries(figures)) if (typeof v === 'number' && !Number.isInteger(v)) figures[key] = Math.round(v * 100) / 100;
console.log(JSON.stringify(figures));
