/**
 * Nix cannot build here (no network to nixpkgs), but Debian's nix-bin can parse flake.nix, and
 * the dev shell must name the toolchain pieces the pipeline fingerprints.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { assert, assertEquals } from "./assert.ts";
import { REPO_ROOT, tryRun } from "../pipeline/engine/mod.ts";

const flake = join(REPO_ROOT, "flake.nix");
const nixInstantiate = await tryRun("nix-instantiate", ["--version"]);
if (nixInstantiate === null) {
  console.log(
    "skipping the flake parse test: nix-instantiate is not installed (apt-get install nix-bin)",
  );
}

Deno.test({
  name: "flake.nix parses with nix-instantiate --parse",
  ignore: nixInstantiate === null,
  async fn() {
    const out = await new Deno.Command("nix-instantiate", {
      args: ["--parse", flake],
      stdout: "null",
      stderr: "piped",
    })
      .output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  },
});

Deno.test("the dev shell pins deno, nvcc, python with torch and triton, with CUDA enabled", () => {
  const text = readFileSync(flake, "utf8");
  for (
    const piece of [
      "pkgs.deno",
      "cuda.cuda_nvcc",
      "ps.torch",
      "ps.triton",
      "cudaSupport = true",
      "TRACEPIPE_NIX_STORE_PATHS",
    ]
  ) {
    assert(text.includes(piece), `flake.nix lacks ${piece}`);
  }
});
