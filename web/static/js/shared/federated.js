// The browser as a federated device: one round's work, as the Python
// devices do it (client_sim/device/simulated.py), with TF.js.
//
//   POST /v1/tasks -> task (or why not) -> GET the base checkpoint (its id is
//   its sha256, checked) -> a training copy of the page's model with the
//   checkpoint's weights -> SGD on the examples stored in this browser
//   (the task's epochs, batch size and learning rate; the manifest's loss)
//   -> one delta per manifest weight (new - base, BN statistics included)
//   -> safetensors update with the Python devices' metadata -> upload ->
//   the server's receipt.
//
// Only the deltas and a few numbers (loss and accuracy on the local
// examples) are sent: the examples never leave the browser. Training runs
// on cpu (the wasm backend has no Conv2DBackpropFilter); the user's
// backend is restored afterwards. The optimizer and the training copy are
// disposed after each round (each tf.train.sgd holds a tensor otherwise).

import { decode, encodeUpdate } from "./safetensors.js";
import { readWeights, writeWeights } from "./weights.js";
import { secureRound } from "./secagg.js";
import { FedgeError, checkInputs, describeModel, toInputTensors, trainingRecord } from "./model_io.js";

const EPSILON = 1e-7;
const SPARSE = "sparse_categorical_crossentropy";
const LOSSES = {
  sparse_categorical_crossentropy: "sparseCategoricalCrossentropy",
  categorical_crossentropy: "categoricalCrossentropy",
  binary_crossentropy: "binaryCrossentropy",
  mean_squared_error: "meanSquaredError",
  mean_absolute_error: "meanAbsoluteError",
  huber: null, // Keras's Huber (delta 1), written out below
};

/** A federated step that cannot go on; `code` is stable (FedgeError's subclass). */
export class FederatedError extends FedgeError {
  constructor(code, message, details = {}) {
    super(code, message, details);
    this.name = "FederatedError";
  }
}

/**
 * The model's objective from its manifest: the training loss (the bundle's
 * training record, else sparse cross-entropy for a labelled classifier),
 * whether it is a classifier, and the headline metric as
 * fedge.task.objective.Objective names it (accuracy, or mae for a regressor).
 * Throws FederatedError when the page cannot train this bundle: several
 * outputs, a graph model (inference only), or a loss it does not know.
 */
export function objectiveOf(manifest) {
  const outputs = manifest.outputs || [];
  if (outputs.length !== 1) {
    throw new FederatedError("several_outputs", `the browser trains models with one output; this one has ${outputs.length} (${outputs.map((o) => o.name).join(", ")}); it still predicts`);
  }
  if (manifest.artifacts?.tfjs?.format === "graph-model") {
    throw new FederatedError("predict_only", "this bundle's TF.js model is a graph model (inference only): the browser predicts with it but cannot train it");
  }
  const training = trainingRecord(manifest);
  const loss = training?.loss || (manifest.labels ? SPARSE : null);
  if (!(loss in LOSSES)) {
    throw new FederatedError("unsupported_loss", loss
      ? `the browser cannot train with this bundle's loss ${loss}; it still predicts`
      : "the bundle records no training loss (convert it with the tflite target, or give --loss); it still predicts");
  }
  const shape = outputs[0].shape;
  const width = shape.slice(1).reduce((a, b) => a * (b ?? 1), 1);
  const classifier = loss.endsWith("crossentropy");
  return { loss, fromLogits: Boolean(training?.from_logits), classifier, metric: classifier ? "accuracy" : "mae", width };
}

/** A label as the loss takes it, checked: a class id, 0/1, or target value(s). Throws FederatedError. */
export function checkLabel(objective, label) {
  const { loss, width } = objective;
  if (loss === SPARSE || loss === "categorical_crossentropy") {
    if (!Number.isInteger(label) || label < 0 || label >= width) {
      throw new FederatedError("bad_label", `the label is a class id from 0 to ${width - 1}; got ${JSON.stringify(label)}`, { label });
    }
    return label;
  }
  const values = Array.isArray(label) || ArrayBuffer.isView(label) ? Array.from(label) : [label];
  if (values.length !== width || !values.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw new FederatedError("bad_label", `the label is ${width} finite number(s) (the output's width); got ${JSON.stringify(label)}`, { label });
  }
  if (loss === "binary_crossentropy" && !values.every((v) => v >= 0 && v <= 1)) {
    throw new FederatedError("bad_label", `binary cross-entropy takes labels in [0, 1]; got ${JSON.stringify(label)}`, { label });
  }
  return width === 1 && !Array.isArray(label) ? values[0] : values;
}

/** An example's inputs by name: a record {inputs} or the older {pixels} (the first input). */
export function exampleInputs(manifest, example) {
  if (example.inputs) return example.inputs;
  return { [manifest.inputs[0].name]: example.pixels };
}

/** The examples as tensors: inputs (one tensor, or one per input) and labels as the loss takes them. */
export function exampleTensors(tf, manifest, objective, examples) {
  const described = describeModel(manifest);
  const byName = {};
  for (const input of described.inputs) byName[input.name] = [];
  for (const example of examples) {
    const inputs = exampleInputs(manifest, example);
    for (const input of described.inputs) byName[input.name].push(Array.from(inputs[input.name] || []));
  }
  let checked;
  try {
    checked = checkInputs(described, byName);
  } catch (error) {
    throw new FederatedError("bad_example", `a stored example does not fit the model: ${error.message}`);
  }
  const labels = examples.map((example) => example.label);
  return tf.tidy(() => {
    const xs = toInputTensors(tf, described, checked);
    let ys;
    if (objective.loss === SPARSE) ys = tf.tensor2d(labels, [labels.length, 1], "float32");
    else if (objective.loss === "categorical_crossentropy") ys = tf.oneHot(tf.tensor1d(labels, "int32"), objective.width).toFloat();
    else ys = tf.tensor2d(labels.flatMap((l) => (Array.isArray(l) ? l : [l])), [labels.length, objective.width], "float32");
    return { xs, ys };
  });
}

function logProbs(row, fromLogits) {
  if (fromLogits) {
    const top = Math.max(...row);
    const logSum = Math.log(row.reduce((s, v) => s + Math.exp(v - top), 0));
    return row.map((v) => v - top - logSum);
  }
  const total = Math.max(row.reduce((s, v) => s + v, 0), EPSILON);
  return row.map((v) => Math.log(Math.min(Math.max(v / total, EPSILON), 1 - EPSILON)));
}

function huber(error) {
  const a = Math.abs(error);
  return a <= 1 ? 0.5 * a * a : a - 0.5;
}

/** Loss and headline metric of one row, as fedge.task.objective.Objective computes them. */
function scoreRow(objective, row, label) {
  const { loss, fromLogits } = objective;
  if (loss === SPARSE || loss === "categorical_crossentropy") {
    const best = row.indexOf(Math.max(...row));
    return { loss: -logProbs(row, fromLogits)[label], metric: best === label ? 1 : 0 };
  }
  const y = Array.isArray(label) ? label : [label];
  if (loss === "binary_crossentropy") {
    let sum = 0;
    let right = 0;
    row.forEach((v, j) => {
      const p = Math.min(Math.max(fromLogits ? 1 / (1 + Math.exp(-v)) : v, EPSILON), 1 - EPSILON);
      sum -= y[j] * Math.log(p) + (1 - y[j]) * Math.log(1 - p);
      right += (v > (fromLogits ? 0 : 0.5)) === (y[j] > 0.5) ? 1 : 0;
    });
    return { loss: sum / row.length, metric: right / row.length, weight: row.length };
  }
  let lossSum = 0;
  let abs = 0;
  row.forEach((v, j) => {
    const e = y[j] - v;
    lossSum += loss === "mean_absolute_error" ? Math.abs(e) : loss === "huber" ? huber(e) : e * e;
    abs += Math.abs(e);
  });
  return { loss: lossSum / row.length, metric: abs / row.length };
}

/**
 * Loss and headline metric of `model` on the examples (float64, as
 * fedge.task.objective.Objective: probabilities clipped to 1e-7), and the
 * inference time per example in ms. Returns {loss, [metric], metric, latencyMs}.
 */
export function evaluate(tf, model, xs, labels, objective) {
  const started = performance.now();
  const output = tf.tidy(() => model.predict(xs, { batchSize: 256 }));
  const values = output.dataSync();
  const milliseconds = performance.now() - started;
  const width = values.length / labels.length;
  output.dispose();
  const n = labels.length;
  let lossSum = 0;
  let metricSum = 0;
  for (let i = 0; i < n; i++) {
    const score = scoreRow(objective, Array.from(values.subarray(i * width, (i + 1) * width)), labels[i]);
    lossSum += score.loss;
    metricSum += score.metric;
  }
  const metric = metricSum / n;
  return { loss: lossSum / n, [objective.metric]: metric, metric, latencyMs: milliseconds / n };
}

function lossFunction(tf, objective) {
  const { loss, fromLogits } = objective;
  if (loss === "huber") {
    return (yTrue, yPred) => tf.tidy(() => {
      const a = tf.abs(tf.sub(yTrue, yPred));
      const small = tf.minimum(a, 1);
      return tf.mean(tf.add(tf.mul(0.5, tf.square(small)), tf.sub(a, small)), -1);
    });
  }
  if (!fromLogits) return LOSSES[loss];
  if (loss === "binary_crossentropy") {
    // max(x, 0) - x y + log(1 + exp(-|x|)): the stable form of sigmoid cross-entropy on logits.
    return (yTrue, yPred) => tf.tidy(() =>
      tf.mean(tf.add(tf.sub(tf.relu(yPred), tf.mul(yPred, yTrue)), tf.log1p(tf.exp(tf.neg(tf.abs(yPred))))), -1));
  }
  const sparse = loss === SPARSE;
  return (yTrue, yPred) =>
    tf.tidy(() => {
      const classes = yPred.shape[yPred.shape.length - 1];
      const target = sparse ? tf.oneHot(yTrue.reshape([-1]).toInt(), classes).toFloat() : yTrue;
      return tf.neg(tf.sum(tf.mul(target, tf.logSoftmax(yPred)), -1));
    });
}

function checkWeights(manifest, tensors, what) {
  for (const { name, shape } of manifest.weights) {
    const entry = tensors.get(name);
    if (!entry) throw new FederatedError("wrong_weights", `${what} has no weight ${name}`);
    if (entry.shape.length !== shape.length || entry.shape.some((v, i) => v !== shape[i])) {
      throw new FederatedError("wrong_weights", `${name}: shape [${entry.shape}] in ${what}, [${shape}] in the manifest`);
    }
  }
}

async function withBackend(tf, backend, control, work) {
  const previous = control.getBackend();
  if (previous !== backend) await control.setBackend(backend);
  try {
    return await work();
  } finally {
    if (control.getBackend() !== previous) await control.setBackend(previous);
  }
}

/**
 * Fine-tune a copy of `model` (its topology) from `base` (Map canonical
 * name -> {shape, data}) on `examples` with SGD, on `backend`. Returns the
 * trained weights (Map name -> Float32Array), metrics on the examples
 * before and after, and each epoch's time in ms. The page's model is not
 * touched.
 */
export async function trainLocally({ tf, model, manifest, base, examples, config, backend = "cpu", control, shuffle = true, onEpoch = () => {} }) {
  const objective = objectiveOf(manifest);
  if (examples.length === 0) throw new FederatedError("no_examples", "no stored examples to train on");
  return withBackend(tf, backend, control, async () => {
    const copy = await tf.models.modelFromJSON(model.toJSON(null, false));
    const optimizer = tf.train.sgd(config.learning_rate);
    const { xs, ys } = exampleTensors(tf, manifest, objective, examples);
    const labels = examples.map((example) => example.label);
    try {
      writeWeights(tf, copy, manifest.weights, base);
      const before = evaluate(tf, copy, xs, labels, objective);
      copy.compile({ optimizer, loss: lossFunction(tf, objective) });
      const epochMs = [];
      let started = 0;
      const history = await copy.fit(xs, ys, {
        epochs: config.local_epochs,
        batchSize: config.batch_size,
        shuffle,
        verbose: 0,
        callbacks: {
          onEpochBegin: async () => {
            started = performance.now();
          },
          onEpochEnd: async (epoch, logs) => {
            epochMs.push(performance.now() - started);
            onEpoch(epoch + 1, config.local_epochs, logs.loss);
          },
        },
      });
      const after = evaluate(tf, copy, xs, labels, objective);
      const losses = history.history.loss.map(Number);
      const metric = objective.metric;
      const metrics = {
        [metric]: after.metric,
        [`${metric}_before`]: before.metric,
        loss: losses.reduce((a, b) => a + b, 0) / losses.length, // the mean training loss, as the Python devices send
        loss_after: after.loss,
        loss_before: before.loss,
      };
      return { trained: readWeights(copy, manifest.weights), metrics, metric, epochMs, backend: tf.getBackend() };
    } finally {
      tf.dispose(xs);
      ys.dispose();
      optimizer.dispose();
      copy.dispose();
    }
  });
}

/** One delta per manifest weight, in the manifest's order: new - base (float32). */
export function deltas(manifest, base, trained) {
  return manifest.weights.map(({ name, shape, dtype }) => {
    const before = base.get(name).data;
    const after = trained.get(name);
    const data = new Float32Array(before.length);
    for (let i = 0; i < before.length; i++) data[i] = after[i] - before[i];
    // An integer weight (a Normalization layer's count) goes in the model's own dtype.
    return { name, shape, data, dtype: WIRE_DTYPES[dtype] ?? "F32" };
  });
}

// Manifest dtypes sent as they are; every other weight is F32.
const WIRE_DTYPES = { int64: "I64", int32: "I32" };

/**
 * Take part in the open round once. Resolves to {status: "no_task", reason,
 * retry_after_s} or {status: "contributed", round_id, receipt, num_examples,
 * metrics, bytes, epochMs}. `onProgress(step, detail, fraction)` reports each step.
 */
export async function contribute({ tf, device, model, manifest, examples, control, backend = "cpu", shuffle = true, onProgress = () => {} }) {
  objectiveOf(manifest);
  if (examples.length === 0) throw new FederatedError("no_examples", "store a few corrections first");
  onProgress("task", "asking the server for a task", 0.05);
  const answer = await device.task();
  const task = answer.task;
  if (!task) return { status: "no_task", reason: answer.reason, retry_after_s: answer.retry_after_s };
  const names = manifest.weights.map((w) => w.name);
  if (task.weights.length !== names.length || task.weights.some((name, i) => name !== names[i])) {
    throw new FederatedError("other_model", `round ${task.round_id} trains ${task.model}, not this page's model`);
  }
  onProgress("checkpoint", `round ${task.round_id}: downloading checkpoint ${task.base_checkpoint.slice(0, 12)}`, 0.1);
  const bytes = await device.checkpoint(task.checkpoint_url, task.base_checkpoint);
  const checkpoint = decode(bytes, "checkpoint");
  checkWeights(manifest, checkpoint.tensors, "the checkpoint");
  onProgress("checkpoint", `checkpoint ${task.base_checkpoint.slice(0, 12)}: ${bytes.byteLength} bytes, sha256 verified`, 0.2);
  const trainedRun = await trainLocally({
    tf,
    model,
    manifest,
    base: checkpoint.tensors,
    examples,
    config: task,
    backend,
    control,
    shuffle,
    onEpoch: (epoch, epochs, loss) =>
      onProgress("train", `epoch ${epoch}/${epochs} on ${examples.length} examples: loss ${loss.toFixed(4)}`, 0.2 + (0.6 * epoch) / epochs),
  });
  if (task.secure_aggregation) {
    // A secure round: the server gets the update masked, and only the sum.
    const secured = await secureRound({
      device,
      task,
      deltas: deltas(manifest, checkpoint.tensors, trainedRun.trained),
      onProgress: (step, detail) => onProgress(step, detail, 0.85),
    });
    onProgress("done", `masked update in secure round ${task.round_id}`, 1);
    return {
      status: "contributed",
      round_id: task.round_id,
      base_checkpoint: task.base_checkpoint,
      receipt: null,
      secure: true,
      num_examples: examples.length,
      metrics: trainedRun.metrics,
      metric: trainedRun.metric,
      bytes: secured.bytes,
      epochMs: trainedRun.epochMs,
      backend: trainedRun.backend,
    };
  }
  const body = encodeUpdate({
    roundId: task.round_id,
    baseCheckpoint: task.base_checkpoint,
    numExamples: examples.length,
    metrics: trainedRun.metrics,
    deltas: deltas(manifest, checkpoint.tensors, trainedRun.trained),
  });
  onProgress("upload", `uploading the update: ${body.byteLength} bytes of weight deltas`, 0.85);
  const receipt = await device.upload(task.upload_url, body);
  onProgress("done", `accepted in round ${task.round_id}`, 1);
  return {
    status: "contributed",
    round_id: task.round_id,
    base_checkpoint: task.base_checkpoint,
    receipt,
    num_examples: examples.length,
    metrics: trainedRun.metrics,
    metric: trainedRun.metric,
    bytes: body.byteLength,
    epochMs: trainedRun.epochMs,
    backend: trainedRun.backend,
  };
}
