import { z } from "zod";
import { assertEquals } from "../../tests/assert.ts";
import { escapeUnprintable, formatDiagnostic, fromZodError } from "./diagnostics.ts";

Deno.test("an enum miss, a bound or a pattern names the offending value", () => {
  const schema = z.object({
    dtype: z.enum(["float16", "int32"]),
    ratio: z.number().max(1),
    path: z.string().regex(/^blob\//),
    kind: z.union([z.object({ type: z.literal("random") }), z.object({ value: z.number() })]),
  });
  const bad = { dtype: "uint8", ratio: 2, path: "x", kind: { type: "rand" } };
  const r = schema.safeParse(bad, { reportInput: true });
  assertEquals(r.success, false);
  assertEquals(fromZodError(r.error!, "d.json").map(formatDiagnostic), [
    'd.json: $.dtype: Invalid option: expected one of "float16"|"int32"; got "uint8"',
    "d.json: $.ratio: Too big: expected number to be <=1; got 2",
    'd.json: $.path: Invalid string: must match pattern /^blob\\//; got "x"',
    'd.json: $.kind.type: Invalid input: expected "random"; got "rand"',
  ]);
  // A long value is cut, so the line stays readable.
  const long = schema.shape.dtype.safeParse("x".repeat(200), { reportInput: true });
  const msg = fromZodError(long.error!, "d.json")[0].message;
  assertEquals(msg.endsWith('; got "' + "x".repeat(76) + "..."), true, msg);
});

Deno.test("control and invisible characters never reach the terminal raw", () => {
  assertEquals(
    escapeUnprintable("a\x1b[2J\x07\x00b\nc\td\u202ee\u{e0001}✓é"),
    "a\\x1b[2J\\x07\\x00b\\nc\\td\\u202ee\\u{e0001}✓é",
  );
  const line = formatDiagnostic({
    level: "error",
    file: "w\x1b.jsonl",
    line: 2,
    path: "$",
    message: "malformed JSON: Unexpected token '\x1b', \"\x1b]0;pwned\x07\" is not valid JSON",
  });
  assertEquals(
    line,
    "w\\x1b.jsonl:2: $: malformed JSON: Unexpected token '\\x1b', \"\\x1b]0;pwned\\x07\" is not valid JSON",
  );
});
