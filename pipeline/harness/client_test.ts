import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { HarnessResult, runGroup, toEvaluation, toTraceEvaluation } from "./client.ts";

function alive(pid: number): boolean {
  try {
    Deno.kill(pid, "SIGCONT"); // signal 0 is not exposed; SIGCONT is harmless to a sleeper
    return true;
  } catch {
    return false;
  }
}

Deno.test("runGroup: timeout kills the whole process group, grandchildren included", async () => {
  const pidFile = Deno.makeTempFileSync();
  // The shell starts a grandchild sleeper in the background, records its pid, then waits forever.
  const script = `sleep 300 & echo $! > ${pidFile}; wait`;
  const t0 = Date.now();
  const r = await runGroup("/bin/sh", ["-c", script], { timeoutMs: 1500 });
  assert(r.timedOut);
  assert(Date.now() - t0 < 20_000, "did not return promptly after the kill");
  const gpid = Number(Deno.readTextFileSync(pidFile).trim());
  assert(gpid > 0, "grandchild pid not recorded");
  // Allow the kernel a moment to reap.
  for (let i = 0; i < 50 && alive(gpid); i++) await new Promise((res) => setTimeout(res, 100));
  // A zombie could still accept signals; check /proc state when available.
  let state = "";
  try {
    state = Deno.readTextFileSync(`/proc/${gpid}/stat`).split(" ")[2];
  } catch {
    state = "gone";
  }
  assert(state === "gone" || state === "Z", `grandchild sleeper ${gpid} survived (state ${state})`);
  Deno.removeSync(pidFile);
});

Deno.test("runGroup: abort signal kills the group; normal exit reports code", async () => {
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 300);
  const r = await runGroup("/bin/sh", ["-c", "sleep 300 & wait"], {
    signal: ac.signal,
    timeoutMs: 30_000,
  });
  assert(r.aborted && !r.timedOut);
  const ok = await runGroup("/bin/sh", ["-c", "echo hi; exit 3"]);
  assertEquals(ok.code, 3);
  assertEquals(ok.stdout.trim(), "hi");
});

const env = { hardware: "cpu:x86_64", libs: { torch: "1.13" } };

Deno.test("HarnessResult: accepts FlashInfer non-finite strings, rejects unknown statuses", () => {
  const doc = {
    protocol: 1,
    command: "verify",
    ok: true,
    error: null,
    results: [{
      solution: "s",
      workload: "w",
      outcome: "evaluated",
      evaluation: {
        status: "INCORRECT_NUMERICAL",
        correctness: { max_relative_error: "Infinity", max_absolute_error: "nan", extra: null },
        performance: null,
        log: "",
        environment: env,
        timestamp: "t",
      },
    }],
  };
  const r = HarnessResult.parse(doc);
  assertEquals(r.results[0].evaluation?.correctness?.max_relative_error, Infinity);
  assert(Number.isNaN(r.results[0].evaluation?.correctness?.max_absolute_error));
  const bad = structuredClone(doc);
  (bad.results[0].evaluation as { status: string }).status = "WRONG";
  assertThrows(() => HarnessResult.parse(bad));
});

Deno.test("toEvaluation: merges verify + time and enforces the status matrix", () => {
  const base = { solution: "s", workload: "w", outcome: "evaluated" as const };
  const corr = { max_relative_error: 0.001, max_absolute_error: 0.002, extra: null };
  const verify = {
    ...base,
    evaluation: {
      status: "PASSED" as const,
      correctness: corr,
      performance: null,
      log: "",
      environment: env,
      timestamp: "t",
    },
  };
  assertEquals(
    toEvaluation(verify),
    null,
    "PASSED without performance is not a valid Evaluation",
  );
  assertEquals(toEvaluation(verify, undefined, true)?.status, "PASSED");
  const perf = { latency_ms: 0.1, reference_latency_ms: 1, speedup_factor: 10 };
  const time = { ...base, evaluation: { ...verify.evaluation, performance: perf } };
  assertEquals(toEvaluation(verify, time)?.performance, perf);
  const rt = {
    ...base,
    evaluation: { ...verify.evaluation, status: "RUNTIME_ERROR" as const, performance: perf },
  };
  const e = toEvaluation(rt);
  assertEquals(e?.correctness, null);
  assertEquals(e?.performance, null);
  assertEquals(
    toEvaluation({ ...base, outcome: "not_runnable_here" as const, evaluation: null }),
    null,
  );
});

Deno.test("toTraceEvaluation: output satisfies the project's FlashInfer Evaluation schema", () => {
  const base = { solution: "s", workload: "w", outcome: "evaluated" as const };
  const ev = {
    status: "INCORRECT_NUMERICAL" as const,
    correctness: { max_relative_error: Infinity, max_absolute_error: NaN, extra: null },
    performance: null,
    log: "x",
    environment: env,
    timestamp: "t",
  };
  const out = toTraceEvaluation({ ...base, evaluation: ev });
  assertEquals(out?.status, "INCORRECT_NUMERICAL");
  assertEquals(out?.correctness?.max_relative_error, Infinity);
  const perf = { latency_ms: 0.5, reference_latency_ms: 1, speedup_factor: 2 };
  const passed = toTraceEvaluation(
    {
      ...base,
      evaluation: {
        ...ev,
        status: "PASSED" as const,
        correctness: { ...ev.correctness, max_absolute_error: 0 },
      },
    },
    {
      ...base,
      evaluation: {
        ...ev,
        status: "PASSED" as const,
        performance: perf,
        correctness: { max_relative_error: 0, max_absolute_error: 0, extra: null },
      },
    },
  );
  assertEquals(passed?.performance, perf);
});
