/**
 * Lanes over the GPUs of a host, on this CPU machine with a fake GPU list: how lanes are laid on
 * GPUs, one queue taken costliest first by whichever lane is free, a GPU another run holds waited
 * for while the others work, a failing job that stops nothing else, and each spawned judge pinned
 * to its lane's GPU through CUDA_VISIBLE_DEVICES.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { type LockHolder } from "../engine/mod.ts";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/assert.ts";
import {
  assignLanes,
  closeSharedSessions,
  gpuLockHolder,
  GPUS_ENV,
  hostGpus,
  idleSharedSessions,
  mapWithSessions,
  prestartSharedSessions,
  runQueue,
  takeGpuLock,
} from "./mod.ts";
import { onFakeGpus, withEnv } from "./testdata/lanes.ts";

const tick = () => new Promise((r) => setTimeout(r, 0));

/** A promise the test settles, and whether it was started. */
function gate() {
  let open!: () => void, fail!: (e: Error) => void;
  const done = new Promise<void>((res, rej) => (open = res, fail = rej));
  return { done, open, fail };
}

Deno.test("lanes: parallel_processes per GPU (verify, time) or in all (compile), interleaved over GPUs", () => {
  assertEquals(assignLanes(2, 3, true), [0, 1, 0, 1, 0, 1]);
  assertEquals(assignLanes(4, 1, true), [0, 1, 2, 3], "time: one lane per GPU");
  assertEquals(assignLanes(2, 3, false), [0, 1, 0], "compile: its lanes spread over the GPUs");
  assertEquals(assignLanes(1, 4, true), [0, 0, 0, 0], "one GPU, or none: as before");
});

Deno.test("one queue, costliest first: the first jobs go to different GPUs, a lane that finishes takes the next", async () => {
  const jobs = ["c8", "c5", "c3", "c2", "c1a", "c1b"]; // sorted costliest first, as the stages do
  const gates = new Map(jobs.map((j) => [j, gate()]));
  const started: Array<[string, string, number]> = [];
  const run = runQueue(jobs, ["gpu0", "gpu1", "gpu0", "gpu1"], (job, device, lane) => {
    started.push([job, device, lane]);
    return gates.get(job)!.done;
  });
  await tick();
  assertEquals(started, [["c8", "gpu0", 0], ["c5", "gpu1", 1], ["c3", "gpu0", 2], [
    "c2",
    "gpu1",
    3,
  ]]);
  gates.get("c2")!.open();
  await tick();
  assertEquals(started[4], ["c1a", "gpu1", 3], "the lane that finished first takes the next job");
  gates.get("c8")!.open();
  await tick();
  assertEquals(started[5], ["c1b", "gpu0", 0]);
  for (const g of gates.values()) g.open();
  await run;
  assertEquals(started.length, 6, "each job ran once");
});

Deno.test("a GPU another run holds: its lane waits while the others work, joins when it is freed, gives up when the queue is dry", async () => {
  const holder: LockHolder = { pid: 4242, host: "h", startedAt: "t", command: "tp reproduce" };
  let heldElsewhere = true;
  const lines: string[] = [];
  const ran: Array<[number, string]> = [];
  const gates = [0, 1, 2, 3, 4].map(() => gate());
  const run = runQueue([0, 1, 2, 3, 4], ["gpu0", "gpu1"], (job, device) => {
    ran.push([job, device]);
    return gates[job].done;
  }, {
    hold: (d) => d === "gpu1" && heldElsewhere ? holder : null,
    name: (d) => d.toUpperCase(),
    log: (l) => lines.push(l),
    pollMs: 5,
  });
  await tick();
  assertEquals(ran, [[0, "gpu0"]]);
  assertEquals(lines, [
    "GPU1 is in use by another run (pid 4242 on h, `tp reproduce`, started t); its lanes wait " +
    "for it while the others take the work",
  ]);
  gates[0].open();
  await tick();
  assertEquals(ran.at(-1), [1, "gpu0"], "GPU 0's lane takes the work meanwhile");
  heldElsewhere = false;
  await new Promise((r) => setTimeout(r, 30));
  assertEquals(ran.at(-1), [2, "gpu1"], "freed, GPU 1's lane takes the next job");
  assertEquals(lines.at(-1), "GPU1 is free: its lanes join");
  for (const g of gates) g.open();
  await run;
  assertEquals(ran.map(([j]) => j).sort(), [0, 1, 2, 3, 4]);

  // Held for good: the waiting lane gives up once the other has done everything.
  const never = runQueue([0, 1], ["gpu0", "gpu1"], () => Promise.resolve(), {
    hold: (d) => d === "gpu1" ? holder : null,
    pollMs: 5,
  });
  await never; // returns: nothing waits for a GPU once no job is left
});

Deno.test("a failing job stops neither its lane nor the others; the failures are thrown at the end", async () => {
  const done: number[] = [];
  const err = await assertRejects(
    () =>
      runQueue([1, 2, 3, 4, 5], ["a", "b"], (job) => {
        if (job === 2 || job === 4) return Promise.reject(new Error(`judge died on job ${job}`));
        done.push(job);
        return Promise.resolve();
      }),
    /^judge died on job 2 \(and 1 more jobs failed\)$/,
  );
  assert(err instanceof Error);
  assertEquals(done.sort(), [1, 3, 5]);
  await assertRejects(
    () => runQueue([1], ["a"], () => Promise.reject(new Error("only"))),
    /^only$/,
  );
  // An aborted run takes no further job.
  const abort = new AbortController();
  const taken: number[] = [];
  await runQueue([1, 2, 3], ["a"], (job) => {
    taken.push(job);
    abort.abort();
    return Promise.resolve();
  }, { signal: abort.signal });
  assertEquals(taken, [1]);
});

Deno.test({
  name:
    "each spawned judge sees its lane's GPU (CUDA_VISIBLE_DEVICES); the run holds those GPUs' locks, and frees them",
  async fn() {
    await onFakeGpus("0:H100,1:H100", async ({ judge, lockDir }) => {
      const ran: Array<{ job: number; pid: number; gpu: number | undefined }> = [];
      try {
        await mapWithSessions([0, 1, 2, 3, 4, 5], 2, async (job, session, lane) => {
          ran.push({ job, pid: session.pid, gpu: lane.gpu?.index });
          // Both GPUs are ours while their judges live.
          for (const g of hostGpus([])) assertEquals(gpuLockHolder(g)?.pid, Deno.pid);
          await new Promise((r) => setTimeout(r, 20));
        }, { gpus: [], perGpu: true });
        assertEquals(idleSharedSessions(), 2, "one idle judge kept per GPU for the next stage");
      } finally {
        await closeSharedSessions();
      }
      assertEquals(readdirSync(lockDir), [], "closing the judges frees the GPUs");
      const seen = judge.seen();
      assertEquals(new Set(ran.map((r) => r.pid)).size, 4, "2 lanes on each of 2 GPUs");
      for (const r of ran) assertEquals(seen.get(r.pid), String(r.gpu), `job ${r.job}`);
      assertEquals(
        ran.filter((r) => r.gpu === 0).length + ran.filter((r) => r.gpu === 1).length,
        6,
      );
      assert(ran.some((r) => r.gpu === 1), "GPU 1 took work");
    });
  },
});

Deno.test({
  name:
    "a second run on the host: the GPU the first holds is not shared, the free one does the work",
  async fn() {
    await onFakeGpus("0:H100,1:H100", async ({ judge, lockDir }) => {
      const [, g1] = hostGpus([]);
      const other = takeGpuLock(g1, "tp reproduce (the other run)");
      assert(typeof other === "function");
      const lines: string[] = [];
      const gpus: Array<number | undefined> = [];
      try {
        await mapWithSessions([0, 1, 2], 1, (_job, _session, lane) => {
          gpus.push(lane.gpu?.index);
          return Promise.resolve();
        }, { gpus: [], perGpu: true, log: (l) => lines.push(l) });
        await prestartSharedSessions(1, []);
        assertEquals(idleSharedSessions(), 1, "no judge prestarted on the GPU the other run holds");
      } finally {
        await closeSharedSessions();
        other();
      }
      assertEquals(gpus, [0, 0, 0]);
      assertEquals(lines.length, 1, lines.join("\n"));
      assertMatch(
        lines[0],
        /^GPU 1 \(H100\) is in use by another run \(pid \d+ on .*`tp reproduce \(the other run\)`.*\); its lanes wait/,
      );
      assertEquals(new Set(judge.seen().values()), new Set(["0"]), "no judge started on GPU 1");
      assert(!existsSync(join(lockDir, "fake-0.lock")), "GPU 0 freed at the end");
    });
  },
});

Deno.test({
  name: "a timing stage (alone, one lane per GPU) runs with no other judge idle on any GPU",
  async fn() {
    await onFakeGpus("0:H100,1:H100", async () => {
      try {
        await prestartSharedSessions(3, []); // verify's judges, idle: its cells were all cached
        assertEquals(idleSharedSessions(), 6);
        const both = gate();
        let running = 0;
        const idle: number[] = [];
        await mapWithSessions(["a", "b"], 1, async () => {
          if (++running === 2) both.open();
          await both.done; // both GPUs' lanes busy at once
          idle.push(idleSharedSessions());
        }, { alone: true, gpus: [], perGpu: true });
        assertEquals(idle, [0, 0], "no judge idle beside the timing lanes");
        assertEquals(idleSharedSessions(), 2);
        // Timing on GPU 0 alone (--gpus 0): GPU 1's judge closes, and another run may take GPU 1.
        const [g0, g1] = hostGpus([]);
        await withEnv(
          { [GPUS_ENV]: "0" },
          () =>
            mapWithSessions(["a"], 1, () => Promise.resolve(), {
              alone: true,
              gpus: [],
              perGpu: true,
            }),
        );
        assertEquals([idleSharedSessions(), gpuLockHolder(g1)], [1, null]);
        assertEquals(gpuLockHolder(g0)?.pid, Deno.pid);
      } finally {
        await closeSharedSessions();
      }
    });
  },
});
