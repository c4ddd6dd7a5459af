/**
 * The one assertion module of every test, on top of node:assert/strict (no @std/assert here: JSR
 * is not reachable).
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

/** Deep, strict inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, msg);
}

/** |actual - expected| <= tolerance. */
export function assertAlmostEquals(actual: number, expected: number, tolerance: number): void {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new nodeAssert.AssertionError({
      message: `${actual} is not within ${tolerance} of ${expected}`,
    });
  }
}

/** Fails unless `text` is a string matching `re`. */
export function assertMatch(text: string | undefined, re: RegExp, msg?: string): void {
  if (text === undefined) {
    throw new nodeAssert.AssertionError({ message: msg ?? `expected a string matching ${re}` });
  }
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

/** Fails unless the promise (or the function's) rejects with a message matching `re`. */
export async function assertRejects(
  p: Promise<unknown> | (() => Promise<unknown>),
  re?: RegExp,
): Promise<Error> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    if (re) nodeAssert.match((e as Error).message, re);
    return e as Error;
  }
  throw new nodeAssert.AssertionError({ message: "expected the promise to reject" });
}
