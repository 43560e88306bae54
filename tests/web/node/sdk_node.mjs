// The web SDK under Node (TF.js cpu, as the parity runner): connect to a
// real fedge server, predict on the rows given, store the examples, join
// the open round, report the live model's health, and print one JSON line of what happened. Bad input is
// tried too: each must be a typed error and store nothing.
//
//   node sdk_node.mjs SERVER_URL REQUEST.json [APP_DIR]   (REQUEST: {inputs, examples: [{inputs, label}]})
//
// The SDK is web/sdk/fedge.js, or with APP_DIR the npm package installed in
// APP_DIR/node_modules, found by its name as an app finds it (its package.json's exports).

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const web = path.resolve(here, "../../../web");
const require = createRequire(path.join(web, "package.json"));
const tf = await import(pathToFileURL(require.resolve("@tensorflow/tfjs")).href);
const [server, requestFile, appDir] = process.argv.slice(2);
const sdk = appDir ? createRequire(path.join(path.resolve(appDir), "package.json")).resolve("@fedge/web-sdk") : path.join(web, "sdk/fedge.js");
const { FedgeClient } = await import(pathToFileURL(sdk).href);
const request = JSON.parse(await readFile(requestFile, "utf8"));
await tf.setBackend("cpu");
const codeOf = (promise) => promise.then(() => "ok", (e) => e.code || String(e));

const down = await codeOf(FedgeClient.connect("http://127.0.0.1:9", { enrol: true, tf }));
const client = await FedgeClient.connect(server, { enrol: true, tf });
const predicted = await client.predict(request.inputs);
const [name] = Object.keys(request.inputs);
const row = request.inputs[name][0];
const bad = {
  unknown_input: await codeOf(client.predict({ nope: [row] })),
  bad_shape: await codeOf(client.predict({ [name]: [row.slice(1)] })),
  not_finite: await codeOf(client.addExample({ [name]: [Number.NaN, ...row.slice(1)] }, 0)),
  bad_label: await codeOf(client.addExample({ [name]: row }, 99)),
};
const storedAfterBad = await client.exampleCount();
for (const example of request.examples) await client.addExample(example.inputs, example.label);
const steps = [];
const outcome = await client.joinRound({ shuffle: false, onProgress: (step) => steps.push(step) });
// The live model's health on the stored examples, then again at once: the server's pace says wait.
const health = [await client.reportHealth(), await client.reportHealth()];
console.log(JSON.stringify({ sdk, down, predicted, bad, storedAfterBad, outcome, steps, health, token: client.device.token }));
client.close();
