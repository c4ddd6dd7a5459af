#!/usr/bin/env python3
"""Nsight Compute's numbers for `bench_gemm.py --ncu-cases`, one row per profiled call.

    python3 cuda/tools/wgmma/ncu_summary.py NCU_CSV BENCH_JSON [--json OUT.json]

NCU_CSV is `ncu --csv --page details` output (its `==PROF==` lines and any log lines before the header
are skipped); BENCH_JSON is the bench's `wgmma_bench.json`, whose `ncu_regions` list the profiled calls
in order. Kernels are assigned to calls in launch order: a call of ours launched exactly one
`gemm_sm90_kernel`, a cuBLAS call every kernel up to the next of ours. Prints a Markdown table (time,
the Speed Of Light throughputs, occupancy, grid, registers) and, with --json, writes the rows.
Exit status 2, with one line, when a file is missing or malformed or the kernels do not fit the calls.
"""
import csv
import io
import json
import sys

OURS = "gemm_sm90_kernel"
# (column, ncu metric name): the details page's names for the sections the bench's command asks for
COLUMNS = [("DRAM %", "DRAM Throughput"), ("memory %", "Memory Throughput"),
           ("SM %", "Compute (SM) Throughput"), ("occupancy %", "Achieved Occupancy"),
           ("grid", "Grid Size"), ("registers", "Registers Per Thread"),
           ("cycles/issue", "Warp Cycles Per Issued Instruction")]
TIME_UNITS = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
              "second": 1e6, "s": 1e6}


class Bad(Exception):
    pass


def read_kernels(text):
    """The profiled kernels in launch order: [{id, name, metrics: {name: (unit, value)}}]."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if '"Kernel Name"' in l and '"Metric Name"' in l), None)
    if start is None:
        raise Bad("no ncu CSV header (\"Kernel Name\", \"Metric Name\") found: was it run with --csv --page details?")
    rows = csv.DictReader(io.StringIO("\n".join(l for l in lines[start:] if not l.startswith("=="))))
    kernels, by_id = [], {}
    for r in rows:
        kid = r.get("ID")
        if kid is None or r.get("Kernel Name") is None:
            continue
        k = by_id.get(kid)
        if k is None:
            k = by_id[kid] = {"id": kid, "name": r["Kernel Name"], "metrics": {}}
            kernels.append(k)
        k["metrics"][r.get("Metric Name", "")] = (r.get("Metric Unit", ""), r.get("Metric Value", ""))
    return kernels


def number(v):
    try:
        return float(str(v).replace(",", ""))
    except ValueError:
        return None


def assign(regions, kernels):
    """[(region, [kernels])], or Bad when the kernels do not fit the calls."""
    out, i = [], 0
    for n, reg in enumerate(regions):
        what = f"call {n + 1} ({reg.get('who')} N={reg.get('N')} K={reg.get('K')} M={reg.get('M')})"
        if reg.get("ours"):
            if i >= len(kernels) or OURS not in kernels[i]["name"]:
                got = kernels[i]["name"] if i < len(kernels) else "no kernel left"
                raise Bad(f"{what}: expected one {OURS} launch, found {got!r}")
            out.append((reg, [kernels[i]]))
            i += 1
        else:
            j = i
            while j < len(kernels) and OURS not in kernels[j]["name"]:
                j += 1
            if j == i:
                raise Bad(f"{what}: no cuBLAS kernel was profiled")
            out.append((reg, kernels[i:j]))
            i = j
    if i != len(kernels):
        raise Bad(f"{len(kernels) - i} profiled kernels left over after {len(regions)} calls")
    return out


def row(reg, ks):
    us = 0.0
    for k in ks:
        unit, v = k["metrics"].get("Duration", ("", ""))
        if number(v) is None or unit not in TIME_UNITS:
            raise Bad(f"kernel {k['id']} ({k['name'][:60]}): no Duration metric (unit {unit!r})")
        us += number(v) * TIME_UNITS[unit]
    r = {"N": reg["N"], "K": reg["K"], "M": reg["M"], "who": reg["who"], "kernels": len(ks),
         "plan": reg.get("plan"), "us": round(us, 3)}
    # per call: the longest kernel's throughputs (a cuBLAS split-K call's GEMM, not its small reduction)
    main = max(ks, key=lambda k: number(k["metrics"]["Duration"][1]) * TIME_UNITS[k["metrics"]["Duration"][0]])
    for col, metric in COLUMNS:
        v = main["metrics"].get(metric, ("", ""))[1]
        r[col] = number(v) if number(v) is not None else (v or None)
    return r


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out_json = argv[argv.index("--json") + 1] if "--json" in argv else None
    try:
        try:
            text = open(argv[1], encoding="utf-8", errors="replace").read()
        except OSError as e:
            raise Bad(f"{argv[1]}: {e.strerror}")
        try:
            regions = json.load(open(argv[2]))["ncu_regions"]
        except OSError as e:
            raise Bad(f"{argv[2]}: {e.strerror}")
        except (ValueError, KeyError, TypeError) as e:
            raise Bad(f"{argv[2]}: not a bench JSON with ncu_regions ({e})")
        rows = [row(reg, ks) for reg, ks in assign(regions, read_kernels(text))]
    except Bad as e:
        print(f"ncu_summary: {e}", file=sys.stderr)
        return 2
    head = ["N", "K", "M", "who", "plan", "kernels", "us"] + [c for c, _ in COLUMNS]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        plan = f"{r['plan']['cfg']}/s{r['plan']['splits']} x{r['plan']['grid']}" if r["plan"] else ""
        cells = [r["N"], r["K"], r["M"], r["who"], plan, r["kernels"], r["us"]] + [r[c] for c, _ in COLUMNS]
        print("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    if out_json:
        with open(out_json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
