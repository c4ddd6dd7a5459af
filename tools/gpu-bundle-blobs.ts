/**
 * Lists the safetensors blobs a GPU run of verify and time reads: those of the workloads verify
 * chooses (its default parameters, as on a GPU), relative to the store root, one per line. The
 * official MoE workloads alone are about 27 MB of incompressible random bytes, so bundling every
 * extracted blob overruns what one device call may carry (64 MiB); `tools/gpu-bundle.sh` packs these.
 *
 * Usage: deno run -A tools/gpu-bundle-blobs.ts STORE_ROOT [DEFINITION_REGEX]
 *
 * With `PROFILE=FILE` in the environment, verify's parameters come from that profile's `verify`
 * section (the regex argument still wins): a profile that judges every workload
 * (`max_workloads: 0`, as the decode characterization does) must carry every workload's blobs.
 */
import { relative, resolve } from "node:path";
import { Store } from "../pipeline/engine/mod.ts";
import { mergeUpstream, selectSolutions } from "../pipeline/harness/mod.ts";
import { chooseWorkloads, corpusRootsOf, VerifyParams } from "../stages/verify/mod.ts";

const [storeRoot, regex] = Deno.args;
if (!storeRoot) {
  console.error("usage: gpu-bundle-blobs.ts STORE_ROOT [DEFINITION_REGEX]");
  Deno.exit(2);
}
const store = new Store(resolve(storeRoot));
const upstream: Record<string, ReturnType<Store["lastResults"]> & object> = {};
for (const stage of ["definitions", "extract", "generate"]) {
  const results = store.lastResults(stage);
  if (!results) {
    console.error(
      `${storeRoot}: stage ${stage} has no run in this store (run reproduce --to generate)`,
    );
    Deno.exit(1);
  }
  upstream[stage] = results;
}
const profilePath = Deno.env.get("PROFILE");
let profileVerify: Record<string, unknown> = {};
if (profilePath) {
  try {
    profileVerify = JSON.parse(Deno.readTextFileSync(profilePath)).verify ?? {};
  } catch (e) {
    console.error(
      `${profilePath}: cannot read the profile's verify section: ${(e as Error).message}`,
    );
    Deno.exit(2);
  }
}
const parsed = VerifyParams.safeParse({
  ...profileVerify,
  ...(regex ? { definition_regex: regex } : {}),
});
if (!parsed.success) {
  const issue = parsed.error.issues[0];
  console.error(
    `${profilePath ?? "the command line"}: verify.${issue.path.join(".")}: ${issue.message}`,
  );
  Deno.exit(2);
}
const params = parsed.data;
const merged = mergeUpstream(upstream, ["definitions", "extract", "generate"]);
const corpusRoots = corpusRootsOf(upstream);
const definitions = new Set(selectSolutions(merged, params).map((s) => s.definition.name));
const blobs = new Set<string>();
for (const def of definitions) {
  for (const w of chooseWorkloads(merged, def, params, false, [], corpusRoots).judged) {
    for (const input of Object.values(w.workload.inputs)) {
      if (input.type === "safetensors") {
        blobs.add(relative(store.root, resolve(w.root, input.path)));
      }
    }
  }
}
console.log([...blobs].sort().join("\n"));
