// FedgeObserver: what a dashboard reads from a fedge server, and its event
// stream. The SDK's counterpart of FedgeClient for a page that watches the
// server rather than acting as a device (the dashboard is built on it).
//
//   const observer = FedgeObserver.connect("https://SERVER", { adminToken });
//   await observer.rounds(30); await observer.stats();
//   await observer.releases(20); await observer.release("3"); await observer.health("3");
//   const stream = observer.events({ types: ["round", "release"], onEvent, onState });
//   stream.close();
//
// The reads are public (GET /v1/rounds, /v1/stats, /v1/releases...). The
// stream is public too, but a server gives an address only a share of its
// stream slots and keeps part of them for devices and the admin. Without a
// token it is an EventSource, as any page can open; with an admin token it
// is a `fetch` whose `Authorization` header makes it count as the admin's
// (EventSource cannot send headers), resuming with Last-Event-ID as
// EventSource does. The token is sent on the stream only.

import { ApiError } from "./api.js";

const RETRY_MS = 1_000; // after a stream ends (the server closes each after event_stream_s)
const REFUSED_RETRY_MS = 5_000; // after a refusal (429/503 too_many_streams) or a network failure

async function failure(response) {
  let code = "http_error";
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    code = body.code || code;
    message = body.message || body.error || message;
  } catch {
    // not JSON: keep the status text
  }
  return new ApiError(response.status, code, message);
}

/** Split server-sent events out of text chunks: {id, type, data} per message. */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.reset();
  }
  reset() {
    this.id = null;
    this.type = "message";
    this.data = [];
  }
  /** Feed a chunk of text; returns the messages it completed. */
  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // an unfinished line waits for the next chunk
    const messages = [];
    for (const line of lines) {
      if (line === "") {
        if (this.data.length) messages.push({ id: this.id, type: this.type, data: this.data.join("\n") });
        this.type = "message";
        this.data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a comment: the keep-alive
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") this.id = value;
      else if (field === "event") this.type = value;
      else if (field === "data") this.data.push(value);
    }
    return messages;
  }
}

export class FedgeObserver {
  constructor(base, adminToken) {
    this.base = base;
    this.adminToken = adminToken || null;
  }

  /** No request is made: the reads are public and the token is checked by the stream. */
  static connect(serverUrl = "", { adminToken = null } = {}) {
    return new FedgeObserver(String(serverUrl).replace(/\/+$/, ""), adminToken);
  }

  async get(path) {
    let response;
    try {
      response = await fetch(`${this.base}${path}`, { headers: { Accept: "application/json" }, cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, "server_unreachable", `could not reach the fedge server: ${error.message}`);
    }
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  async rounds(limit = 30) {
    return (await this.get(`/v1/rounds?limit=${Number(limit)}`)).rounds;
  }
  stats() {
    return this.get("/v1/stats");
  }
  releases(limit = 20) {
    return this.get(`/v1/releases?limit=${Number(limit)}`);
  }
  release(version) {
    return this.get(`/v1/releases/${encodeURIComponent(version)}`);
  }
  health(version) {
    return this.get(`/v1/releases/${encodeURIComponent(version)}/health`);
  }

  /**
   * Follow the event stream until `close()`: `onEvent({id, type, data})`
   * per event (data parsed from JSON), `onState(state, error)` with
   * "connecting", "live" (connected: fetch anything missed now),
   * "reconnecting" or "offline" (refused or unreachable; tried again later;
   * `error` an ApiError, e.g. 401 for a wrong admin token). Reconnects by
   * itself, from the last event seen.
   */
  events({ types = null, onEvent = () => {}, onState = () => {} } = {}) {
    const query = types ? `?types=${types.map(encodeURIComponent).join(",")}` : "";
    const url = `${this.base}/v1/events${query}`;
    const deliver = (message) => {
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return; // not an event of ours
      }
      onEvent({ id: Number(message.id), type: message.type, data });
    };
    if (!this.adminToken) return eventSourceStream(url, types, deliver, onState);
    return fetchStream(url, this.adminToken, deliver, onState);
  }
}

function eventSourceStream(url, types, deliver, onState) {
  let source = null;
  let closed = false;
  let timer = null;
  const open = () => {
    onState("connecting");
    source = new EventSource(url);
    source.addEventListener("open", () => onState("live"));
    source.addEventListener("error", () => {
      // CONNECTING: EventSource tries again by itself; CLOSED: it gave up
      // (a refusal such as 429/503 too_many_streams), so open a new one later.
      if (source.readyState === EventSource.CLOSED) {
        onState("offline", null);
        if (!closed) timer = setTimeout(open, REFUSED_RETRY_MS);
      } else {
        onState("reconnecting");
      }
    });
    for (const type of types ?? ["message"]) {
      source.addEventListener(type, (message) => deliver({ id: message.lastEventId, type: message.type, data: message.data }));
    }
  };
  open();
  return {
    authenticated: false,
    close() {
      closed = true;
      clearTimeout(timer);
      source?.close();
    },
  };
}

function fetchStream(url, token, deliver, onState) {
  let lastId = null;
  let closed = false;
  let timer = null;
  let abort = null;
  const again = (ms) => {
    if (!closed) timer = setTimeout(open, ms);
  };
  const open = async () => {
    onState("connecting");
    abort = new AbortController();
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token}` };
    if (lastId != null) headers["Last-Event-ID"] = lastId;
    let response;
    try {
      response = await fetch(url, { headers, cache: "no-store", signal: abort.signal });
    } catch (error) {
      if (closed) return;
      onState("offline", new ApiError(0, "server_unreachable", `could not reach the fedge server: ${error.message}`));
      return again(REFUSED_RETRY_MS);
    }
    if (!response.ok) {
      onState("offline", await failure(response));
      return again(REFUSED_RETRY_MS);
    }
    onState("live");
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const reader = response.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        for (const message of parser.push(decoder.decode(value, { stream: true }))) {
          if (message.id) lastId = message.id;
          deliver(message);
        }
      }
    } catch {
      // aborted, or the connection dropped: reconnect below unless closed
    }
    if (closed) return;
    onState("reconnecting");
    again(RETRY_MS);
  };
  void open();
  return {
    authenticated: true,
    close() {
      closed = true;
      clearTimeout(timer);
      abort?.abort();
    },
  };
}
