// Which TF.js backend runs the model: webgl, wasm or cpu, chosen by the user.
//
// `tf` (tf.min.js) and its wasm backend (tf-backend-wasm.min.js, which adds
// `tf.wasm`) are classic scripts served by fedge itself under /vendor/. The
// wasm backend finds its .wasm binaries through `setWasmPaths`, which must be
// called before the backend first starts. A backend that cannot start (no
// WebGL context, a .wasm file that does not load) falls back along
// FALLBACK, and the caller is told why, to show it.
//
// Tensors follow a backend switch: TF.js moves a tensor's data to the new
// backend the first time it is used there, so a model loaded on one backend
// keeps working after `useBackend` picks another.

const tf = globalThis.tf;

export const BACKENDS = ["webgl", "wasm", "cpu"];
export const DEFAULT_BACKEND = "wasm";
const FALLBACK = { webgl: ["wasm", "cpu"], wasm: ["cpu"], cpu: [] };
const WASM_PATH = "/vendor/tfjs-backend-wasm/";

let wasmPathsSet = false;

function prepare(name) {
  if (name === "wasm" && !wasmPathsSet) {
    if (!tf.wasm) throw new Error("the wasm backend script did not load");
    tf.wasm.setWasmPaths(WASM_PATH);
    wasmPathsSet = true;
  }
}

async function start(name) {
  prepare(name);
  // setBackend resolves false (or throws) when the backend cannot initialise.
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`${name} did not initialise`);
  await tf.ready();
  return tf.getBackend();
}

/**
 * Run on `name`, else on the first of its fallbacks that starts.
 * Returns {backend, requested, failures: [{backend, error}]}.
 */
export async function useBackend(name) {
  if (!BACKENDS.includes(name)) throw new Error(`unknown backend ${name}`);
  const failures = [];
  for (const candidate of [name, ...FALLBACK[name]]) {
    try {
      const backend = await start(candidate);
      return { backend, requested: name, failures };
    } catch (error) {
      failures.push({ backend: candidate, error: String(error && error.message ? error.message : error) });
    }
  }
  throw new Error(`no TF.js backend could start: ${failures.map((f) => `${f.backend}: ${f.error}`).join("; ")}`);
}

/** A one-line note for the page when the backend asked for is not the one running. */
export function fallbackNote(result) {
  if (!result.failures.length) return "";
  const why = result.failures.map((f) => `${f.backend} could not start (${f.error})`).join("; ");
  return `${why}: running on ${result.backend}.`;
}

export function currentBackend() {
  return tf.getBackend();
}
