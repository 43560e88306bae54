#!/usr/bin/env node
// Runs a fedge TF.js model in Node with @tensorflow/tfjs (CPU backend), so
// parity is checked by the same JavaScript runtime the browser uses, not by
// tensorflowjs's Python loader. model.json's "format" picks the loader: a
// layers model (tf.loadLayersModel) or a graph model (tf.loadGraphModel, for
// models tfjs-layers cannot build; run with executeAsync, which also takes
// control flow).
//
//   node tfjs_run.mjs predict --model DIR/model.json --inputs IN --outputs OUT [--batch-size N]
//   node tfjs_run.mjs bench   --model DIR/model.json --inputs IN [--warmup N] [--iters M]
//   common: [--result FILE]  (the result JSON; stdout when not given)
//           [--node-modules DIR]  (the node_modules that holds @tensorflow/tfjs;
//                                  default: Node's own lookup from this file, i.e. web/node_modules)
// Options may come before or after the mode.
//
// Tensor exchange (both directions): a directory holding `tensors.json`,
//   {"format": "fedge-tensors/1",
//    "tensors": [{"name": "image", "dtype": "float32", "shape": [64, 8, 8, 1], "file": "0.bin"}]}
// and one raw little-endian C-order file per tensor. dtypes: float32, int32.
// Nothing is evaluated or deserialised beyond JSON and typed arrays.
// Inputs are fed by name when every tensor is named after a model input (a
// graph model's signature keys, a layers model's input names), else in
// order. Outputs are written under the model's output names (a graph
// model's signature keys), in the model's order.
//
// The result JSON is {"ok": true, "format", "outputs", ...} or {"ok": false, "kind", "message", ...}
// where kind is one of: usage, runtime_missing, missing_file, bad_weights,
// unknown_layer, unknown_activation, load_failed, bad_input, error.
// Exit status: 0 ok, 1 failed (result written), 2 usage error.

import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { registerNormalization } from '../static/js/shared/normalization_layer.js';

const FORMAT = 'fedge-tensors/1';
const ARRAYS = { float32: Float32Array, int32: Int32Array };
const WEIGHT_BYTES = { float32: 4, int32: 4, float16: 2, uint16: 2, uint8: 1, bool: 1 };

class RunError extends Error {
  constructor(kind, message, extra = {}) {
    super(message);
    this.kind = kind;
    this.extra = extra;
  }
}

function parseArgs(argv) {
  const args = { mode: undefined, batchSize: 32, warmup: 10, iters: 100 };
  const names = { '--model': 'model', '--inputs': 'inputs', '--outputs': 'outputs',
    '--result': 'result', '--batch-size': 'batchSize', '--warmup': 'warmup', '--iters': 'iters',
    '--node-modules': 'nodeModules' };
  for (let i = 0; i < argv.length; i += 1) {
    if (!argv[i].startsWith('--') && args.mode === undefined) {
      args.mode = argv[i];
      continue;
    }
    const key = names[argv[i]];
    if (key === undefined || argv[i + 1] === undefined) {
      throw new RunError('usage', `unknown or incomplete option ${argv[i]}`);
    }
    args[key] = argv[i + 1];
    i += 1;
  }
  if (args.mode !== 'predict' && args.mode !== 'bench') {
    throw new RunError('usage', `the mode must be "predict" or "bench", got ${args.mode}`);
  }
  for (const key of ['batchSize', 'warmup', 'iters']) {
    args[key] = Number(args[key]);
    if (!Number.isInteger(args[key]) || args[key] < (key === 'warmup' ? 0 : 1)) {
      throw new RunError('usage', `--${key} must be a positive integer`);
    }
  }
  const needed = args.mode === 'predict' ? ['model', 'inputs', 'outputs'] : ['model', 'inputs'];
  for (const key of needed) {
    if (args[key] === undefined) throw new RunError('usage', `--${key} is required`);
  }
  return args;
}

async function readBytes(file, what) {
  try {
    return await readFile(file);
  } catch (err) {
    if (err.code === 'ENOENT') {
      throw new RunError('missing_file', `${what} not found: ${file}`, { path: file });
    }
    throw err;
  }
}

// A path from a manifest must stay inside its directory: a bundle may come
// from a server, and must not make us read other files.
function inside(dir, relative) {
  const full = path.resolve(dir, relative);
  if (path.relative(dir, full).startsWith('..') || path.isAbsolute(relative)) {
    throw new RunError('bad_weights', `path ${relative} leaves the model directory`);
  }
  return full;
}

function copyToArrayBuffer(buf) {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
}

// tfjs 4.22 has no file:// loader without tfjs-node: this IOHandler reads
// model.json and its weight shards with fs and returns ModelArtifacts
// (modelTopology, weightSpecs, weightData as one ArrayBuffer per shard).
function fileHandler(tf, modelPath, modelJSON) {
  const dir = path.dirname(path.resolve(modelPath));
  return {
    async load() {
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs = tf.io.getWeightSpecs(manifest);
        const shards = [];
        for (const group of manifest) {
          for (const shard of group.paths) {
            const bytes = await readBytes(inside(dir, shard), 'weight shard');
            shards.push(copyToArrayBuffer(bytes));
          }
        }
        checkWeightBytes(specs, shards);
        return [specs, shards];
      });
    },
  };
}

// tfjs would read past a truncated shard into garbage or fail obscurely;
// a clear message names the sizes instead.
function checkWeightBytes(specs, shards) {
  let expected = 0;
  for (const spec of specs) {
    const dtype = spec.quantization ? spec.quantization.dtype : spec.dtype;
    const per = WEIGHT_BYTES[dtype];
    if (per === undefined) return; // string weights: variable size, leave to tfjs.
    expected += per * spec.shape.reduce((a, b) => a * b, 1);
  }
  const got = shards.reduce((sum, s) => sum + s.byteLength, 0);
  if (got !== expected) {
    throw new RunError('bad_weights',
      `weight shards hold ${got} bytes but model.json describes ${expected}`);
  }
}

// Both formats behind one shape: input names and shapes (null: any size),
// output names, and run(xs, batchSize) -> Promise<Tensor[]> with xs in the
// model's input order.
async function loadModel(tf, modelPath) {
  let modelJSON;
  try {
    modelJSON = JSON.parse((await readBytes(modelPath, 'model.json')).toString('utf8'));
  } catch (err) {
    if (err instanceof RunError) throw err;
    throw new RunError('load_failed', `model.json is not valid JSON: ${err.message}`);
  }
  const graph = modelJSON.format === 'graph-model';
  try {
    const handler = fileHandler(tf, modelPath, modelJSON);
    return graph ? graphModel(tf, await tf.loadGraphModel(handler))
      : layersModel(await tf.loadLayersModel(handler));
  } catch (err) {
    if (err instanceof RunError) throw err;
    const message = String(err && err.message ? err.message : err);
    const layer = /Unknown layer: (\w+(?:\.\w+)*)/.exec(message);
    if (layer) throw new RunError('unknown_layer', message, { class_name: layer[1] });
    const act = /Unknown activation: (\w+(?:\.\w+)*)/.exec(message);
    if (act) throw new RunError('unknown_activation', message, { class_name: act[1] });
    throw new RunError('load_failed', message);
  }
}

// A Sequential model names its inputs and outputs once it is built: read them late.
function layersModel(model) {
  return {
    format: 'layers-model',
    get inputNames() {
      return model.inputs.map((x, i) => (model.inputNames && model.inputNames[i]) || x.name);
    },
    get inputShapes() { return model.inputs.map((symbolic) => symbolic.shape); },
    get outputNames() { return model.outputNames; },
    run: async (xs, batchSize) => asList(model.predict(xs.length === 1 ? xs[0] : xs, { batchSize })),
  };
}

// A graph model runs a whole batch at once: batchSize rows at a time here,
// the pieces joined after.
function graphModel(tf, model) {
  const inputNames = model.inputs.map((input) => input.name);
  const execute = async (xs) => {
    const feed = {};
    inputNames.forEach((name, i) => { feed[name] = xs[i]; });
    return asList(await model.executeAsync(feed, model.outputNodes));
  };
  return {
    format: 'graph-model',
    inputNames,
    inputShapes: model.inputs.map((input) => (input.shape ? input.shape.map((d) => (d < 0 ? null : d)) : null)),
    outputNames: signatureKeys(model),
    run: async (xs, batchSize) => {
      const rows = xs[0].shape[0];
      if (rows <= batchSize) return execute(xs);
      const pieces = [];
      for (let start = 0; start < rows; start += batchSize) {
        const size = Math.min(batchSize, rows - start);
        const slices = xs.map((x) => x.slice(start, size));
        pieces.push(await execute(slices));
        tf.dispose(slices);
      }
      const joined = pieces[0].map((_, k) => tf.concat(pieces.map((piece) => piece[k])));
      tf.dispose(pieces);
      return joined;
    },
  };
}

async function readTensors(tf, dir) {
  const header = JSON.parse((await readBytes(path.join(dir, 'tensors.json'), 'tensors.json'))
    .toString('utf8'));
  if (header.format !== FORMAT) {
    throw new RunError('bad_input', `expected format ${FORMAT}, got ${header.format}`);
  }
  const tensors = [];
  for (const entry of header.tensors) {
    const TypedArray = ARRAYS[entry.dtype];
    if (TypedArray === undefined) throw new RunError('bad_input', `unsupported dtype ${entry.dtype}`);
    const bytes = await readBytes(inside(dir, entry.file), `tensor ${entry.name}`);
    const count = entry.shape.reduce((a, b) => a * b, 1);
    if (bytes.byteLength !== count * TypedArray.BYTES_PER_ELEMENT) {
      throw new RunError('bad_input', `${entry.file}: ${bytes.byteLength} bytes, shape ` +
        `[${entry.shape}] of ${entry.dtype} needs ${count * TypedArray.BYTES_PER_ELEMENT}`);
    }
    const values = new TypedArray(copyToArrayBuffer(bytes));
    tensors.push({ name: entry.name, tensor: tf.tensor(values, entry.shape, entry.dtype) });
  }
  return tensors;
}

// Each output node's key in the model's signature ({"probs": {"name":
// "Identity:0"}}): tfjs lists output nodes by key or by tensor name,
// depending on the graph, and its structuredOutputKeys need not follow them.
function signatureKeys(model) {
  const outputs = (model.modelSignature && model.modelSignature.outputs) || {};
  const node = (name) => String(name).split(':')[0];
  return model.outputNodes.map((name) => {
    if (name in outputs) return name;
    const key = Object.keys(outputs).find((k) => node(outputs[k].name) === node(name));
    return key === undefined ? node(name) : key;
  });
}

// The tensors in the model's input order: by name when every tensor is
// named after an input, else as given.
function orderInputs(model, inputs) {
  const byName = new Map(inputs.map((x) => [x.name, x]));
  const named = inputs.length === model.inputNames.length
    && model.inputNames.every((name) => byName.has(name));
  return named ? model.inputNames.map((name) => byName.get(name)) : inputs;
}

function checkInputs(model, inputs) {
  if (inputs.length !== model.inputNames.length) {
    throw new RunError('bad_input',
      `the model takes ${model.inputNames.length} input(s) (${model.inputNames}), got ${inputs.length}`);
  }
  model.inputShapes.forEach((want, i) => {
    if (want === null || want === undefined) return;
    const got = inputs[i].tensor.shape;
    const fits = got.length === want.length && want.every((d, j) => d === null || d === got[j]);
    if (!fits) {
      throw new RunError('bad_input',
        `input ${i} (${model.inputNames[i]}): shape [${got}] does not fit [${want}]`);
    }
  });
}

async function writeTensors(dir, named) {
  await mkdir(dir, { recursive: true });
  const entries = [];
  for (const [i, { name, tensor }] of named.entries()) {
    const t = tensor.dtype === 'float32' || tensor.dtype === 'int32' ? tensor : tensor.toInt();
    const data = await t.data();
    const file = `${i}.bin`;
    await writeFile(path.join(dir, file), Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    entries.push({ name, dtype: t.dtype, shape: t.shape, file });
  }
  const header = { format: FORMAT, tensors: entries };
  await writeFile(path.join(dir, 'tensors.json'), JSON.stringify(header));
}

function asList(output) {
  return Array.isArray(output) ? output : [output];
}

async function predict(tf, model, args) {
  const inputs = orderInputs(model, await readTensors(tf, args.inputs));
  checkInputs(model, inputs);
  const xs = inputs.map((x) => x.tensor);
  const ys = await model.run(xs, args.batchSize);
  await writeTensors(args.outputs, ys.map((tensor, i) => ({ name: model.outputNames[i], tensor })));
  tf.dispose([...xs, ...ys]);
  return { format: model.format, outputs: model.outputNames, samples: xs[0].shape[0] };
}

function percentile(sorted, q) {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

// Single-sample latency: the first sample of each input, batch 1, the
// output read back to JavaScript each time (as an app would).
async function bench(tf, model, args) {
  const inputs = orderInputs(model, await readTensors(tf, args.inputs));
  checkInputs(model, inputs);
  const xs = inputs.map((x) => x.tensor.slice(0, 1));
  const once = async () => {
    const ys = await model.run(xs, 1);
    await Promise.all(ys.map((y) => y.data()));
    tf.dispose(ys);
  };
  for (let i = 0; i < args.warmup; i += 1) await once();
  const times = [];
  for (let i = 0; i < args.iters; i += 1) {
    const start = process.hrtime.bigint();
    await once();
    times.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  times.sort((a, b) => a - b);
  return {
    format: model.format,
    batch: 1,
    warmup: args.warmup,
    iters: args.iters,
    p50_us: percentile(times, 0.5),
    p90_us: percentile(times, 0.9),
    min_us: times[0],
    mean_us: times.reduce((a, b) => a + b, 0) / times.length,
  };
}

// ES modules ignore NODE_PATH, so a node_modules that is not beside this file
// (a normal install keeps it in a per-user directory) is resolved explicitly:
// the package directory's "main", as `import('@tensorflow/tfjs')` would find.
async function importTfjs(nodeModules) {
  if (nodeModules === undefined) return import('@tensorflow/tfjs');
  const require = createRequire(import.meta.url);
  const entry = require.resolve(path.resolve(nodeModules, '@tensorflow', 'tfjs'));
  return import(pathToFileURL(entry).href);
}

async function run(args) {
  if (endianness() !== 'LE') throw new RunError('error', 'fedge tensors are little-endian only');
  let tf;
  try {
    tf = await importTfjs(args.nodeModules);
  } catch (err) {
    throw new RunError('runtime_missing',
      `@tensorflow/tfjs is not installed (run \`fedge setup-node\`): ${err.message}`);
  }
  tf.enableProdMode();
  // Layers fedge defines for tfjs-layers (Keras' Normalization), as the browser registers them.
  registerNormalization(tf);
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await loadModel(tf, args.model);
  const body = args.mode === 'predict' ? await predict(tf, model, args) : await bench(tf, model, args);
  return { ok: true, mode: args.mode, backend: tf.getBackend(), tfjs: tf.version.tfjs, ...body };
}

async function main() {
  const argv = process.argv.slice(2);
  let args = null;
  let result;
  try {
    args = parseArgs(argv);
    result = await run(args);
  } catch (err) {
    const known = err instanceof RunError;
    result = {
      ok: false,
      kind: known ? err.kind : 'error',
      message: String(err && err.message ? err.message : err),
      ...(known ? err.extra : {}),
    };
    if (!known) process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  }
  const text = `${JSON.stringify(result)}\n`;
  if (args && args.result) await writeFile(args.result, text);
  else process.stdout.write(text);
  process.exitCode = result.ok ? 0 : result.kind === 'usage' ? 2 : 1;
}

await main();
