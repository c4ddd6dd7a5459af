import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { decodeUtf8, firstInvalidUtf8, Utf8Error } from "./text.ts";

const bytes = (...b: number[]) => Uint8Array.from(b);

Deno.test("UTF-8: the first ill-formed sequence is found where Python's codec finds it", () => {
  // Expected offsets and reasons are Python's UnicodeDecodeError.start and .reason.
  const cases: Array<[Uint8Array, number, string]> = [
    [bytes(0x61, 0xff), 1, "invalid start byte"],
    [bytes(0x61, 0xc3, 0x28), 1, "invalid continuation byte"],
    [bytes(0xe0, 0x80, 0x80), 0, "invalid continuation byte"], // overlong
    [bytes(0xed, 0xa0, 0x80), 0, "invalid continuation byte"], // surrogate
    [bytes(0xf4, 0x90, 0x80, 0x80), 0, "invalid continuation byte"], // above U+10FFFF
    [bytes(0x61, 0x62, 0xe2, 0x82), 2, "unexpected end of data"],
  ];
  for (const [b, offset, reason] of cases) assertEquals(firstInvalidUtf8(b), { offset, reason });
  assertEquals(firstInvalidUtf8(new TextEncoder().encode("héllo ✓ 𝄞")), null);
});

Deno.test("UTF-8: decoding refuses invalid bytes (never U+FFFD) and names offset and line", () => {
  assertEquals(decodeUtf8(new TextEncoder().encode("ok ✓")), "ok ✓");
  const e = assertThrows(
    () => decodeUtf8(bytes(0x7b, 0x0a, 0x22, 0xff, 0x22)),
    /byte 0xff at byte offset 3 \(line 2\): invalid start byte/,
  );
  assertEquals(e instanceof Utf8Error && [e.offset, e.line], [3, 2]);
});
