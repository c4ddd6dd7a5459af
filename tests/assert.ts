/**
 * Assertions for Deno tests, on top of node:assert/strict (no @std/assert here: JSR is not reachable).
 */
import nodeAssert from "node:assert/strict";

/** Fails unless `cond` is truthy. */
export function assert(cond: unknown, msg?: string): asserts cond {
  nodeAssert.ok(cond, msg);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, msg);
}

/** Fails unless `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, msg?: string): void {
  nodeAssert.match(text, re, msg);
}

/** Fails unless `f` throws an error whose message matches `re`; returns the error. */
export function assertThrows(f: () => unknown, re?: RegExp): Error {
  try {
    f();
  } catch (e) {
    if (re) nodeAssert.match((e as Error).message, re);
    return e as Error;
  }
  throw new nodeAssert.AssertionError({ message: "expected the function to throw" });
}

/** Fails unless the promise rejects with an error whose message matches `re`; returns the error. */
export async function assertRejects(f: () => Promise<unknown>, re?: RegExp): Promise<Error> {
  try {
    await f();
  } catch (e) {
    if (re) nodeAssert.match((e as Error).message, re);
    return e as Error;
  }
  throw new nodeAssert.AssertionError({ message: "expected the promise to reject" });
}
