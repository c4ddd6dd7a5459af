/**
 * Read and write the safetensors format in TypeScript: an 8-byte little-endian header length,
 * a JSON header `{name: {dtype, shape, data_offsets}}` (plus optional `__metadata__`), then the
 * raw little-endian tensor bytes. Index tensors are small, so everything is held in memory.
 */
import { decodeUtf8, Utf8Error } from "./text.ts";

/** safetensors dtype names and their element sizes in bytes. */
export const SAFETENSORS_DTYPES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPES;

/** FlashInfer Trace dtype → safetensors dtype (float4 is packed two per byte as U8 by torch). */
export const TRACE_TO_SAFETENSORS: Record<string, SafetensorsDType> = {
  float32: "F32",
  float16: "F16",
  bfloat16: "BF16",
  float8_e4m3fn: "F8_E4M3",
  float8_e5m2: "F8_E5M2",
  int64: "I64",
  int32: "I32",
  int16: "I16",
  int8: "I8",
  bool: "BOOL",
};

/** One tensor: dtype, shape and its raw bytes. */
export interface RawTensor {
  dtype: SafetensorsDType;
  shape: number[];
  data: Uint8Array;
}

/** Thrown for a malformed or truncated file; the message names the reason. */
export class SafetensorsError extends Error {}

const elementCount = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** Builds an int32/int64 tensor from plain numbers (the common case for index tensors). */
export function intTensor(
  dtype: "I32" | "I64",
  values: ArrayLike<number>,
  shape?: number[],
): RawTensor {
  const n = values.length;
  const buf = new ArrayBuffer(n * (dtype === "I32" ? 4 : 8));
  const view = new DataView(buf);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!Number.isInteger(v)) throw new SafetensorsError(`value ${v} at ${i} is not an integer`);
    if (dtype === "I32") view.setInt32(i * 4, v, true);
    else view.setBigInt64(i * 8, BigInt(v), true);
  }
  return { dtype, shape: shape ?? [n], data: new Uint8Array(buf) };
}

/** Reads an integer tensor's elements as numbers. */
export function tensorToNumbers(t: RawTensor): number[] {
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const n = elementCount(t.shape);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    switch (t.dtype) {
      case "I32":
        out[i] = view.getInt32(i * 4, true);
        break;
      case "I64":
        out[i] = Number(view.getBigInt64(i * 8, true));
        break;
      case "I16":
        out[i] = view.getInt16(i * 2, true);
        break;
      case "I8":
        out[i] = view.getInt8(i);
        break;
      case "U8":
      case "BOOL":
        out[i] = view.getUint8(i);
        break;
      case "F32":
        out[i] = view.getFloat32(i * 4, true);
        break;
      case "F64":
        out[i] = view.getFloat64(i * 8, true);
        break;
      default:
        throw new SafetensorsError(`cannot convert ${t.dtype} to numbers`);
    }
  }
  return out;
}

/** Serialises tensors (keys sorted, header padded to 8 bytes) so equal inputs give equal bytes. */
export function encodeSafetensors(
  tensors: Record<string, RawTensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors[name];
    const expected = elementCount(t.shape) * SAFETENSORS_DTYPES[t.dtype];
    if (t.data.byteLength !== expected) {
      throw new SafetensorsError(
        `tensor "${name}": ${t.data.byteLength} bytes for shape [${t.shape}] ${t.dtype} (expected ${expected})`,
      );
    }
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + expected] };
    offset += expected;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const name of names) {
    out.set(tensors[name].data, at);
    at += tensors[name].data.byteLength;
  }
  return out;
}

/** Parses a safetensors file, checking every offset against the file length. */
export function decodeSafetensors(bytes: Uint8Array): {
  tensors: Record<string, RawTensor>;
  metadata: Record<string, string> | undefined;
} {
  if (bytes.byteLength < 8) {
    throw new SafetensorsError(`truncated: ${bytes.byteLength} bytes, no header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (8 + headerLen > bytes.byteLength) {
    throw new SafetensorsError(
      `truncated: header of ${headerLen} bytes but the file has ${
        bytes.byteLength - 8
      } after the length`,
    );
  }
  let header: Record<string, unknown>;
  let text: string;
  try {
    // The safetensors library refuses a header that is not UTF-8; so does tracepipe.
    text = decodeUtf8(bytes.subarray(8, 8 + headerLen));
  } catch (e) {
    const at = e instanceof Utf8Error ? ` at byte offset ${8 + e.offset}` : "";
    throw new SafetensorsError(`header is not valid UTF-8${at}`);
  }
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(`header is not valid JSON: ${(e as Error).message}`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const tensors: Record<string, RawTensor> = {};
  let metadata: Record<string, string> | undefined;
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    if (!info.dtype || !(info.dtype in SAFETENSORS_DTYPES)) {
      throw new SafetensorsError(`tensor "${name}": unknown dtype ${JSON.stringify(info.dtype)}`);
    }
    const dtype = info.dtype as SafetensorsDType;
    const shape = info.shape ?? [];
    const [begin, end] = info.data_offsets ?? [NaN, NaN];
    if (!(Number.isInteger(begin) && Number.isInteger(end) && begin <= end)) {
      throw new SafetensorsError(
        `tensor "${name}": bad data_offsets ${JSON.stringify(info.data_offsets)}`,
      );
    }
    if (end > dataLen) {
      throw new SafetensorsError(
        `truncated: tensor "${name}" ends at byte ${end} but the data section has ${dataLen}`,
      );
    }
    const expected = elementCount(shape) * SAFETENSORS_DTYPES[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(
        `tensor "${name}": ${
          end - begin
        } bytes for shape [${shape}] ${dtype} (expected ${expected})`,
      );
    }
    tensors[name] = { dtype, shape, data: bytes.slice(dataStart + begin, dataStart + end) };
  }
  return { tensors, metadata };
}
