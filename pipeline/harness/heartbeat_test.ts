/**
 * Progress while a judging stage's harness jobs run: a line at least every period (10 s by default)
 * while a job runs and none finishes, naming cells done of all, the time elapsed and the jobs running;
 * nothing while jobs finish often. The judging stages get it through mapWithSessions.
 */
import { discoverToolchain } from "../engine/mod.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { closeSharedSessions, formatSeconds, Heartbeat, mapWithSessions } from "./mod.ts";

Deno.test("a heartbeat line is due only while a job runs and nothing finished for most of the period", () => {
  const lines: string[] = [];
  const beat = new Heartbeat(["a", "bb", "ccc"], {
    log: (l) => lines.push(l),
    cells: (s: string) => s.length,
    label: (s: string) => `job ${s}`,
    periodMs: 10_000,
  });
  try {
    const t0 = performance.now();
    assertEquals(beat.due(t0 + 20_000), null, "no job running: nothing to say");
    const a = beat.start("a");
    beat.start("bb");
    assertEquals(beat.due(t0 + 5_000), null, "half a period in: not yet");
    beat.tick(t0 + 9_000);
    assertEquals(lines.length, 1);
    assertMatch(
      lines[0],
      /^still judging: 0\/6 cells done in [89]s; running: job a \([89]s\), job bb \([89]s\)$/,
    );
    beat.tick(t0 + 10_000);
    assertEquals(lines.length, 1, "one line per period, not one per tick");
    beat.tick(t0 + 15_000);
    assertEquals(lines.length, 1, "6/10 of a period after the last line: not yet");
    beat.tick(t0 + 16_100);
    assertEquals(lines.length, 2);
    beat.finish(a);
    const afterFinish = performance.now();
    assertEquals(beat.due(afterFinish + 1_000), null, "a job just finished: its stage said so");
    assertMatch(
      beat.due(afterFinish + 8_000) ?? "",
      /^still judging: 1\/6 cells done .*running: job bb/,
    );
  } finally {
    beat.stop();
  }
  assertEquals(formatSeconds(75_400), "1m15s");
  assertEquals(formatSeconds(42_999), "42s");
});

const tc = await discoverToolchain();

Deno.test({
  name: "mapWithSessions logs progress while a long job runs, at least once a period",
  ignore: !tc.python, // a session starts a judge process (nothing is sent to it)
  async fn() {
    const lines: Array<{ t: number; line: string }> = [];
    const t0 = performance.now();
    try {
      await mapWithSessions(
        [["c1", "c2"], ["c3"]],
        1,
        (group) => new Promise((r) => setTimeout(r, group.length === 2 ? 1300 : 100)),
        {
          progress: {
            log: (line) => lines.push({ t: performance.now() - t0, line }),
            cells: (g: string[]) => g.length,
            label: (g: string[]) => g.join("+"),
            periodMs: 250,
          },
        },
      );
    } finally {
      await closeSharedSessions();
    }
    assert(lines.length >= 3, `heartbeat lines: ${JSON.stringify(lines)}`);
    assertMatch(lines[0].line, /^still judging: 0\/3 cells done in 0s; running: c1\+c2 \(0s\)$/);
    const gaps = lines.map((l, i) => l.t - (i ? lines[i - 1].t : 0));
    assert(gaps.every((g) => g < 250), `no gap as long as the period: ${gaps}`);
  },
});
