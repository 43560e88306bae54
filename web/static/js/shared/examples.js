// The user's labelled examples, kept in this browser's IndexedDB only.
//
// Each correction is one record {inputs: {name: Float32Array} (one entry
// per model input), pixels: Float32Array (a one-input model's values, as
// records have had from the start), label: a class id or target value(s),
// added_at: ms}. The label is checked against the model's objective by the
// caller (federated.js checkLabel); here only that it is numbers. They never leave the browser: local
// training and canary evaluations read them here, and only weight deltas
// and metrics are sent.

const DB_NAME = "fedge-examples";
const STORE = "examples";
const VERSION = 1;

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export class ExampleStore {
  constructor(name = DB_NAME) {
    this.name = name;
    this.db = null;
  }

  async open() {
    if (this.db) return this;
    const req = indexedDB.open(this.name, VERSION);
    req.onupgradeneeded = () => {
      req.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
    };
    this.db = await request(req);
    return this;
  }

  async transaction(mode, work) {
    await this.open();
    const tx = this.db.transaction(STORE, mode);
    const done = new Promise((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error("transaction aborted"));
    });
    const result = await request(work(tx.objectStore(STORE)));
    await done;
    return result;
  }

  /** Store one labelled example (inputs: {name: values}, or one input's values); returns its id. */
  async add(inputs, label) {
    const numbers = Array.isArray(label) ? label : [label];
    if (!numbers.length || !numbers.every((v) => typeof v === "number" && Number.isFinite(v))) {
      throw new Error(`a label is a class id or finite target value(s), got ${JSON.stringify(label)}`);
    }
    const record = { label: Array.isArray(label) ? [...label] : label, added_at: Date.now() };
    if (Array.isArray(inputs) || ArrayBuffer.isView(inputs)) {
      record.pixels = Float32Array.from(inputs);
    } else {
      record.inputs = Object.fromEntries(Object.entries(inputs).map(([name, v]) => [name, Float32Array.from(v)]));
      const names = Object.keys(record.inputs);
      if (names.length === 1) record.pixels = record.inputs[names[0]];
    }
    return this.transaction("readwrite", (store) => store.add(record));
  }

  /** Every stored example, oldest first. */
  async all() {
    return this.transaction("readonly", (store) => store.getAll());
  }

  async count() {
    return this.transaction("readonly", (store) => store.count());
  }

  async clear() {
    return this.transaction("readwrite", (store) => store.clear());
  }
}
