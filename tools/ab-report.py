"""Summarises what tools/gpu-ab.sh brought back (docs/BENCHMARKS.md): per run, the verify and time stage
walls and the cells verified-and-timed per GPU-minute; between runs of the same checkout, how far the same
cells' candidate medians moved; per run, the samples taken, the gate's counts, the time cells' phases and
the cells the tail check charged.

    python3 tools/ab-report.py DIR      # DIR: ab.tar.xz unpacked (one folder and one store per run)
"""

import collections
import glob
import json
import os
import re
import shutil
import statistics
import sys
import tarfile
import tempfile

SUMMARY = re.compile(r"^(compile|verify|time)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)s")
JOB_PHASES = re.compile(r"^\[(verify|time)\] .*\[((?:[a-z_]+ [\d.]+s(?:, )?)+)\]")
SECOND_RUN_MARK = 268435457  # tools/gpu-ab.sh's second runs set time.input_sets_max_bytes to this


def stage_walls(log):
    """{stage: (cells run, seconds)} from the reproduce summary table, and summed job phases per stage."""
    walls, phases = {}, collections.defaultdict(collections.Counter)
    for line in open(log, errors="replace"):
        m = SUMMARY.match(line)
        if m:
            walls[m.group(1)] = (int(m.group(4)), float(m.group(7)))
        m = JOB_PHASES.match(line)
        if m:
            for part in m.group(2).split(", "):
                name, secs = part.rsplit(" ", 1)
                phases[m.group(1)][name] += float(secs[:-1])
    return walls, phases


def time_cells(store_tar, run, second, scratch):
    """{(solution, workload): details} of the run's time cells (its own key: first or second run)."""
    dest = os.path.join(scratch, run)
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(store_tar) as t:
        try:
            t.extractall(dest, filter="data")
        except TypeError:  # Python before 3.11.4: no extraction filters (the archive is our own)
            t.extractall(dest)
    cells = {}
    for f in glob.glob(dest + "/cells/time/*/out/timing.json"):
        cell = json.load(open(os.path.join(os.path.dirname(os.path.dirname(f)), "cell.json")))
        if (cell["keyDocument"]["params"].get("input_sets_max_bytes") == SECOND_RUN_MARK) != second:
            continue
        x = json.load(open(f))
        cells[(x["solution"], x["workload"])] = x.get("details") or {}
    return cells


def candidate_median(det):
    c = det.get("candidate")
    return c.get("median_ms") if isinstance(c, dict) else None


def agreement(a, b):
    """Relative moves of the same cells' candidate medians between two runs."""
    moves = []
    for k, da in a.items():
        ma, mb = candidate_median(da), candidate_median(b.get(k) or {})
        if ma and mb:
            moves.append(abs(mb / ma - 1))
    return sorted(moves)


KINDS = ("charged by the tail check", "host-bound (some samples outlasted the hold)",
         "device-bound (the host released every sample)", "ungated")


def cell_kind(det):
    """What the candidate's samples measured: index into KINDS (lower: less precise)."""
    if "async_work_after_return" in (det.get("rigor") or []):
        return 0
    g = (det.get("gate") or {}).get("candidate") or {}
    if not g or g.get("on") is False:
        return 3
    return 1 if g.get("hold_expired", 0) else 2


def agreement_by_kind(a, b):
    """agreement() split by what the samples measured, each pair filed under the less precise run's kind."""
    split = collections.defaultdict(list)
    for k, da in a.items():
        db = b.get(k) or {}
        ma, mb = candidate_median(da), candidate_median(db)
        if ma and mb:
            split[KINDS[min(cell_kind(da), cell_kind(db))]].append(abs(mb / ma - 1))
    return {kind: sorted(m) for kind, m in split.items()}


def describe_moves(m):
    return (f"{len(m)} cells; candidate medians moved median {statistics.median(m) * 100:.1f}%, "
            f"p90 {m[int(0.9 * (len(m) - 1))] * 100:.1f}%, max {m[-1] * 100:.1f}%")


def main(root, scratch):
    runs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    cells = {}
    for r in runs:
        log = os.path.join(root, r, f"{r}.log")
        if not os.path.exists(log):
            continue
        walls, phases = stage_walls(log)
        v, t = walls.get("verify", (0, 0.0)), walls.get("time", (0, 0.0))
        rate = t[0] / ((v[1] + t[1]) / 60) if v[1] + t[1] else 0.0
        print(f"{r}: compile {walls.get('compile', (0, 0.0))[1]:.1f}s, verify {v[0]} cells {v[1]:.1f}s, "
              f"time {t[0]} cells {t[1]:.1f}s -> {rate:.1f} cells per GPU-minute")
        for stage, ph in phases.items():
            print(f"  {stage} job phases: " + ", ".join(f"{k} {s:.1f}s" for k, s in ph.items()))
        store = os.path.join(root, f"{r}.store.tar.xz")
        if os.path.exists(store):
            cells[r] = time_cells(store, r, r.endswith("2"), scratch)
    for prefix in sorted({r.rstrip("0123456789") for r in cells}):  # old1, old2: one checkout
        same = [r for r in runs if r.rstrip("0123456789") == prefix and r in cells]
        for i, a in enumerate(same):
            for b in same[i + 1:]:
                m = agreement(cells[a], cells[b])
                if m:
                    print(f"{a} vs {b}: {describe_moves(m)}")
                    for kind, km in sorted(agreement_by_kind(cells[a], cells[b]).items()):
                        print(f"  {kind}: {describe_moves(km)}")
    for r, cs in cells.items():
        samples, gate, phases, prep = collections.Counter(), collections.Counter(), collections.Counter(), []
        for det in cs.values():
            for role in ("candidate", "reference", "baseline"):
                if isinstance(det.get(role), dict) and role not in (det.get("reused") or []):
                    samples[role] += det[role].get("n") or 0
            for role, g in (det.get("gate") or {}).items():
                gate[f"{role} released"] += g.get("opened_by_host", 0)
                gate[f"{role} expired"] += g.get("hold_expired", 0)
                if role == "candidate" and g.get("harness_prep_median_ms") is not None:
                    prep.append(g["harness_prep_median_ms"] * 1000)
            for k, s in (det.get("phase_s") or {}).items():
                phases[k] += s
        print(f"{r}: samples {dict(samples)}; gate {dict(gate) or 'off'}"
              + (f"; harness prep behind the gate median {statistics.median(prep):.1f} us" if prep else ""))
        print(f"  time cell phases: " + ", ".join(f"{k} {s:.1f}s" for k, s in phases.items()))
        for (sol, wl), det in sorted(cs.items()):
            if "async_work_after_return" in (det.get("rigor") or []):
                print(f"  charged by the tail check: {sol} / {wl}: {det.get('tail_ms')}")


if __name__ == "__main__":
    tmp = tempfile.mkdtemp(prefix="ab-report-")
    try:
        main(sys.argv[1], tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
