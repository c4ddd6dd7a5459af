/** Minimal assertions for this folder's tests (no @std/assert: JSR is unreachable). */
import { deepStrictEqual, notDeepStrictEqual } from "node:assert";

/** Fails unless `v` is truthy. */
export function assert(v: unknown, msg = "assertion failed"): asserts v {
  if (!v) throw new Error(msg);
}
/** Deep strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  deepStrictEqual(actual, expected, msg);
}
/** Deep strict inequality. */
export function assertNotEquals<T>(actual: T, expected: T, msg?: string): void {
  notDeepStrictEqual(actual, expected, msg);
}
/** Fails unless `text` matches `re`. */
export function assertMatch(text: string | undefined, re: RegExp): void {
  if (text === undefined || !re.test(text)) {
    throw new Error(`expected ${JSON.stringify(text)} to match ${re}`);
  }
}
/** Fails unless the promise rejects with a message matching `re`; returns the error. */
export async function assertRejects(p: Promise<unknown>, re: RegExp): Promise<Error> {
  try {
    await p;
  } catch (e) {
    assertMatch((e as Error).message, re);
    return e as Error;
  }
  throw new Error(`expected a rejection matching ${re}`);
}
