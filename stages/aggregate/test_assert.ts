/** Minimal assertions for the aggregate tests (no @std/assert here: JSR is unreachable). */
import { deepStrictEqual } from "node:assert";

/** Throws unless `cond` holds. */
export function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  deepStrictEqual(actual, expected, msg);
}

/** |actual - expected| <= tolerance. */
export function assertAlmostEquals(actual: number, expected: number, tolerance: number): void {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new Error(`${actual} is not within ${tolerance} of ${expected}`);
  }
}

/** The string matches the regex. */
export function assertMatch(actual: string, re: RegExp): void {
  if (!re.test(actual)) {
    throw new Error(`${JSON.stringify(actual.slice(0, 300))} does not match ${re}`);
  }
}
