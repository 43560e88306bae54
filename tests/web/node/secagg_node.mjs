// A device of a secure round under Node, with the page's own WebCrypto
// module (web/static/js/shared/secagg.js): enrol, take the task, mask the
// deltas given, and print one JSON line of what happened.
//
//   node secagg_node.mjs SERVER_URL DELTAS.json   (DELTAS: {name: [values]})

import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const shared = path.resolve(here, "../../../web/static/js/shared");
const { Device } = await import(pathToFileURL(path.join(shared, "api.js")).href);
const { secureRound } = await import(pathToFileURL(path.join(shared, "secagg.js")).href);
const [server, deltasFile] = process.argv.slice(2);
const given = JSON.parse(await readFile(deltasFile, "utf8"));

const device = new Device(server);
await device.enrol();
let answer = await device.task();
for (let i = 0; !answer.task && i < 50; i++) {
  await new Promise((resolve) => setTimeout(resolve, 200));
  answer = await device.task();
}
if (!answer.task) throw new Error(`no task: ${JSON.stringify(answer)}`);
const deltas = Object.entries(given).map(([name, values]) => ({ name, data: Float32Array.from(values) }));
const steps = [];
const result = await secureRound({ device, task: answer.task, deltas, onProgress: (step) => steps.push(step) });
console.log(JSON.stringify({ device_id: device.id, ...result, steps }));
