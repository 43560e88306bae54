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

const EPSILON = 1e-7;
const LOSSES = {
  sparse_categorical_crossentropy: "sparseCategoricalCrossentropy",
  categorical_crossentropy: "categoricalCrossentropy",
};

export class FederatedError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

/** The model's objective from its manifest: the training loss and the headline metric. */
export function objectiveOf(manifest) {
  const training = manifest.artifacts?.tflite?.training || manifest.training || null;
  const loss = training?.loss || (manifest.labels ? "sparse_categorical_crossentropy" : null);
  if (!(loss in LOSSES)) {
    throw new FederatedError("unsupported_loss", `the browser device trains classifiers; this model's loss is ${loss}`);
  }
  return { loss, fromLogits: Boolean(training?.from_logits), metric: "accuracy" };
}

function inputShape(manifest) {
  const shape = manifest.inputs?.[0]?.shape;
  if (!shape) throw new FederatedError("bad_manifest", "the manifest names no input shape");
  return shape.slice(1);
}

function numClasses(manifest) {
  const shape = manifest.outputs?.[0]?.shape;
  return shape ? shape[shape.length - 1] : manifest.labels.length;
}

/** The examples as tensors: inputs [n, ...shape] and labels as the loss takes them. */
export function exampleTensors(tf, manifest, objective, examples) {
  const shape = inputShape(manifest);
  const size = shape.reduce((a, b) => a * b, 1);
  const pixels = new Float32Array(examples.length * size);
  examples.forEach((example, i) => {
    if (example.pixels.length !== size) {
      throw new FederatedError("bad_example", `an example has ${example.pixels.length} inputs, the model takes ${size}`);
    }
    pixels.set(example.pixels, i * size);
  });
  const labels = examples.map((example) => example.label);
  return tf.tidy(() => {
    const xs = tf.tensor(pixels, [examples.length, ...shape], "float32");
    const ids = tf.tensor2d(labels, [labels.length, 1], "float32");
    const ys = objective.loss === "categorical_crossentropy"
      ? tf.oneHot(tf.tensor1d(labels, "int32"), numClasses(manifest)).toFloat()
      : ids;
    return { xs, ys };
  });
}

/**
 * Loss and accuracy of `model` on the examples, computed as
 * fedge.task.objective.Objective does (float64, probabilities clipped to 1e-7),
 * and the inference time per example in ms.
 */
export function evaluate(tf, model, xs, labels, objective) {
  const started = performance.now();
  const output = tf.tidy(() => model.predict(xs, { batchSize: 256 }));
  const values = output.dataSync();
  const milliseconds = performance.now() - started;
  const classes = output.shape[output.shape.length - 1];
  output.dispose();
  const n = labels.length;
  let lossSum = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const row = Array.from(values.subarray(i * classes, (i + 1) * classes));
    let logp;
    if (objective.fromLogits) {
      const top = Math.max(...row);
      const logSum = Math.log(row.reduce((s, v) => s + Math.exp(v - top), 0));
      logp = row.map((v) => v - top - logSum);
    } else {
      const total = Math.max(row.reduce((s, v) => s + v, 0), EPSILON);
      logp = row.map((v) => Math.log(Math.min(Math.max(v / total, EPSILON), 1 - EPSILON)));
    }
    lossSum -= logp[labels[i]];
    const best = row.indexOf(Math.max(...row));
    if (best === labels[i]) correct += 1;
  }
  return { loss: lossSum / n, accuracy: correct / n, latencyMs: milliseconds / n };
}

function lossFunction(tf, objective) {
  if (!objective.fromLogits) return LOSSES[objective.loss];
  const sparse = objective.loss === "sparse_categorical_crossentropy";
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
      const metrics = {
        accuracy: after.accuracy,
        accuracy_before: before.accuracy,
        loss: losses.reduce((a, b) => a + b, 0) / losses.length, // the mean training loss, as the Python devices send
        loss_after: after.loss,
        loss_before: before.loss,
      };
      return { trained: readWeights(copy, manifest.weights), metrics, epochMs, backend: tf.getBackend() };
    } finally {
      xs.dispose();
      ys.dispose();
      optimizer.dispose();
      copy.dispose();
    }
  });
}

/** One delta per manifest weight, in the manifest's order: new - base (float32). */
export function deltas(manifest, base, trained) {
  return manifest.weights.map(({ name, shape }) => {
    const before = base.get(name).data;
    const after = trained.get(name);
    const data = new Float32Array(before.length);
    for (let i = 0; i < before.length; i++) data[i] = after[i] - before[i];
    return { name, shape, data };
  });
}

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
    bytes: body.byteLength,
    epochMs: trainedRun.epochMs,
    backend: trainedRun.backend,
  };
}
