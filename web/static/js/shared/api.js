// The page as a fedge device: its enrolment, and the HTTP calls it makes.
//
// The page enrols once (POST /v1/devices, platform "browser") and keeps its
// device id and bearer token in localStorage, so a reload is the same device.
// Every call that needs the token goes through `authed`. Errors from the
// server are thrown as ApiError with its stable `code` and human `message`.

const STORAGE_KEY = "fedge.device";
// A page keeps its enrolment in localStorage; Node (the SDK there) has none.
const storage = () => globalThis.localStorage ?? null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${message} (${code}, HTTP ${status})`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

async function failure(response) {
  let code = "http_error";
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    code = body.code || code;
    message = body.message || message;
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, code, message);
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(buffer) {
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Device {
  constructor(base = "") {
    this.base = base;
    this.id = null;
    this.token = null;
  }

  /** Enrol, or take back the enrolment this browser made before. */
  async enrol(enrolmentKey = null) {
    const saved = JSON.parse(storage()?.getItem(STORAGE_KEY) || "null");
    if (saved && saved.base === this.base) {
      this.id = saved.id;
      this.token = saved.token;
      const check = await fetch(`${this.base}/v1/devices/${this.id}`, { headers: this.headers() });
      if (check.ok) return this.id;
      storage()?.removeItem(STORAGE_KEY); // the server forgot it (a new data directory)
    }
    const body = { platform: "browser", request_id: randomId() };
    if (enrolmentKey) body.enrolment_key = enrolmentKey;
    const response = await fetch(`${this.base}/v1/devices`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await failure(response);
    const enrolment = await response.json();
    this.id = enrolment.device_id;
    this.token = enrolment.token;
    storage()?.setItem(STORAGE_KEY, JSON.stringify({ base: this.base, id: this.id, token: this.token }));
    return this.id;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  /** A request with the device token; the Response when ok (or 304), else ApiError. */
  async authed(path, options = {}) {
    const response = await fetch(`${this.base}${path}`, {
      ...options,
      headers: this.headers(options.headers || {}),
    });
    if (!response.ok && response.status !== 304) throw await failure(response);
    return response;
  }

  async json(path, options = {}) {
    return (await this.authed(path, options)).json();
  }

  async postJson(path, body) {
    return this.json(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  /** The release meant for this device: {version, bundle_id, name, channel, files}. */
  async currentRelease() {
    return this.json("/v1/releases/current");
  }

  /** A bundle file's bytes, checked against its sha256 from the manifest. */
  async bundleFile(bundleId, path, sha256) {
    const response = await this.authed(`/v1/bundles/${bundleId}/${path}`);
    const bytes = await response.arrayBuffer();
    const actual = await sha256Hex(bytes);
    if (actual !== sha256) {
      throw new ApiError(response.status, "checksum_mismatch", `${path}: sha256 ${actual.slice(0, 12)}, expected ${sha256.slice(0, 12)}`);
    }
    return bytes;
  }

  /** Ask for work in the open round: {task} or {task: null, reason, retry_after_s}. */
  async task(conditions = { idle: true, charging: true, unmetered: true }) {
    return this.postJson("/v1/tasks", conditions);
  }

  /** A checkpoint's bytes; its id is their sha256, checked here. */
  async checkpoint(url, id) {
    const response = await this.authed(url);
    const bytes = await response.arrayBuffer();
    if ((await sha256Hex(bytes)) !== id) {
      throw new ApiError(response.status, "checkpoint_mismatch", `checkpoint ${id.slice(0, 12)}: bytes do not match its id`);
    }
    return bytes;
  }

  /** Upload an update (safetensors bytes); returns the receipt. */
  async upload(url, bytes) {
    return this.json(url, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: bytes,
    });
  }

  /** Report a canary evaluation (numbers only) of release `version`. */
  async reportEvaluation(version, evaluation) {
    return this.postJson(`/v1/releases/${version}/evaluations`, evaluation);
  }

  /** Report the live model's health (numbers only) on release `version`; the receipt sets the pace. */
  async reportHealth(version, report) {
    return this.postJson(`/v1/releases/${version}/health`, report);
  }
}
