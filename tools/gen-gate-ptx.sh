#!/usr/bin/env bash
# Regenerates the PTX of the timing gate embedded in pipeline/harness/judge/th_gate.py from
# pipeline/harness/gate/gate.cu (needs nvcc). The PTX is generated for compute_75 and its header lowered
# to PTX ISA 7.0 / sm_70: the kernel uses nothing newer (globaltimer, volatile loads, membar.sys,
# bar.sync), so any driver since CUDA 11.0 can load it. A test checks that the embedded PTX was made
# from the current gate.cu (its SHA-256) and, where ptxas exists, that it assembles for sm_90.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
src=$root/pipeline/harness/gate/gate.cu
ptx=$("$nvcc" -ptx -arch=compute_75 "$src" -o - |
  sed -e 's/^\.version .*/.version 7.0/' -e 's/^\.target .*/.target sm_70/' | grep -v '^// Compiler Build ID')
sha=$(sha256sum "$src" | cut -d' ' -f1)
python3 - "$root/pipeline/harness/judge/th_gate.py" "$sha" "$ptx" <<'PY'
import re, sys
path, sha, ptx = sys.argv[1], sys.argv[2], sys.argv[3]
src = open(path).read()
src = re.sub(r'GATE_CU_SHA256 = "[0-9a-f]*"', f'GATE_CU_SHA256 = "{sha}"', src)
src = re.sub(r'GATE_PTX = r""".*?"""', lambda m: 'GATE_PTX = r"""\n' + ptx.strip() + '\n"""', src, flags=re.S)
open(path, "w").write(src)
PY
echo "updated th_gate.py (gate.cu sha256 $sha)"
