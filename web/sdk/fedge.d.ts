// Types of the fedge web SDK (fedge.js). See README.md.

/** A failure with a stable code: bad input, a label out of range, a tampered bundle, an unreachable server... */
export class FedgeError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown>;
}
/** A federated step that cannot go on (no examples, a loss the browser cannot train with, a graph model). */
export class FederatedError extends FedgeError {}
/** The server's own JSON error: `code` and the HTTP `status`. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
}

export const API_VERSION: string;
export const SDK_VERSION: string;

export type Rows = number[][] | number[] | Float32Array;

export interface InputInfo {
  name: string;
  index: number;
  shape: number[];
  dtype: string;
  size: number | null;
  kind: "vector" | "image" | "sequence" | "unsupported";
  features?: string[];
  range: [number, number] | null;
  height?: number;
  width?: number;
  channels?: number;
  scale?: [number, number];
  length?: number;
  /** A sequence input's vocabulary (id = index: 0 padding, 1 out-of-vocabulary), when the bundle carries one. */
  vocabulary?: string[] | null;
  why: string;
}

/**
 * Text as a sequence input's ids, as the demo page makes them: lowercased,
 * split on anything but letters and digits, 1 for a word not in `vocabulary`,
 * cut or padded with 0 to `length`.
 */
export function tokenize(
  text: string,
  vocabulary: string[],
  length: number,
): { ids: Int32Array; words: string[]; unknown: string[]; cut: number };

export interface OutputInfo {
  name: string;
  index: number;
  shape: number[];
  width: number;
  kind: "classes" | "regression" | "values";
  labels?: string[];
}

export interface Release {
  version: number;
  bundle_id: string;
  name: string;
  channel: string;
}

export interface ModelInfo {
  name: string;
  version: string;
  labels: string[] | null;
  inputs: InputInfo[];
  outputs: OutputInfo[];
  features: Record<string, string[]>;
  format: "layers-model" | "graph-model" | null;
  release: Release;
  trainable: boolean;
  why: string | null;
  manifest: Record<string, unknown>;
}

export interface Receipt {
  round_id: number;
  num_examples: number;
  digest: string;
  norm: number;
  clipped: boolean;
  received_at: number;
  [key: string]: unknown;
}

export type RoundOutcome =
  | {
      status: "contributed";
      round_id: number;
      base_checkpoint: string;
      /** null in a secure round: the server never sees the update alone. */
      receipt: Receipt | null;
      /** true when the round was secure (the update was masked, not uploaded). */
      secure?: boolean;
      num_examples: number;
      metrics: Record<string, number>;
      metric: "accuracy" | "mae";
      bytes: number;
      epochMs: number[];
      backend: string;
    }
  | { status: "no_task"; reason: string; retry_after_s: number | null };

export type Progress = (step: string, detail: string, fraction: number) => void;

export interface ConnectOptions {
  /** A device token from an earlier enrolment. */
  token?: string;
  deviceId?: string;
  /** Enrol this browser (kept in localStorage) or process; `{key}` for a server that needs an enrolment key. */
  enrol?: boolean | { key: string };
  /** TF.js; default: the page's global `tf`. */
  tf?: unknown;
  /** The IndexedDB database that keeps the examples (default "fedge-examples"). */
  examplesDb?: string;
}

/** What the SDK sent to POST /v1/releases/{version}/health (fedge/wire/health.py HealthReport). */
export interface HealthReport {
  metric: "accuracy" | "mae";
  loss: number;
  value: number;
  num_examples: number;
  runtime: string;
  histogram: number[] | null;
  quantiles: number[] | null;
}

export type HealthOutcome =
  | {
      status: "reported";
      version: number;
      body: HealthReport;
      receipt: { version: number; device_id: string; window: number; received_at: number; next_report_at: number };
      nextReportAt: number;
    }
  | { status: "waiting" | "no_labels"; nextReportAt: number };

export class FedgeClient {
  static connect(serverUrl: string, options: ConnectOptions): Promise<FedgeClient>;
  readonly model: ModelInfo;
  readonly release: Release;
  /** How the model in use was loaded: downloaded and verified, or read from the IndexedDB cache; ms includes a warm-up run. */
  readonly loaded: { from: "network" | "cache"; ms: number };
  predict(inputs: Record<string, Rows>): Promise<Record<string, number[][]>>;
  addExample(inputs: Record<string, number[] | Float32Array>, label: number | number[]): Promise<number>;
  exampleCount(): Promise<number>;
  clearExamples(): Promise<void>;
  joinRound(options?: {
    onProgress?: Progress;
    shuffle?: boolean;
    backend?: string;
    /** How to switch TF.js backends for training (a page that predicts meanwhile passes its own). */
    control?: { getBackend(): string; setBackend(name: string): Promise<unknown> };
  }): Promise<RoundOutcome>;
  evaluateCanary(options?: { onProgress?: Progress }): Promise<{ version: number; body: Record<string, unknown>; receipt: Record<string, unknown> }>;
  /**
   * The live model's health: loss, metric and what it predicted on the examples labelled since the
   * last report, sent at most once per window the server sets (`nextReportAt`, ms). Numbers only.
   */
  reportHealth(options?: { now?: number }): Promise<HealthOutcome>;
  on(event: "release", callback: (change: { release: Release; manifest: Record<string, unknown> }) => void | Promise<void>): () => void;
  /** A check found the same bundle (its channel may have changed: a canary promoted). */
  on(event: "same", callback: (release: Release) => void | Promise<void>): () => void;
  /** A release check or swap failed; the model in use stays. */
  on(event: "error", callback: (error: Error) => void): () => void;
  checkRelease(): Promise<Release>;
  close(): void;
}

/** An event of the server's stream (`/v1/events`): its id, type and JSON data. */
export interface FedgeEvent {
  id: number;
  type: "round" | "release" | "rollout" | "health" | string;
  data: Record<string, unknown>;
}

export type StreamState = "connecting" | "live" | "reconnecting" | "offline";

/**
 * What a dashboard reads: the public rounds, stats and releases, and the
 * event stream. With `adminToken` the stream is a `fetch` with
 * `Authorization` (counted in the slots kept for devices and the admin);
 * without, an EventSource. Failed reads throw ApiError.
 */
export class FedgeObserver {
  static connect(serverUrl?: string, options?: { adminToken?: string | null }): FedgeObserver;
  rounds(limit?: number): Promise<Record<string, unknown>[]>;
  stats(): Promise<Record<string, unknown>>;
  releases(limit?: number): Promise<{ releases: Record<string, unknown>[]; rollout: Record<string, unknown> | null }>;
  release(version: string | number): Promise<Record<string, unknown>>;
  health(version: string | number): Promise<Record<string, unknown>>;
  /** Follow the stream until `close()`; reconnects by itself from the last event seen. */
  events(options?: {
    types?: string[];
    onEvent?: (event: FedgeEvent) => void;
    /** "offline" comes with an ApiError when the server refused (401: a wrong admin token; 429/503: too_many_streams). */
    onState?: (state: StreamState, error?: ApiError | null) => void;
  }): { readonly authenticated: boolean; close(): void };
}
