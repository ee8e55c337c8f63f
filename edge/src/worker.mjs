// The Cloudflare Workers (workerd) entry: the whole REST API from the module, with the
// database URL and token from env (KAVACH_DATABASE_URL, KAVACH_DATABASE_AUTH_TOKEN).
//
// Workers cannot compile WebAssembly from bytes, so the module is imported as a module binding:
// "./kavach.wasm" next to this file (copy build/kavach.wasm here; wrangler's default rules
// bundle *.wasm as a compiled module, and a workerd config names it with `wasm = embed ...`).
// The host is made once per isolate, on its first request, and audit rows are written after
// each answer through ctx.waitUntil.
import wasm from './kavach.wasm';
import { fetchHandler } from './host.mjs';

export default fetchHandler(wasm);
