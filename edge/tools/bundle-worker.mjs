// Bundles the Worker entry for workerd as wrangler would: workerd loads ES modules by name and
// does no package resolution, so src/worker.mjs and @libsql/client become one module, and the
// WebAssembly module stays a separate module binding named "kavach.wasm".
//
//   node edge/tools/bundle-worker.mjs <out.mjs>
import { build } from 'esbuild';

const out = process.argv[2];
if (!out) throw new Error('usage: node edge/tools/bundle-worker.mjs <out.mjs>');
await build({
  entryPoints: [new URL('../src/worker.mjs', import.meta.url).pathname],
  outfile: out,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  conditions: ['workerd', 'worker'],
  external: ['./kavach.wasm', 'node:*'],
  logLevel: 'warning',
});
