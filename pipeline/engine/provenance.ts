/** Facts about the run itself that go into every cell's provenance record. */
import { hostname } from "node:os";
import { tryRun } from "./toolchain.ts";

/** The git commit of the checkout, and whether it has uncommitted changes. */
export interface BuilderInfo {
  gitCommit: string | null;
  gitDirty: boolean | null;
  host: string;
  deno: string;
  invocationId: string;
}

/** Reads the builder facts once per run. */
export async function builderInfo(root: string): Promise<BuilderInfo> {
  const commit = await tryRun("git", ["-C", root, "rev-parse", "HEAD"]);
  const status = commit === null
    ? null
    : await tryRun("git", ["-C", root, "status", "--porcelain"]);
  return {
    gitCommit: commit,
    gitDirty: status === null ? null : status.length > 0,
    host: hostname(),
    deno: Deno.version.deno,
    invocationId: crypto.randomUUID(),
  };
}
