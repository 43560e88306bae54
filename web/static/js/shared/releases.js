// Following the server's releases: the event stream says when something
// changed, GET /v1/releases/current says what this device should run.
//
// The stream (`/v1/events?types=release,rollout`) is public server-sent
// events; EventSource reconnects by itself with Last-Event-ID, so no event
// is missed; when it gives up (an answer that is not a stream) a new one is
// opened after a pause, from the last event seen. Every release or rollout
// event (a push, a rollout change, a promotion, a rollback) makes the page
// ask for its current release (naming the page's runtime, see pageRuntime);
// only a different bundle than the one running
// is loaded. Checks never overlap:
// events that arrive during a check make one more check afterwards.

export const EVENTS_URL = "/v1/events?types=release,rollout";
const RECONNECT_MS = 5000;

/**
 * GET /v1/releases/current, past the browser's HTTP cache: the server's
 * ETag is the bundle id, so a revalidated cached answer would keep an old
 * channel (canary) after a promotion of the same bundle.
 */
export function currentRelease(device) {
  const runtime = pageRuntime();
  const query = runtime ? `?runtime=${encodeURIComponent(runtime)}` : "";
  return device.json(`/v1/releases/current${query}`, { cache: "no-store" });
}

/**
 * The runtime this page runs models on ("tfjs-wasm", "tfjs-webgl",
 * "tfjs-cpu"), or null before TF.js has a backend. The server keeps a
 * release whose parity failed on that runtime off this page (issue 23).
 */
export function pageRuntime(tf = globalThis.tf) {
  const backend = tf && typeof tf.getBackend === "function" ? tf.getBackend() : null;
  // The server knows these (fedge/wire/canary.py RUNTIMES); another backend
  // (Node's "tensorflow", say) names none rather than be refused.
  return ["webgl", "wasm", "cpu"].includes(backend) ? `tfjs-${backend}` : null;
}

export class ReleaseWatcher {
  /**
   * `device`: an enrolled api.js Device. `onRelease(release)` is awaited
   * for every current release that differs from `running()` (a bundle id).
   * `onSame(release)` gets the current release when its bundle is the one
   * running (its channel may have changed: a promotion). `onError(error)`
   * is told when a check fails.
   */
  constructor(device, { running, onRelease, onSame, onError }) {
    this.device = device;
    this.running = running;
    this.onRelease = onRelease;
    this.onSame = onSame;
    this.onError = onError;
    this.source = null;
    this.lastId = null;
    this.retry = 0;
    this.checking = null;
    this.again = false;
    this.events = 0;
  }

  start() {
    const url = this.lastId === null ? EVENTS_URL : `${EVENTS_URL}&after=${this.lastId}`;
    this.source = new EventSource(`${this.device.base || ""}${url}`); // the device's server ("": this origin)
    const changed = (event) => {
      if (event.lastEventId) this.lastId = event.lastEventId;
      this.events += 1;
      this.check();
    };
    this.source.addEventListener("release", changed);
    this.source.addEventListener("rollout", changed);
    this.source.addEventListener("error", () => {
      // CONNECTING: EventSource retries by itself. CLOSED: it gave up (an
      // answer that was not a stream, say 503 too_many_streams): open a new
      // one later, from the last event seen, and ask for the release then.
      if (this.source && this.source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.retry = setTimeout(() => {
          this.start();
          this.check();
        }, RECONNECT_MS);
      }
    });
    return this;
  }

  stop() {
    clearTimeout(this.retry);
    if (this.source) this.source.close();
    this.source = null;
  }

  /** Ask for the current release now; resolves when this and any queued check are done. */
  check() {
    if (this.checking) {
      this.again = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.again = false;
        try {
          const release = await currentRelease(this.device);
          if (release.bundle_id !== this.running()) await this.onRelease(release);
          else await this.onSame(release);
        } catch (error) {
          this.onError(error);
        }
      } while (this.again);
      this.checking = null;
    })();
    return this.checking;
  }
}
