#!/usr/bin/env bash
# Judging throughput on the GPU machine (docs/BENCHMARKS.md, "Judging throughput"): runs
# `reproduce --from compile --to time` through tools/gpu-run.sh on one definition selection and keeps
# its log as $OUT/<name>.log, whose summary table has the verify and time stage walls. Builds must be
# warm (.device/gpu-builds.tar.xz) for the figure to mean "warm builds".
# Usage: bash tools/gpu-throughput.sh NAME REGEX SECONDS [extra --set arguments]
set -uo pipefail
name=${1:?name} regex=${2:?definition regex} limit=${3:-300}
shift 3
bash "$(dirname "$0")/gpu-run.sh" "$limit" --set "compile.definition_regex=$regex" \
  --set "verify.definition_regex=$regex" --set "time.definition_regex=$regex" "$@" >/dev/null
cp "$OUT/reproduce.log" "$OUT/$name.log"
grep -E "^(compile|verify|time) " "$OUT/$name.log" | sed "s/^/[$name] /"
