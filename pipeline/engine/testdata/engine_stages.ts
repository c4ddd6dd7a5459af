/**
 * Small real stages for the engine tests: `letters` writes one file per item of its params,
 * `shout` upper-cases each of them. Setting TP_TEST_HANG_DIR makes `letters` write half its
 * output, drop a marker and hang, so a test can SIGKILL or SIGINT it mid-cell.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { defineStage } from "../stage.ts";
import { sha256 } from "../hash.ts";
import type { Gpu, Toolchain } from "../toolchain.ts";

/** A toolchain that needs no probing. */
export const FAKE_TOOLCHAIN: Toolchain = { os: "linux", arch: "x86_64", deno: "test", gpus: [] };

/** A GPU for tests that need one in the toolchain (nothing runs on it). */
export const FAKE_GPU: Gpu = {
  index: 0,
  name: "H100",
  uuid: "u",
  driver: "d",
  computeCapability: "9.0",
  memoryMiB: 1,
};

/** One cell per item, in the order of their ids, each with the params `params` gives it. */
export const itemCells = (items: Record<string, unknown>, params: (id: string) => unknown) =>
  Promise.resolve(Object.keys(items).sort().map((id) => ({ id, params: params(id), inputs: {} })));

const LettersParams = z.object({ items: z.record(z.string(), z.string()).default({ a: "x" }) });

/** One cell per item; each cell reads only its own item. */
export const letters = defineStage({
  name: "letters",
  description: "writes one file per item",
  policy: "pure",
  params: LettersParams,
  upstream: [],
  env: [],
  resource: "cpu",
  module: import.meta.url,
  toolchainFacts: () => ({}),
  plan: (ctx) => itemCells(ctx.params.items, (id) => ctx.params.items[id]),
  async run(job, ctx) {
    const text = ctx.params.items[job.plan.id];
    writeFileSync(join(job.outDir, "part1.txt"), text);
    const hang = Deno.env.get("TP_TEST_HANG_DIR");
    if (hang && existsSync(hang)) {
      writeFileSync(join(hang, `started-${job.plan.id}`), String(Deno.pid));
      // until killed, or until the run is interrupted (the way a harness call ends on Ctrl-C)
      await new Promise((_, reject) =>
        job.signal.addEventListener(
          "abort",
          () => reject(new Error(`letters ${job.plan.id} aborted`)),
        )
      );
    }
    writeFileSync(join(job.outDir, "value.txt"), text);
    job.setSummary({ length: text.length });
    job.log(`wrote ${text}`);
  },
});

/** One cell per upstream cell, keyed on that cell's output digest. */
export const shout = defineStage({
  name: "shout",
  description: "upper-cases each letters cell",
  policy: "pure",
  params: z.object({ suffix: z.string().default("!") }),
  upstream: ["letters"],
  env: [],
  resource: "cpu",
  module: import.meta.url,
  toolchainFacts: () => ({}),
  plan: (ctx) =>
    Promise.resolve(ctx.upstream.letters.map((c) => ({
      id: c.id,
      params: ctx.params.suffix,
      inputs: { letters: c.digest },
      payload: c.dir,
    }))),
  run(job, ctx) {
    const v = readFileSync(join(job.plan.payload as string, "value.txt"), "utf8");
    writeFileSync(join(job.outDir, "value.txt"), v.toUpperCase() + ctx.params.suffix);
    job.setSummary({ digest: sha256(v) });
    return Promise.resolve();
  },
});
