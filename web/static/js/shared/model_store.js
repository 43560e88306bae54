// The release's TF.js model, kept in IndexedDB and built from memory.
//
// A cache entry is one bundle as the page needs it: its manifest.json bytes
// and the bytes of the TF.js files the manifest lists, keyed by release
// version and bundle id (the sha256 of manifest.json). Nothing is trusted
// twice: the manifest is checked against the bundle id and every file
// against the manifest's sha256 when it is downloaded (before it is cached)
// and again when it is read back (before it is used). A cache entry that
// fails the check is deleted and the bundle downloaded again.
//
// The model is built with `tf.io.fromMemory` from those bytes, never loaded
// by URL: what runs is exactly what was verified.

import { sha256Hex } from "./api.js";
import { registerNormalization } from "./normalization_layer.js";

// TF.js is a page's global (tf.min.js) or given by the SDK's user (Node):
// read when needed, so this module loads before TF.js does.
const globalTf = () => globalThis.tf;

const DB_NAME = "fedge-models";
const DB_VERSION = 1;
const STORE = "bundles";
const KEEP = 2; // cached bundles kept: the one in use and the one before (a rollback)

export class ModelIntegrityError extends Error {
  constructor(message) {
    super(message);
    this.name = "ModelIntegrityError";
    this.code = "bundle_integrity"; // as the SDK's typed errors: a stable code
  }
}

export function cacheKey(version, bundleId) {
  return `${version}:${bundleId}`;
}

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error("IndexedDB transaction aborted"));
  });
}

export class ModelStore {
  constructor(db) {
    this.db = db;
  }

  static async open() {
    const req = indexedDB.open(DB_NAME, DB_VERSION);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(STORE, { keyPath: "key" });
    };
    return new ModelStore(await request(req));
  }

  async get(version, bundleId) {
    const tx = this.db.transaction(STORE, "readonly");
    return (await request(tx.objectStore(STORE).get(cacheKey(version, bundleId)))) || null;
  }

  /** Store a verified bundle; keep only the newest KEEP entries. */
  async put(version, bundleId, manifestBytes, files) {
    const tx = this.db.transaction(STORE, "readwrite");
    const store = tx.objectStore(STORE);
    store.put({ key: cacheKey(version, bundleId), version, bundleId, manifestBytes, files, savedAt: Date.now() });
    const all = await request(store.getAll());
    all.sort((a, b) => b.savedAt - a.savedAt);
    for (const old of all.slice(KEEP)) store.delete(old.key);
    await finished(tx);
  }

  async delete(version, bundleId) {
    const tx = this.db.transaction(STORE, "readwrite");
    tx.objectStore(STORE).delete(cacheKey(version, bundleId));
    await finished(tx);
  }
}

/** The manifest's TF.js artifact: {format, entry, files: [{path, sha256, bytes}]}. */
export function tfjsArtifact(manifest) {
  const artifact = manifest.artifacts && manifest.artifacts.tfjs;
  if (!artifact || !artifact.entry || !Array.isArray(artifact.files)) {
    throw new ModelIntegrityError("this release's bundle has no TF.js model");
  }
  return artifact;
}

/** Check bytes already in hand: the manifest against the bundle id, each file against the manifest. */
export async function verifyBundle(bundleId, manifestBytes, files) {
  if ((await sha256Hex(manifestBytes)) !== bundleId) {
    throw new ModelIntegrityError(`manifest.json does not match bundle ${bundleId.slice(0, 12)}`);
  }
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  for (const file of tfjsArtifact(manifest).files) {
    const bytes = files[file.path];
    if (!bytes) throw new ModelIntegrityError(`${file.path} is missing`);
    if ((await sha256Hex(bytes)) !== file.sha256) {
      throw new ModelIntegrityError(`${file.path} does not match its sha256 in the manifest`);
    }
  }
  return manifest;
}

/**
 * The bundle's manifest and TF.js files, from the cache when it holds them
 * (checked again), else downloaded with the device's token (each file
 * checked by `device.bundleFile`) and cached.
 * Returns {manifest, files, from: 'cache'|'network'}.
 */
export async function bundleFiles(store, device, release) {
  const { version, bundle_id: bundleId } = release;
  const cached = store ? await store.get(version, bundleId).catch(() => null) : null;
  if (cached) {
    try {
      const manifest = await verifyBundle(bundleId, cached.manifestBytes, cached.files);
      return { manifest, files: cached.files, from: "cache" };
    } catch (error) {
      console.warn(`fedge: cached release ${version} failed its check (${error.message}); downloading it again`);
      await store.delete(version, bundleId);
    }
  }
  const manifestBytes = await device.bundleFile(bundleId, "manifest.json", bundleId);
  const manifest = JSON.parse(new TextDecoder().decode(manifestBytes));
  const files = {};
  for (const file of tfjsArtifact(manifest).files) {
    files[file.path] = await device.bundleFile(bundleId, file.path, file.sha256);
  }
  await verifyBundle(bundleId, manifestBytes, files);
  if (store) await store.put(version, bundleId, manifestBytes, files);
  return { manifest, files, from: "network" };
}

function directoryOf(path) {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash + 1);
}

function concat(buffers) {
  const total = buffers.reduce((sum, b) => sum + b.byteLength, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const b of buffers) {
    out.set(new Uint8Array(b), offset);
    offset += b.byteLength;
  }
  return out.buffer;
}

/** The model artifacts TF.js expects, from model.json and its shards (in their manifest order). */
export function modelArtifacts(manifest, files) {
  const artifact = tfjsArtifact(manifest);
  const modelJson = JSON.parse(new TextDecoder().decode(files[artifact.entry]));
  const base = directoryOf(artifact.entry);
  const weightSpecs = [];
  const shards = [];
  for (const group of modelJson.weightsManifest || []) {
    weightSpecs.push(...group.weights);
    for (const path of group.paths) {
      const bytes = files[base + path];
      if (!bytes) throw new ModelIntegrityError(`model.json names ${path}, which the manifest does not list`);
      shards.push(bytes);
    }
  }
  return {
    modelTopology: modelJson.modelTopology,
    format: modelJson.format,
    generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy,
    signature: modelJson.signature,
    userDefinedMetadata: modelJson.userDefinedMetadata,
    modelInitializer: modelJson.modelInitializer,
    trainingConfig: modelJson.trainingConfig,
    weightSpecs,
    weightData: concat(shards),
  };
}

/** Build the model (a layers model, else a graph model) on the current backend. */
export async function buildModel(manifest, files, tf = globalTf()) {
  const artifacts = modelArtifacts(manifest, files);
  const handler = tf.io.fromMemory(artifacts);
  if (artifacts.format === "graph-model") return tf.loadGraphModel(handler);
  registerNormalization(tf);
  return tf.loadLayersModel(handler);
}
