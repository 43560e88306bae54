// Secure aggregation (SecAgg+) on the device, with WebCrypto: the same
// protocol and wire format as the Python devices (fedge/secagg/, described
// in docs/http-api.md "Secure rounds"), so that browsers and Python devices
// mask each other in one round.
//
// X25519 + HKDF-SHA256 for the pairwise keys, AES-GCM for the shares sent
// through the server, AES-CTR as the mask generator, Shamir over the prime
// 2^521 - 1 with BigInt. The server receives the update clipped, quantised
// and masked modulo 2^32; it learns only the round's sum.

import { FedgeError } from "./model_io.js";

const subtle = globalThis.crypto.subtle;
const PRIME = (1n << 521n) - 1n;
const SHARE_BYTES = 66;
const MAX_BITS = 24;
const MIN_DEVICES = 3;
const ENCRYPTION_INFO = utf8("fedge-secagg share encryption");
const MASK_INFO = utf8("fedge-secagg pairwise mask");
// PKCS #8 of an X25519 key is this prefix and the 32 raw bytes (RFC 8410).
const PKCS8_PREFIX_BYTES = 16;

export class SecAggError extends FedgeError {}

function utf8(text) {
  return new TextEncoder().encode(text);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

export function fromBase64(text, size = null) {
  if (typeof text !== "string") throw new SecAggError("bad_secagg_message", "bytes must be a base64 string");
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  if (size !== null && bytes.length !== size) throw new SecAggError("bad_secagg_message", `expected ${size} bytes, got ${bytes.length}`);
  return bytes;
}

function bigFromBytes(bytes) {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return value;
}

function bytesFromBig(value, size) {
  const out = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(value & 0xffn);
    value >>= 8n;
  }
  return out;
}

function randomBelowPrime() {
  // 80 random bytes reduced modulo a 521-bit prime: the bias is below 2^-110.
  return bigFromBytes(globalThis.crypto.getRandomValues(new Uint8Array(80))) % PRIME;
}

/** Shamir shares of a 32-byte secret at the points xs; any `threshold` rebuild it. */
export function split(secret, threshold, xs) {
  const coefficients = [bigFromBytes(secret)];
  for (let i = 1; i < threshold; i++) coefficients.push(randomBelowPrime());
  const shares = new Map();
  for (const x of xs) {
    let y = 0n;
    for (let i = coefficients.length - 1; i >= 0; i--) y = (y * BigInt(x) + coefficients[i]) % PRIME;
    shares.set(x, bytesFromBig(y, SHARE_BYTES));
  }
  return shares;
}

/** The round's parameters, as the server derives them (fedge/secagg/params.py). */
export function chooseParams(devices, dropout, length, clip) {
  if (devices < MIN_DEVICES) throw new SecAggError("secagg_refused", `a secure round needs ${MIN_DEVICES} devices`);
  const wanted = 2 * Math.ceil(1.5 * Math.log2(devices));
  const neighbours = wanted >= devices - 1 ? devices - 1 : wanted;
  const threshold = Math.max(Math.floor(neighbours / 2) + 1, neighbours - Math.floor(dropout * neighbours));
  const bits = Math.min(MAX_BITS, 32 - Math.ceil(Math.log2(devices)));
  return { devices, neighbours, threshold, bits, clip, length, dropout };
}

function compareBytes(a, b) {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

const byCodePoint = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** This device's neighbours: a ring over SHA-256(seed || id), k/2 each side. */
export async function neighboursOf(devices, seed, neighbours, self) {
  if (neighbours >= devices.length - 1) return devices.filter((d) => d !== self).sort(byCodePoint);
  const keyed = await Promise.all(devices.map(async (d) => [new Uint8Array(await subtle.digest("SHA-256", concat(seed, utf8(d)))), d]));
  const ring = keyed.sort((a, b) => compareBytes(a[0], b[0])).map(([, d]) => d);
  const at = ring.indexOf(self);
  const half = neighbours / 2;
  const around = new Set();
  for (let step = -half; step <= half; step++) if (step !== 0) around.add(ring[(((at + step) % ring.length) + ring.length) % ring.length]);
  return [...around].sort(byCodePoint);
}

async function agree(privateKey, peerPublic, context, info) {
  const peer = await subtle.importKey("raw", peerPublic, { name: "X25519" }, false, []);
  const shared = await subtle.deriveBits({ name: "X25519", public: peer }, privateKey, 256);
  if (new Uint8Array(shared).every((b) => b === 0)) throw new SecAggError("secagg_refused", "a low-order public key");
  const material = await subtle.importKey("raw", shared, "HKDF", false, ["deriveBits"]);
  return new Uint8Array(await subtle.deriveBits({ name: "HKDF", hash: "SHA-256", salt: context, info }, material, 256));
}

/** `length` uint32 values of AES-256-CTR stream from `seed` (zero counter block). */
export async function mask(seed, length) {
  const key = await subtle.importKey("raw", seed, "AES-CTR", false, ["encrypt"]);
  const stream = await subtle.encrypt({ name: "AES-CTR", counter: new Uint8Array(16), length: 128 }, key, new Uint8Array(4 * length));
  return new Uint32Array(stream);
}

function roundHalfEven(value) {
  const rounded = Math.round(value);
  return Math.abs(value % 1) === 0.5 ? 2 * Math.round(value / 2) : rounded;
}

/** Clip each value to [-clip, clip] and map it to an integer in [0, 2^bits - 1]. */
export function quantise(values, params) {
  const levels = 2 ** params.bits - 1;
  const out = new Uint32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const clipped = Math.min(params.clip, Math.max(-params.clip, values[i]));
    out[i] = roundHalfEven(((clipped + params.clip) / (2 * params.clip)) * levels);
  }
  return out;
}

function associated(context, sender, receiver) {
  // As Python's json.dumps([sender, receiver]): a space after the comma.
  return concat(context, utf8(`[${JSON.stringify(sender)}, ${JSON.stringify(receiver)}]`));
}

/** One device's side of one secure round (see fedge/secagg/device.py). */
export class SecAggDevice {
  static async create(deviceId, roundId) {
    const device = new SecAggDevice(deviceId, roundId);
    device.encryption = await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"]);
    device.masking = await subtle.generateKey({ name: "X25519" }, true, ["deriveBits"]);
    device.seed = globalThis.crypto.getRandomValues(new Uint8Array(32));
    return device;
  }

  constructor(deviceId, roundId) {
    this.deviceId = deviceId;
    this.roundId = roundId;
    this.context = utf8(`fedge-secagg/v1/round/${roundId}`);
    this.held = new Map();
    this.answered = false;
  }

  async advertise() {
    const raw = async (key) => toBase64(new Uint8Array(await subtle.exportKey("raw", key.publicKey)));
    return { encryption_key: await raw(this.encryption), mask_key: await raw(this.masking) };
  }

  async shareKeys(directory) {
    const { params, devices } = directory;
    if (directory.round_id !== this.roundId) throw new SecAggError("secagg_refused", "the directory is for another round");
    if (!devices.includes(this.deviceId)) throw new SecAggError("secagg_refused", "the directory does not list this device");
    const expected = chooseParams(devices.length, params.dropout, params.length, params.clip);
    for (const [name, value] of Object.entries(expected)) {
      if (params[name] !== value) throw new SecAggError("secagg_refused", `params.${name} does not follow from the round's size`);
    }
    this.params = expected;
    this.neighbours = await neighboursOf(devices, fromBase64(directory.graph_seed, 32), params.neighbours, this.deviceId);
    const keys = directory.keys;
    if (Object.keys(keys).length !== this.neighbours.length || this.neighbours.some((v) => !(v in keys))) {
      throw new SecAggError("secagg_refused", "the directory's keys are not exactly this device's neighbours");
    }
    this.keys = Object.fromEntries(this.neighbours.map((v) => [v, { encryption: fromBase64(keys[v].encryption_key, 32), mask: fromBase64(keys[v].mask_key, 32) }]));
    const sorted = [...devices].sort(byCodePoint);
    const points = this.neighbours.map((v) => sorted.indexOf(v) + 1);
    const pkcs8 = new Uint8Array(await subtle.exportKey("pkcs8", this.masking.privateKey));
    const keyShares = split(pkcs8.subarray(PKCS8_PREFIX_BYTES), expected.threshold, points);
    const seedShares = split(this.seed, expected.threshold, points);
    const shares = [];
    for (const [i, v] of this.neighbours.entries()) {
      const secret = await agree(this.encryption.privateKey, this.keys[v].encryption, this.context, ENCRYPTION_INFO);
      const key = await subtle.importKey("raw", secret, "AES-GCM", false, ["encrypt"]);
      const iv = globalThis.crypto.getRandomValues(new Uint8Array(12));
      const plaintext = concat(keyShares.get(points[i]), seedShares.get(points[i]));
      const sealed = await subtle.encrypt({ name: "AES-GCM", iv, additionalData: associated(this.context, this.deviceId, v) }, key, plaintext);
      shares.push({ receiver: v, ciphertext: toBase64(concat(iv, new Uint8Array(sealed))) });
    }
    return { shares };
  }

  /** The masked input's bytes (uint32 little-endian) for the flat float values. */
  async maskedInput(inbox, values) {
    const params = this.params;
    if (values.length !== params.length) throw new SecAggError("secagg_refused", `the update has ${values.length} values, the round ${params.length}`);
    for (const { sender, ciphertext } of inbox.shares) {
      if (!this.neighbours.includes(sender)) throw new SecAggError("secagg_refused", `a share from ${sender}, who is not a neighbour`);
      const secret = await agree(this.encryption.privateKey, this.keys[sender].encryption, this.context, ENCRYPTION_INFO);
      const key = await subtle.importKey("raw", secret, "AES-GCM", false, ["decrypt"]);
      const sealed = fromBase64(ciphertext);
      let plain;
      try {
        plain = new Uint8Array(await subtle.decrypt({ name: "AES-GCM", iv: sealed.subarray(0, 12), additionalData: associated(this.context, sender, this.deviceId) }, key, sealed.subarray(12)));
      } catch {
        throw new SecAggError("secagg_refused", `the share from ${sender} does not decrypt`);
      }
      if (plain.length !== 2 * SHARE_BYTES) throw new SecAggError("secagg_refused", "a share has the wrong size");
      this.held.set(sender, { key: plain.slice(0, SHARE_BYTES), seed: plain.slice(SHARE_BYTES) });
    }
    if (this.held.size < params.threshold) throw new SecAggError("secagg_refused", `${this.held.size} neighbours shared, the threshold is ${params.threshold}`);
    const masked = quantise(values, params);
    const add = (stream, sign) => {
      for (let i = 0; i < masked.length; i++) masked[i] = (masked[i] + sign * stream[i]) >>> 0;
    };
    add(await mask(this.seed, params.length), 1);
    for (const v of this.held.keys()) {
      const seed = await agree(this.masking.privateKey, this.keys[v].mask, this.context, MASK_INFO);
      add(await mask(seed, params.length), this.deviceId < v ? 1 : -1);
    }
    return new Uint8Array(masked.buffer);
  }

  unmask(request) {
    if (this.answered) throw new SecAggError("secagg_refused", "this device has already answered an unmask request");
    const survivors = new Set(request.survivors);
    const dropped = new Set(request.dropped);
    const both = request.survivors.find((d) => dropped.has(d));
    if (both !== undefined) throw new SecAggError("secagg_refused", `the server asks for both shares of ${both}: refused`);
    if (!survivors.has(this.deviceId)) throw new SecAggError("secagg_refused", "the request says this device dropped");
    if (survivors.size < this.params.threshold) throw new SecAggError("secagg_refused", "fewer survivors than the threshold");
    this.answered = true;
    const seed_shares = {};
    const key_shares = {};
    for (const [v, pair] of this.held) {
      if (survivors.has(v)) seed_shares[v] = toBase64(pair.seed);
      else if (dropped.has(v)) key_shares[v] = toBase64(pair.key);
    }
    return { seed_shares, key_shares };
  }
}

/** The deltas as one vector in the task's order, L2-clipped to `l2_clip` if given. */
export function flatClipped(deltas, secure) {
  const byName = new Map(deltas.map((d) => [d.name, d.data]));
  const total = secure.weights.reduce((n, name) => n + byName.get(name).length, 0);
  const flat = new Float64Array(total);
  let offset = 0;
  for (const name of secure.weights) {
    flat.set(byName.get(name), offset);
    offset += byName.get(name).length;
  }
  if (secure.l2_clip != null) {
    const norm = Math.sqrt(flat.reduce((s, x) => s + x * x, 0));
    const limit = 0.999 * secure.l2_clip;
    if (norm > limit) for (let i = 0; i < flat.length; i++) flat[i] *= limit / norm;
  }
  return flat;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Take part in a secure round (task.secure_aggregation) with the deltas
 * ([{name, data}]): the four stages over HTTP, asking again while a
 * stage's message is not ready. Resolves to {round_id, bytes}.
 */
export async function secureRound({ device, task, deltas, onProgress = () => {}, timeoutMs = 120000 }) {
  const secure = task.secure_aggregation;
  const url = secure.url;
  const values = flatClipped(deltas, secure);
  const agent = await SecAggDevice.create(device.id, task.round_id);
  const deadline = Date.now() + timeoutMs;
  let bytes = 0;
  const post = async (path, body) => {
    const text = JSON.stringify(body);
    bytes += text.length;
    return device.postJson(`${url}/${path}`, body);
  };
  const wait = async (path) => {
    for (;;) {
      const response = await device.authed(`${url}/${path}`);
      const body = await response.json();
      if (response.status === 200) return body;
      if (body.stage === "abandoned" || body.stage === "failed" || Date.now() > deadline) {
        throw new SecAggError("secure_round_ended", `round ${task.round_id} is ${body.stage}`);
      }
      await sleep(1000 * (body.retry_after_s ?? 0.2));
    }
  };
  onProgress("keys", "secure round: advertising keys");
  await post("keys", await agent.advertise());
  const directory = await wait("directory");
  if (directory.params.clip !== secure.clip || directory.params.dropout !== secure.dropout) {
    throw new SecAggError("secagg_refused", "the round's params are not the ones its task announced");
  }
  onProgress("shares", `secure round: sharing keys with ${directory.params.neighbours} neighbours`);
  await post("shares", await agent.shareKeys(directory));
  const inbox = await wait("inbox");
  onProgress("masked", "secure round: uploading the masked update");
  const masked = await agent.maskedInput(inbox, values);
  bytes += masked.byteLength;
  await device.authed(`${url}/masked`, { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: masked });
  const request = await wait("unmask");
  onProgress("unmask", "secure round: answering the unmask request");
  await post("unmask", agent.unmask(request));
  return { round_id: task.round_id, bytes };
}
