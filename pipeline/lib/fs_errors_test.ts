import { mkdirSync, readFileSync } from "node:fs";
import { assertEquals } from "../../tests/assert.ts";
import { isPathError } from "./mod.ts";

/** What `f` throws (the test fails when it throws nothing). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

Deno.test("isPathError: node:fs and Deno refusing a path are path errors", () => {
  assertEquals(isPathError(thrown(() => readFileSync("/nonexistent/tracepipe"))), true);
  assertEquals(
    isPathError(thrown(() => mkdirSync("/proc/tracepipe-x", { recursive: true }))),
    true,
  );
  assertEquals(isPathError(thrown(() => Deno.readTextFileSync("/nonexistent/tracepipe"))), true);
});

Deno.test("isPathError: a program's own errors are not", () => {
  assertEquals(isPathError(new TypeError("x is undefined")), false);
  assertEquals(isPathError(thrown(() => JSON.parse("{"))), false);
  assertEquals(isPathError("ENOENT"), false);
});
