#!/usr/bin/env bash
# Unpacks what tools/gpu-bundle.sh and earlier GPU calls left in .device/ (run in the repository
# root), each bundle once per machine: a marker named for the bundle's sha256 says it is unpacked,
# so a second gpu-run.sh invocation on the same machine does not unpack the store bundles again
# over what the first one wrote (its run index), while a new bundle (another digest) still is.
#   .device/deno.xz            the Deno binary          -> $TP_BIN_DIR/deno (default /tmp/tpbin)
#   .device/store.tar.xz       definitions..generate    -> .tracepipe/store
#   .device/gpu-store.tar.xz   an earlier call's judging cells -> .tracepipe/store
#   .device/gpu-builds.tar.xz  an earlier call's builds -> .tracepipe/harness
# Usage: bash tools/gpu-unpack.sh
#   TP_STORE_BUNDLE=NAME takes .device/NAME for store.tar.xz and TP_STORE=DIR unpacks the store
#   bundles into DIR: two profiles' bundles (tools/gpu-bundle.sh with BUNDLE=NAME) can travel in one
#   call and be judged one after the other on the same machine, each in a store of its own.
#   TP_GPU_STORE=NAME takes .device/NAME for gpu-store.tar.xz: an earlier session's judging cells of
#   that other profile (its verify cells, say), unpacked into its store and never into the default one.
set -euo pipefail
bin=${TP_BIN_DIR:-/tmp/tpbin}
store=${TP_STORE:-.tracepipe/store}
bundle=.device/${TP_STORE_BUNDLE:-store.tar.xz}

# once FILE DEST COMMAND...: runs COMMAND (which unpacks FILE into DEST) unless DEST holds the marker
# of FILE's digest; the marker is written only after COMMAND succeeded.
once() {
  local file=$1 dest=$2
  shift 2
  [ -f "$file" ] || return 0
  local sum
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  local marker="$dest/.unpacked-$(basename "$file")-$sum"
  if [ -e "$marker" ]; then
    echo "gpu-unpack: $file already unpacked here (sha256 ${sum:0:12})"
    return 0
  fi
  mkdir -p "$dest"
  "$@"
  touch "$marker"
  echo "gpu-unpack: unpacked $file into $dest"
}

once .device/deno.xz "$bin" sh -c 'xz -dc .device/deno.xz >"$1/deno.tmp" && chmod +x "$1/deno.tmp" && mv "$1/deno.tmp" "$1/deno"' sh "$bin"
once "$bundle" "$store" tar xJf "$bundle" -C "$store"
judged=.device/${TP_GPU_STORE:-gpu-store.tar.xz}
once "$judged" "$store" tar xJf "$judged" -C "$store"
# torch-extension builds of an earlier call on another machine (content-hash directories: reused as is)
once .device/gpu-builds.tar.xz .tracepipe/harness tar xJf .device/gpu-builds.tar.xz -C .tracepipe/harness
