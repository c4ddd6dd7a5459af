import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { decodeSafetensors, encodeSafetensors, intTensor, tensorToNumbers } from "./safetensors.ts";

Deno.test("safetensors round-trips int32 and int64 tensors with metadata", () => {
  const bytes = encodeSafetensors(
    {
      kv_indptr: intTensor("I32", [0, 3, 7]),
      kv_indices: intTensor("I64", [5, 1, 2, 0, 4, 3, 6], [7]),
    },
    { synthesized: "true" },
  );
  const { tensors, metadata } = decodeSafetensors(bytes);
  assertEquals(tensorToNumbers(tensors.kv_indptr), [0, 3, 7]);
  assertEquals(tensorToNumbers(tensors.kv_indices), [5, 1, 2, 0, 4, 3, 6]);
  assertEquals(tensors.kv_indices.dtype, "I64");
  assertEquals(metadata, { synthesized: "true" });
});

Deno.test("safetensors layout: u64 header length, 8-byte aligned JSON header, sorted keys", () => {
  const bytes = encodeSafetensors({ b: intTensor("I32", [1]), a: intTensor("I32", [2, 3]) });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals(headerLen % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  assertEquals(Object.keys(header), ["a", "b"]);
  assertEquals(header.a.data_offsets, [0, 8]);
  assertEquals(header.b.data_offsets, [8, 12]);
  assertEquals(bytes.byteLength, 8 + headerLen + 12);
  // Equal inputs give equal bytes.
  assertEquals(encodeSafetensors({ a: intTensor("I32", [2, 3]), b: intTensor("I32", [1]) }), bytes);
});

Deno.test("a truncated safetensors file is an error that says so", () => {
  const bytes = encodeSafetensors({ a: intTensor("I32", [1, 2, 3, 4]) });
  assertThrows(() => decodeSafetensors(bytes.subarray(0, 4)), /truncated/);
  assertThrows(() => decodeSafetensors(bytes.subarray(0, 20)), /truncated/);
  assertThrows(
    () => decodeSafetensors(bytes.subarray(0, bytes.byteLength - 1)),
    /truncated: tensor "a"/,
  );
  assert(decodeSafetensors(bytes));
});

Deno.test("non-integer values and wrong byte counts are rejected", () => {
  assertThrows(() => intTensor("I32", [1.5]), /not an integer/);
  assertThrows(
    () => encodeSafetensors({ a: { dtype: "F32", shape: [3], data: new Uint8Array(8) } }),
    /expected 12/,
  );
});

Deno.test("a safetensors header that is not UTF-8 is refused with its byte offset", () => {
  const bytes = encodeSafetensors({ a: intTensor("I32", [1]) }, { note: "xy" });
  const at = new TextDecoder().decode(bytes).indexOf("xy");
  bytes[at] = 0xff; // inside the header's metadata string: JSON still parses, UTF-8 does not
  assertThrows(() => decodeSafetensors(bytes), new RegExp(`not valid UTF-8 at byte offset ${at}`));
});
