/**
 * The one way tracepipe picks its Python interpreter (the harness, `validate`'s syntax check, the
 * toolchain probe): TRACEPIPE_PYTHON when set, else the first of /usr/bin/python3 and python3 that
 * can import torch, else python3 on PATH, else none.
 */

let cached: Promise<string | null> | undefined;

async function runs(cmd: string, args: string[]): Promise<boolean> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output();
    return out.success;
  } catch {
    return false;
  }
}

async function discover(): Promise<string | null> {
  // find_spec locates torch without importing it (an import costs about a second).
  const hasTorch =
    "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('torch') else 1)";
  for (const cand of ["/usr/bin/python3", "python3"]) {
    if (await runs(cand, ["-c", hasTorch])) return cand;
  }
  return await runs("python3", ["-c", "pass"]) ? "python3" : null;
}

/** The interpreter to run Python with, or null when there is none (cached per process). */
export function findPython(): Promise<string | null> {
  const explicit = Deno.env.get("TRACEPIPE_PYTHON");
  if (explicit) return Promise.resolve(explicit);
  return cached ??= discover();
}
