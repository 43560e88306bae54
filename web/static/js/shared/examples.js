// The user's labelled examples, kept in this browser's IndexedDB only.
//
// Each correction is one record {pixels: Float32Array (the drawing's
// inputs), label: int, added_at: ms}. They never leave the browser: local
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

  /** Store one labelled example; returns its id. */
  async add(pixels, label) {
    if (!Number.isInteger(label) || label < 0) throw new Error(`label must be a class id, got ${label}`);
    const record = { pixels: Float32Array.from(pixels), label, added_at: Date.now() };
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
