/**
 * Strict UTF-8 reading of the format's JSON and JSONL files. flashinfer-bench opens them with
 * Python's UTF-8 codec, which refuses invalid bytes; a lenient decoder would turn them into U+FFFD
 * and accept a file flashinfer-bench cannot load, so tracepipe refuses them too, naming the byte.
 */
import { readFileSync } from "node:fs";

/** A file that is not valid UTF-8: where its first ill-formed sequence starts, and why. */
export class Utf8Error extends Error {
  constructor(
    readonly offset: number,
    readonly line: number,
    readonly byte: number,
    readonly reason: string,
  ) {
    super(
      `not valid UTF-8: byte 0x${
        byte.toString(16).padStart(2, "0")
      } at byte offset ${offset} (line ${line}): ${reason}; flashinfer-bench cannot read this file`,
    );
    this.name = "Utf8Error";
  }
}

const strict = new TextDecoder("utf-8", { fatal: true });

/**
 * Where the first ill-formed UTF-8 sequence starts and why, as Python's codec reports it (the
 * offset of the sequence's first byte), or null when every byte is valid. Overlongs, surrogates
 * and code points above U+10FFFF are ill-formed.
 */
export function firstInvalidUtf8(bytes: Uint8Array): { offset: number; reason: string } | null {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number, lo = 0x80, hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      if (b === 0xe0) lo = 0xa0; // overlong
      if (b === 0xed) hi = 0x9f; // surrogates
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      if (b === 0xf0) lo = 0x90; // overlong
      if (b === 0xf4) hi = 0x8f; // above U+10FFFF
    } else return { offset: i, reason: "invalid start byte" };
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined) return { offset: i, reason: "unexpected end of data" };
      if (c < (k === 1 ? lo : 0x80) || c > (k === 1 ? hi : 0xbf)) {
        return { offset: i, reason: "invalid continuation byte" };
      }
    }
    i += need + 1;
  }
  return null;
}

/** Decodes UTF-8 text, throwing `Utf8Error` at the first ill-formed sequence. */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return strict.decode(bytes);
  } catch {
    const bad = firstInvalidUtf8(bytes) ?? { offset: 0, reason: "rejected by the decoder" };
    let line = 1;
    for (let k = 0; k < bad.offset; k++) if (bytes[k] === 0x0a) line++;
    throw new Utf8Error(bad.offset, line, bytes[bad.offset] ?? 0, bad.reason);
  }
}

/** Reads a text file strictly as UTF-8 (see `decodeUtf8`). */
export function readUtf8File(path: string): string {
  return decodeUtf8(readFileSync(path));
}
