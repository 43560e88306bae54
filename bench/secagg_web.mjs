// The web device's side of secure aggregation (web/static/js/shared/secagg.js,
// WebCrypto) under Node: CPU per stage for one device of a round of N, with
// its K neighbours played by other instances of the same module.
//
//   node bench/secagg_web.mjs LENGTH DEVICES     (prints one JSON line)
//
// Run by `python -m bench.secagg_bench --web`. Node's WebCrypto is OpenSSL,
// as Chromium's is BoringSSL: the same order of cost, not the same figures.

import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = path.resolve(here, "../web/static/js/shared");
const { SecAggDevice, chooseParams, neighboursOf } = await import(pathToFileURL(path.join(shared, "secagg.js")).href);

const [length, devices] = process.argv.slice(2).map(Number);
const params = chooseParams(devices, 0.3, length, 0.5);
const ids = Array.from({ length: devices }, (_, i) => `device-${String(i).padStart(5, "0")}`);
const seed = new Uint8Array(32).fill(7);
const seedB64 = Buffer.from(seed).toString("base64");
const self = ids[0];
const ring = new Set([self, ...(await neighboursOf(ids, seed, params.neighbours, self))]);
// Only the measured device and its neighbours need to exist.
const agents = new Map();
for (const id of ring) agents.set(id, await SecAggDevice.create(id, 1));
const adverts = new Map();
for (const [id, agent] of agents) adverts.set(id, await agent.advertise());

const timings = {};
const time = async (stage, work) => {
  const started = performance.now();
  const result = await work();
  timings[stage] = performance.now() - started;
  return result;
};

const directoryFor = async (id) => {
  const mine = await neighboursOf(ids, seed, params.neighbours, id);
  const keys = Object.fromEntries(mine.map((v) => [v, adverts.get(v) ?? adverts.get(self)]));
  return { round_id: 1, params, devices: ids, graph_seed: seedB64, keys };
};
await time("keys", () => agents.get(self).advertise());
const bundle = await time("shares", async () => agents.get(self).shareKeys(await directoryFor(self)));
// The neighbours' shares for the measured device.
const inbox = { shares: [] };
for (const id of ring) {
  if (id === self) continue;
  const theirs = await agents.get(id).shareKeys(await directoryFor(id)).catch(() => null);
  const share = theirs?.shares.find((s) => s.receiver === self);
  if (share) inbox.shares.push({ sender: id, ciphertext: share.ciphertext });
}
const values = Float64Array.from({ length }, (_, i) => Math.sin(i) * 0.3);
const masked = await time("masked", () => agents.get(self).maskedInput(inbox, values));
await time("unmask", async () => agents.get(self).unmask({ survivors: [...ring].sort(), dropped: [] }));
console.log(JSON.stringify({ length, devices, neighbours: params.neighbours, shares_bytes: JSON.stringify(bundle).length, masked_bytes: masked.byteLength, ms: timings }));
