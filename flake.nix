{
  description = "tracepipe: FlashInfer-Bench reproduced as a content-addressed pipeline (pinned toolchain)";

  # Pin nixpkgs by running `nix flake lock` once (it writes flake.lock); commit flake.lock so every
  # user gets the same deno, nvcc, python, torch and triton. `nix flake update` moves the pin.
  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, flake-utils }:
    flake-utils.lib.eachSystem [ "x86_64-linux" "aarch64-linux" ] (system:
      let
        pkgs = import nixpkgs {
          inherit system;
          # CUDA is unfree; cudaSupport builds torch and triton against it.
          config = {
            allowUnfree = true;
            cudaSupport = true;
          };
        };
        cuda = pkgs.cudaPackages;
        python = pkgs.python312.withPackages (ps: [
          ps.torch
          ps.triton
          ps.numpy
          ps.ninja
        ]);
        toolchain = [
          pkgs.deno
          pkgs.nodejs_22 # npm installs the npm packages the Deno code imports
          python
          cuda.cuda_nvcc
          cuda.cuda_cudart
          cuda.cuda_cccl
          cuda.libcublas
          pkgs.ninja
          pkgs.git
          pkgs.gnutar # shipped runs pack their bulky cells as cells.tar.xz (results/README.md)
          pkgs.xz
        ];
      in
      {
        devShells.default = pkgs.mkShell {
          packages = toolchain;
          # The pipeline records these store paths as its toolchain fingerprint: they are
          # input-addressed, so they pin versions and build inputs at once.
          TRACEPIPE_NIX_STORE_PATHS = pkgs.lib.concatStringsSep ":" (map toString toolchain);
          TRACEPIPE_PYTHON = "${python}/bin/python3";
          CUDA_HOME = "${cuda.cuda_nvcc}";
          shellHook = ''
            # The NVIDIA driver's libcuda comes from the host, not from Nix.
            export LD_LIBRARY_PATH=/run/opengl-driver/lib:/usr/lib/x86_64-linux-gnu''${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            echo "tracepipe dev shell: deno ${pkgs.deno.version}, nvcc ${cuda.cuda_nvcc.version}, python ${python.python.version}"
          '';
        };

        # `nix run .#reproduce` runs the main job inside the pinned toolchain.
        apps.reproduce = {
          type = "app";
          program = toString (pkgs.writeShellScript "tracepipe-reproduce" ''
            export PATH=${pkgs.lib.makeBinPath toolchain}:$PATH
            export TRACEPIPE_PYTHON=${python}/bin/python3
            export CUDA_HOME=${cuda.cuda_nvcc}
            export TRACEPIPE_NIX_STORE_PATHS=${pkgs.lib.concatStringsSep ":" (map toString toolchain)}
            npm ci --no-audit --no-fund && exec deno task reproduce "$@"
          '');
        };
      });
}
