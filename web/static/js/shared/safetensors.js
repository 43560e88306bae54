// The fedge wire format of weights in the browser: safetensors, as
// fedge/wire/update_codec.py writes and reads it.
//
// Layout: an 8-byte little-endian header length N, N bytes of JSON (padded
// with spaces to a multiple of 8), then the raw little-endian tensor bytes,
// each tensor at [start, stop) of that data. The header maps tensor names
// to {dtype, shape, data_offsets} and holds a string-to-string
// `__metadata__`: format "fedge/1", kind "update" or "checkpoint", and for an
// update round_id, base_checkpoint, num_examples and metrics (a JSON object
// of numbers). Weights travel as F32, except a model's integer weights (an
// adapted Normalization layer's `count`): I64 or I32, as the model has
// them. Every tensor is decoded to a Float32Array (an integer weight holds
// a count, far below 2^24).
// The npm `safetensors` package is a placeholder, hence this small codec.

export const FORMAT = "fedge/1";
const MAX_HEADER_BYTES = 16 * 1024 * 1024;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class CodecError extends Error {}

/** JSON with object keys sorted at every level (as Python's sort_keys). */
function sortedJson(value, separators = [",", ":"]) {
  const [item, key] = separators;
  if (Array.isArray(value)) return `[${value.map((v) => sortedJson(v, separators)).join(item)}]`;
  if (value !== null && typeof value === "object") {
    const parts = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}${key}${sortedJson(value[k], separators)}`);
    return `{${parts.join(item)}}`;
  }
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new CodecError(`not a finite number: ${value}`);
  }
  return JSON.stringify(value);
}

/** The metrics metadata string: Python's json.dumps(metrics, sort_keys=True). */
export function metricsJson(metrics) {
  for (const [name, value] of Object.entries(metrics)) {
    if (typeof value !== "number" || !Number.isFinite(value)) {
      throw new CodecError(`metric ${name} must be a finite number, got ${value}`);
    }
  }
  return sortedJson(metrics, [", ", ": "]);
}

// Integer dtypes the codec carries besides F32, by safetensors code.
const INTEGER_BYTES = { I64: 8, I32: 4 };

function integerBytes(values, dtype) {
  const out = new Uint8Array(values.length * INTEGER_BYTES[dtype]);
  const view = new DataView(out.buffer);
  Array.from(values).forEach((v, i) => {
    if (!Number.isInteger(v)) throw new CodecError(`${dtype} value ${v} is not an integer`);
    if (dtype === "I64") view.setBigInt64(i * 8, BigInt(v), true);
    else view.setInt32(i * 4, v, true);
  });
  return out;
}

function float32Bytes(values) {
  const array = values instanceof Float32Array ? values : Float32Array.from(values);
  if (LITTLE_ENDIAN) return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  const out = new Uint8Array(array.length * 4);
  const view = new DataView(out.buffer);
  array.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return out;
}

/**
 * Safetensors bytes of `tensors` ([{name, shape, data: Float32Array}], kept
 * in that order) with `metadata` (strings; `format` is added).
 */
export function encode(tensors, metadata) {
  const header = { __metadata__: { format: FORMAT, ...metadata } };
  for (const [key, value] of Object.entries(header.__metadata__)) {
    if (typeof value !== "string") throw new CodecError(`metadata ${key} must be a string`);
  }
  const chunks = [];
  let offset = 0;
  for (const { name, shape, data, dtype = "F32" } of tensors) {
    const size = shape.reduce((a, b) => a * b, 1);
    if (data.length !== size) throw new CodecError(`${name}: ${data.length} values for shape [${shape}]`);
    if (name in header) throw new CodecError(`${name}: named twice`);
    if (dtype !== "F32" && !(dtype in INTEGER_BYTES)) throw new CodecError(`${name}: dtype ${dtype} is not carried`);
    const raw = dtype === "F32" ? float32Bytes(data) : integerBytes(data, dtype);
    header[name] = { dtype, shape: [...shape], data_offsets: [offset, offset + raw.byteLength] };
    chunks.push(raw);
    offset += raw.byteLength;
  }
  let json = sortedJson(header);
  json += " ".repeat((8 - (new TextEncoder().encode(json).length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let position = 8 + headerBytes.length;
  for (const chunk of chunks) {
    out.set(chunk, position);
    position += chunk.byteLength;
  }
  return out;
}

/** An update's bytes: one delta per weight, with the Python devices' metadata. */
export function encodeUpdate({ roundId, baseCheckpoint, numExamples, metrics, deltas }) {
  return encode(deltas, {
    kind: "update",
    round_id: String(roundId),
    base_checkpoint: baseCheckpoint,
    num_examples: String(numExamples),
    metrics: metricsJson(metrics),
  });
}

/**
 * Decode safetensors bytes: {metadata, tensors: Map name -> {shape, data:
 * Float32Array}}, strictly: a bounded header, F32 tensors only, offsets that
 * tile the data, and (when given) the expected `kind`.
 */
export function decode(buffer, kind = null) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  if (bytes.length < 8) throw new CodecError("too short for a safetensors file");
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));
  if (length > MAX_HEADER_BYTES || 8 + length > bytes.length) {
    throw new CodecError(`header length ${length} does not fit a ${bytes.length}-byte body`);
  }
  let header;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + length)));
  } catch (error) {
    throw new CodecError(`header is not JSON: ${error.message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new CodecError("header is not a JSON object");
  }
  const metadata = header.__metadata__ || {};
  delete header.__metadata__;
  if (metadata.format !== FORMAT || (kind !== null && metadata.kind !== kind)) {
    throw new CodecError(`expected a ${FORMAT} ${kind}, got format=${metadata.format} kind=${metadata.kind}`);
  }
  const body = 8 + length;
  const entries = Object.entries(header).sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  const tensors = new Map();
  let position = 0;
  for (const [name, info] of entries) {
    if (info.dtype !== "F32" && !(info.dtype in INTEGER_BYTES)) {
      throw new CodecError(`${name}: dtype ${info.dtype}, expected F32 (or I64, I32)`);
    }
    const [start, stop] = info.data_offsets;
    const size = info.shape.reduce((a, b) => a * b, 1);
    const width = INTEGER_BYTES[info.dtype] ?? 4;
    if (start !== position || stop - start !== size * width) {
      throw new CodecError(`${name}: data offsets [${start}, ${stop}) do not tile the data`);
    }
    position = stop;
    const raw = bytes.slice(body + start, body + stop); // a copy: aligned, and our own
    let data;
    if (info.dtype in INTEGER_BYTES) {
      const view = new DataView(raw.buffer);
      const read = (i) => (width === 8 ? Number(view.getBigInt64(i * 8, true)) : view.getInt32(i * 4, true));
      data = Float32Array.from({ length: size }, (_, i) => read(i));
    } else if (LITTLE_ENDIAN) {
      data = new Float32Array(raw.buffer);
    } else {
      const view = new DataView(raw.buffer);
      data = Float32Array.from({ length: size }, (_, i) => view.getFloat32(i * 4, true));
    }
    tensors.set(name, { shape: info.shape, data });
  }
  if (body + position !== bytes.length) {
    throw new CodecError(`data offsets cover ${position} bytes of a ${bytes.length - body}-byte body`);
  }
  return { metadata, tensors };
}
