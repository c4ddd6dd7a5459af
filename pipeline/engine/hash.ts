/** Canonical JSON and sha256 digests: the basis of every cache key and content address. */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

/**
 * Canonical JSON: object keys sorted by code point, no whitespace, numbers in JS's shortest
 * round-trip form (as RFC 8785 requires). Non-finite numbers and undefined values are rejected
 * rather than silently turned into `null`, so two different documents never share a key.
 */
export function canonicalJson(value: unknown): string {
  if (value === null) return "null";
  switch (typeof value) {
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: non-finite number ${value}`);
      return JSON.stringify(value);
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
      const entries = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
    }
    default:
      throw new TypeError(`canonicalJson: unsupported ${typeof value}`);
  }
}

/** sha256 hex of a string or bytes. */
export function sha256(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** sha256 hex of a file's bytes. */
export function sha256File(path: string): string {
  return sha256(readFileSync(path));
}

/**
 * Digest of a list of named parts, length-delimited so that no two different part lists
 * can produce the same byte stream (`["ab","c"]` vs `["a","bc"]`).
 */
export function digestParts(parts: Array<[string, string | Uint8Array]>): string {
  const h = createHash("sha256");
  for (const [name, data] of parts) {
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    h.update(`${name.length}:${name}:${bytes.byteLength}:`);
    h.update(bytes);
  }
  return h.digest("hex");
}

/** sha256 of the canonical JSON of a value. */
export function digestJson(value: unknown): string {
  return sha256(canonicalJson(value));
}
