#!/usr/bin/env python3
"""Regenerate the wgmma wrappers inside gemm_sm90.cu (between the GENERATED-BEGIN/END markers)
from gen_wgmma.py. Idempotent: python3 make_cu.py"""
import os
import re
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
gen = subprocess.run([sys.executable, os.path.join(here, "gen_wgmma.py")], check=True,
                     capture_output=True, text=True).stdout.rstrip("\n")
path = os.path.normpath(os.path.join(here, "..", "..", "gemm_sm90", "gemm_sm90.cu"))
src = open(path).read()
pat = re.compile(r"(// GENERATED-BEGIN \(gen_wgmma\.py\)\n).*?(\n// GENERATED-END)", re.S)
assert pat.search(src), "markers not found"
new = pat.sub(lambda m: m.group(1) + gen + m.group(2), src)
if new != src:
    open(path, "w").write(new)
    print("gemm_sm90.cu updated")
else:
    print("gemm_sm90.cu up to date")
