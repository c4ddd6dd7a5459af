"""The harness's judging checks: serve mode, the sampling test, the cheater catalog with its honest controls,
the timing defences, and (on a GPU) the timing gate. Run by test_harness.py."""

import ctypes
import json
import math
import os
import subprocess
import sys

import torch

from th_testlib import JUDGE, REPORT, check  # first: puts the judge and cheaters/ on sys.path

import catalog  # noqa: E402
from th_run import run_harness  # noqa: E402


def serve_tests(work, device):
    """Serve mode: one judge answers several jobs; a bad request gets an error reply; workers started between
    jobs (spares) serve the next job; a candidate out of memory beside other judges is run again alone."""
    dname = "tp_relu_f32"
    flag = os.path.join(work, "oom_once.flag")
    oom_once = ("import os, torch\n\ndef run(x):\n"
                f"    if not os.path.exists({flag!r}):\n"
                f"        open({flag!r}, 'w').close()\n"
                "        raise RuntimeError('CUDA out of memory. Tried to allocate 4.00 GiB')\n"
                "    return torch.relu(x)\n")
    oom_always = "def run(x):\n    raise RuntimeError('CUDA out of memory. Tried to allocate 4.00 GiB')\n"
    sols = [catalog.sol("honest", dname, catalog.RELU_VR), catalog.sol("oom_once", dname, oom_once),
            catalog.sol("oom_always", dname, oom_always)]
    job = {"device": device, "work_dir": os.path.join(work, "hw"), "definition": catalog.DEFS[dname],
           "solutions": sols, "workloads": catalog.WORKLOADS[dname][:1], "config": {"num_trials": 1}}
    jp = os.path.join(work, "serve_job.json")
    with open(jp, "w") as f:
        json.dump(job, f)
    outs = [os.path.join(work, f"serve_{i}.json") for i in range(2)]
    lines = ["not json", json.dumps({"id": 7})] + [
        json.dumps({"id": i, "command": "verify", "job": jp, "out": o}) for i, o in enumerate(outs)]
    p = subprocess.run([sys.executable, JUDGE, "serve"],
                       input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=300)
    replies = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
    check("serve: ready line, an error reply per bad request, one done per job, nothing else on stdout",
          p.returncode == 0 and "tp_ready" in replies[0] and [("tp_error" in r) for r in replies[1:3]] == [True, True]
          and [r.get("tp_done") for r in replies[3:]] == [0, 1] and all(r["code"] == 0 for r in replies[3:]),
          str(replies) + p.stderr[-1500:])
    res = []
    for o in outs:
        with open(o) as f:
            res.append({r["solution"]: r for r in json.load(f)["results"]})
    st = [{k: v["evaluation"]["status"] for k, v in r.items()} for r in res]
    check("serve: both jobs judged alike", st[0]["honest"] == st[1]["honest"] == "PASSED", str(st))
    check("serve: the second job's first worker was started between the jobs",
          res[1]["honest"]["details"]["startup_s"]["spare"] is True
          and res[0]["honest"]["details"]["startup_s"]["spare"] is False, str(res[1]["honest"]["details"]))
    first = res[0]
    check("out of memory once: run again alone, then PASSED with a note",
          first["oom_once"]["evaluation"]["status"] == "PASSED" and first["oom_once"]["details"]["retried"]
          and "run again alone" in first["oom_once"]["evaluation"]["log"], str(first["oom_once"]["details"]))
    check("out of memory alone too: RUNTIME_ERROR, blamed on the candidate",
          first["oom_always"]["evaluation"]["status"] == "RUNTIME_ERROR"
          and first["oom_always"]["details"]["retried"], str(first["oom_always"]["details"]))


def sampling_tvd_test(work, device):
    """The TVD test passes early once a tenth of the samples is clearly under the threshold; failing a sampler
    takes every sample."""
    dname = "tp_sampling_top_k"
    good = next(c["solution"] for c in catalog.CASES if c["id"] == "ok_sampling_top_k")
    mode = next(c["solution"] for c in catalog.CASES if c["id"] == "sampling_argmax")
    job = {"device": device, "work_dir": os.path.join(work, "hw"), "definition": catalog.DEFS[dname],
           "solutions": [good, mode], "workloads": catalog.WORKLOADS[dname][:1],
           "config": {"sampling_samples_per_row": 20000, "sampling_validation_trials": 5}}
    rc, res, err, _ = run_harness("verify", job, work)
    by = {r["solution"]: r["evaluation"] for r in res["results"]}
    n = {k: (v["correctness"] or {}).get("extra", {}).get("tvd_samples_per_row") for k, v in by.items()}
    stat = {k: (v["correctness"] or {}).get("extra", {}).get("tvd_statistic") for k, v in by.items()}
    check("sampling TVD: an honest sampler passes on a tenth of the samples, the mode-sampler fails on all",
          rc == 0 and by[good["name"]]["status"] == "PASSED" and n[good["name"]] == 5000
          and by[mode["name"]]["status"] == "INCORRECT_NUMERICAL" and n[mode["name"]] == 20000, str(n) + err[-800:])
    check("sampling TVD: a 32-token vocabulary keeps flashinfer-bench's full TVD", set(stat.values()) == {"full"},
          str(stat))


def cheater_tests(work, device, only, jobs=1):
    groups = {}
    for c in catalog.CASES:
        if only and only not in c["id"]:
            continue
        if (device == "cpu" and not c["cpu"]) or (device == "cuda" and not c["gpu"]):
            continue
        key = (c["solution"]["definition"], json.dumps(c["config"], sort_keys=True))
        groups.setdefault(key, []).append(c)
    chunks = []
    for key, cases in groups.items():
        size = max(1, -(-len(cases) // max(1, jobs))) if jobs > 1 else len(cases)
        chunks += [(key, cases[i:i + size]) for i in range(0, len(cases), size)]
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        list(ex.map(lambda kc: run_group(work, device, kc[0], kc[1]), chunks))


def run_group(work, device, key, cases):
    if True:
        dname, cfg = key
        config = {"num_trials": 3, "timeout_s": 60, "sampling_samples_per_row": 20000,
                  "sampling_validation_trials": 20}
        config.update(json.loads(cfg))
        job = {"device": device, "work_dir": os.path.join(work, "hw"), "definition": catalog.DEFS[dname],
               "solutions": [c["solution"] for c in cases], "workloads": catalog.WORKLOADS[dname], "config": config}
        rc, res, err, dt = run_harness("verify", job, work)
        if rc != 0:
            check(f"verify job {dname} ran", False, err[-2000:])
            return
        by_sol = {}
        for r in res["results"]:
            by_sol.setdefault(r["solution"], []).append(r)
        for c in cases:
            rs = by_sol.get(c["solution"]["name"], [])
            statuses = [r["evaluation"]["status"] if r["evaluation"] else r["outcome"] for r in rs]
            rigor = sorted({t.split(":")[0] for r in rs for t in (r.get("details") or {}).get("rigor", [])})
            want = c["expect"] if isinstance(c["expect"], list) else [c["expect"]] * len(catalog.WORKLOADS[dname])
            ok = statuses == want
            if c["rigor"]:
                ok = ok and c["rigor"] in rigor
            REPORT.append({"id": c["id"], "family": c["family"], "expect": c["expect"], "got": statuses,
                           "rigor": rigor, "device": device})
            check(f"{c['id']}: {c['family']}", ok, f"got {statuses} rigor={rigor}")
        print(f"     ({dname}: {len(cases)} solutions in {dt:.1f} s)", flush=True)


def timing_tests(work, device):
    base_cfg = {"timeout_s": 120, "timing": {"rounds": 2, "warmup_calls": 2, "warmup_ms": 1, "min_samples": 8,
                                             "max_samples": 8, "max_seconds": 5, "input_sets": 4}}
    d = catalog.DEFS["tp_relu_f32"]
    wl = [catalog.WORKLOADS["tp_relu_f32"][0]]
    job = {"device": device, "work_dir": os.path.join(work, "hw"), "definition": d, "workloads": wl,
           "solutions": [catalog.sol("ok_relu_dps", "tp_relu_f32", catalog.RELU_DPS, dps=True), catalog.HONEST_SLEEP,
                         catalog.FINGERPRINT_CACHE, catalog.STALE_REPLAY,
                         catalog.sol("ok_relu_vr", "tp_relu_f32", catalog.RELU_VR)],
           "baseline": catalog.sol("ok_relu_dps", "tp_relu_f32", catalog.RELU_DPS, dps=True), "config": base_cfg}
    rc, res, err, dt = run_harness("time", job, work)
    if rc != 0:
        check("time job ran", False, err[-2000:])
        return
    r = {x["solution"]: x for x in res["results"]}
    hs = r["honest_sleep_20ms"]
    check("time: honest control PASSED with performance",
          hs["evaluation"]["status"] == "PASSED" and hs["evaluation"]["performance"]["latency_ms"] >= 19.0,
          f"{hs['evaluation']['status']} {hs['evaluation'].get('performance')}")
    det = hs["details"]
    check("time: raw samples + stats from the judge", det["candidate"]["n"] == 8 and
          len(det["candidate"]["samples_ms"]) == 8 and det["reference"]["n"] == 8 and det["baseline"]["n"] == 8
          and len(det["candidate"]["rounds"]) == 2)
    bd = r["ok_relu_dps"]["details"]
    check("time: the baseline judged as a candidate is not timed again beside itself (speedup 1, its samples "
          "the baseline's for the later cells)",
          bd.get("baseline_from") == "candidate" and "baseline" not in bd["phase_s"]
          and bd["speedup_vs_baseline"] == 1.0 and bd["baseline"]["samples_ms"] == bd["candidate"]["samples_ms"]
          and "baseline" in (bd.get("tail_ms") or {}).get("honest_medians", {})
          and "baseline" in det.get("reused", []) and det["baseline"]["samples_ms"] == bd["candidate"]["samples_ms"],
          f"{bd.get('baseline_from')} {bd['phase_s']} {bd.get('speedup_vs_baseline')} {det.get('reused')}")
    tq = (det.get("tail_ms") or {}).get("candidate_quartiles")
    check("time: the tail check reports the candidate's tail quartiles beside the no-op's",
          isinstance(tq, list) and len(tq) == 2 and tq[0] <= tq[1] and "noop_quartiles" in det["tail_ms"],
          str(det.get("tail_ms")))
    g = (det.get("gate") or {}).get("candidate") or {}
    if device == "cpu":
        check("time: the gate is reported off on the CPU, with the host's submission times",
              g.get("on") is False and g.get("reason") == "cpu" and g.get("host_submit_median_ms", 0) >= 19.0, str(g))
    else:
        check("time: the gate's report counts every measured sample",
              g.get("on") and g.get("opened_by_host", 0) + g.get("hold_expired", 0) == det["candidate"]["n"], str(g))
    sp = hs["evaluation"]["performance"]["speedup_factor"]
    check("time: speedup_factor = reference/candidate",
          abs(sp - det["reference"]["median_ms"] / det["candidate"]["median_ms"]) < 1e-9)
    fc = r["cheat_fingerprint_cache"]
    lat = fc["evaluation"].get("performance", {}) or {}
    check("[4] fingerprint cache never hits under rotated+perturbed inputs (median >= 19 ms)",
          fc["evaluation"]["status"] == "PASSED" and lat.get("latency_ms", 0) >= 19.0, f"{lat}")
    sr = r["cheat_stale_replay"]
    check("[4,5] stale replay caught by the post-timing recheck",
          sr["evaluation"]["status"] == "INCORRECT_NUMERICAL" and "post_timing_recheck_failed" in sr["details"]["rigor"],
          sr["evaluation"]["status"])
    REPORT.append({"id": "fingerprint_cache_timing", "family": "[4] cache on content fingerprint",
                   "expect": "median >= 19 ms", "got": [lat.get("latency_ms")], "device": device})
    REPORT.append({"id": "stale_replay_timing", "family": "[4,5] replay in timing", "expect": "INCORRECT_NUMERICAL",
                   "got": [sr["evaluation"]["status"]], "device": device})
    # The defence can fail: with one input set and no perturbation the same cheater replays its cache.
    cfg2 = json.loads(json.dumps(base_cfg))
    cfg2["timing"].update(input_sets=1, perturb_inputs=False)
    job2 = dict(job, solutions=[catalog.FINGERPRINT_CACHE], baseline=None, config=cfg2)
    rc, res2, err, _ = run_harness("time", job2, work)
    lat2 = res2["results"][0]["evaluation"].get("performance") or {}
    check("control: without rotation the fingerprint cache does fool the timer (< 5 ms)",
          rc == 0 and lat2.get("latency_ms", 99) < 5.0, f"{lat2}")
    # Samplers: the post-timing recheck checks the mask (random samples never equal the reference's).
    samp = [c["solution"] for c in catalog.CASES if c["id"] in ("ok_sampling_top_k", "sampling_outside_mask")]
    job_s = {"device": device, "work_dir": os.path.join(work, "hw"), "definition": catalog.DEFS["tp_sampling_top_k"],
             "workloads": catalog.WORKLOADS["tp_sampling_top_k"][:1], "solutions": samp, "config": base_cfg}
    rc, res_s, err, _ = run_harness("time", job_s, work)
    st = {x["solution"]: x["evaluation"]["status"] for x in res_s.get("results", [])}
    check("time: an honest sampler passes the post-timing recheck, a maskless one fails it",
          rc == 0 and st.get("ok_sampling") == "PASSED" and st.get("cheat_nomask") == "INCORRECT_NUMERICAL", str(st))
    # Roofline floor: a fake 1e-3 GB/s peak makes every honest time 'too fast'? No: a huge peak never rejects,
    # a tiny one must reject.
    cfg3 = json.loads(json.dumps(base_cfg))
    cfg3["timing"]["peak_bandwidth_gbps"] = 1e-6
    job3 = dict(job, solutions=[catalog.sol("ok_relu_vr", "tp_relu_f32", catalog.RELU_VR)], baseline=None,
                config=cfg3)
    rc, res3, err, _ = run_harness("time", job3, work)
    r3 = res3["results"][0]
    check("[20] time below the roofline floor is rejected",
          r3["evaluation"]["status"] == "RUNTIME_ERROR" and "below_roofline_floor" in r3["details"]["rigor"])
    if device != "cpu":
        tail_charge_tests(job, base_cfg, work)


def tail_charge_tests(job, base_cfg, work):
    """GPU only: the tail check charges work left running on a side stream after the call returns (about 1 ms
    of `_sleep`), and not an honest kernel judged in the same job against the same honest tails (issue 23:
    the check must keep charging the cheater while it charges no honest cell)."""
    honest = catalog.sol("ok_relu_vr", "tp_relu_f32", catalog.RELU_VR)
    # The honest kernel first: the reference is timed beside it, and the cheater is judged against those
    # reused tails, so its charge also goes through the confirmation that re-times them (confirm_tail_charge).
    job4 = dict(job, solutions=[honest, catalog.SIDE_STREAM_SLEEP], baseline=None, config=base_cfg)
    rc, res4, err, _ = run_harness("time", job4, work)
    if rc != 0:
        check("tail check job ran", False, err[-2000:])
        return
    r4 = {x["solution"]: x for x in res4["results"]}
    cheat, ok = r4["cheat_side_stream_sleep"], r4["ok_relu_vr"]
    lat = (cheat["evaluation"].get("performance") or {}).get("latency_ms", 0)
    check("tail check: 1 ms left on a side stream is charged (async_work_after_return, timed at >= 0.9 ms)",
          "async_work_after_return" in cheat["details"]["rigor"] and lat >= 0.9,
          f"rigor={cheat['details']['rigor']} latency_ms={lat} tail={cheat['details'].get('tail_ms')}")
    check("tail check: the honest kernel of the same job is not charged",
          "async_work_after_return" not in ok["details"]["rigor"] and ok["evaluation"]["status"] == "PASSED",
          f"{ok['evaluation']['status']} rigor={ok['details']['rigor']}")


def gate_copy_tests():
    """GPU only: once open, the gate writes the call's inputs (any size or alignment) and zeroes the flush
    buffer, and every launch passes its grid barrier (no launch waits out the barrier's deadline)."""
    import th_gate
    stream = torch.cuda.current_stream()
    base = torch.randint(0, 256, (1 << 20,), dtype=torch.uint8, device="cuda")
    srcs = [torch.randn(4096 * 3 + 1, device="cuda"), base[1:18], base[3:3 + 100_003], torch.randn(1, device="cuda"),
            torch.randn(257, 129, device="cuda").to(torch.bfloat16)]
    flush = torch.full((3 << 20,), 0x5A, dtype=torch.uint8, device="cuda")
    g = th_gate.Gate()  # in the context torch made current above
    g.set_hold_ns(100_000)
    ok, why = True, []
    for k, release in enumerate((True, False, True)):
        dsts = [torch.full_like(src, 7) for src in srcs]
        flush.fill_(0x5A)
        torch.cuda.synchronize()
        g.hold(stream.cuda_stream, [(d.data_ptr(), src.data_ptr(), d.numel() * d.element_size())
                                    for d, src in zip(dsts, srcs)], (flush.data_ptr(), flush.numel()))
        g.arm()
        if release:
            g.release()
        torch.cuda.synchronize()
        want = th_gate.OPENED_BY_HOST if release else th_gate.OPENED_BY_EXPIRY
        if not all(torch.equal(d, src) for d, src in zip(dsts, srcs)):
            ok, why = False, why + [f"gate {k}: an input differs from its source"]
        if int(flush.count_nonzero()) != 0:
            ok, why = False, why + [f"gate {k}: the flush buffer is not zeroed"]
        if g.opened_by() != want:
            ok, why = False, why + [f"gate {k}: opened by {g.opened_by()}, not {want}"]
    count = torch.empty(1, dtype=torch.int64, device="cuda")
    g.cu.cuMemcpyDtoD_v2(ctypes.c_uint64(count.data_ptr()), ctypes.c_uint64(g.dev.value + 8), ctypes.c_size_t(8))
    torch.cuda.synchronize()
    passed = int(count.item())
    if passed != 3 * g.blocks:
        ok, why = False, why + [f"barrier count {passed}, not 3 x {g.blocks} blocks"]
    check("gate: once open it writes the inputs (any size, any alignment), zeroes the flush buffer and passes its "
          "grid barrier", ok, "; ".join(why) or f"{len(srcs)} copies x 3 gates, {g.blocks} blocks")


def gate_timing_tests(work):
    """GPU only: the timing gate keeps host submission latency out of samples (up to its hold), charges what
    exceeds the hold, keeps side-stream work from running ahead of the measurement, and never hangs a call
    that synchronises."""
    d = catalog.DEFS["tp_relu_f32"]
    wl = [{"uuid": "relu-16k", "axes": {"n": 16384}, "inputs": {"x": {"type": "random"}}}]
    sols = [catalog.host_delay(30), catalog.host_delay(400), catalog.GATE_SIDE_WORK, catalog.GATE_SAME_WORK,
            catalog.GATE_SYNC_IN_CALL, catalog.GATE_HOST_OFFLOAD]
    timing = {"rounds": 2, "warmup_calls": 3, "warmup_ms": 2, "min_samples": 20, "max_samples": 20, "max_seconds": 5,
              "input_sets": 2, "time_reference": False}

    def run(hold_us):
        cfg = {"timeout_s": 120, "timing": dict(timing, gate_hold_us=hold_us)}
        job = {"device": "cuda", "work_dir": os.path.join(work, "hw"), "definition": d, "workloads": wl,
               "solutions": sols, "config": cfg}
        rc, res, err, _ = run_harness("time", job, work)
        if rc != 0:
            check(f"gate timing job (hold {hold_us} us) ran", False, err[-2000:])
            return None
        return {x["solution"]: x for x in res["results"]}

    gated, ungated = run(100), run(0)
    if not gated or not ungated:
        return

    def med(r, name):
        perf = (r[name]["evaluation"] or {}).get("performance") or {}
        return perf.get("latency_ms") or math.inf

    g30, u30 = med(gated, "host_delay_30us"), med(ungated, "host_delay_30us")
    check("gate: 30 us of host time before a small kernel stays out of the sample (it is in without the gate)",
          g30 < 0.02 and u30 >= 0.03, f"gated {g30:.4f} ms, ungated {u30:.4f} ms")
    g400 = med(gated, "host_delay_400us")
    check("gate: host time beyond the 100 us hold is charged", g400 >= 0.25, f"{g400:.4f} ms")
    side, same = med(gated, "cheat_work_during_gate"), med(gated, "honest_work_on_stream")
    check("gate: side-stream work waited for on the host cannot run before the measurement",
          side >= 0.6 * same and same >= 0.03, f"side {side:.4f} ms, same stream {same:.4f} ms")
    sy = gated["honest_sync_in_call"]
    gate_rep = (sy["details"].get("gate") or {}).get("candidate") or {}
    check("gate: a call that synchronises passes and outlasts the hold (no hang)",
          sy["evaluation"]["status"] == "PASSED" and gate_rep.get("hold_expired", 0) > 0, str(gate_rep))
    check("gate: a call that outlasts the hold is timed as host-bound (looser stopping target)",
          gate_rep.get("host_bound_rounds", 0) > 0 and
          not (gated["host_delay_30us"]["details"]["gate"]["candidate"].get("host_bound_rounds")), str(gate_rep))
    rep30 = (gated["host_delay_30us"]["details"].get("gate") or {}).get("candidate") or {}
    check("gate: the report counts samples the host released", rep30.get("on") and rep30.get("opened_by_host", 0) > 0,
          str(rep30))
    check("gate: the report gives the harness's own time launching the gate with its copies (not part of the hold)",
          0 < (rep30.get("harness_prep_median_ms") or 0) < 1.0, str(rep30))
    off_g, off_u = gated["cheat_host_offload_during_gate"], ungated["cheat_host_offload_during_gate"]
    check("gate: a copy to the host on another stream while the gate holds finds poison, not the inputs",
          off_g["evaluation"]["status"] == "INCORRECT_NUMERICAL" and
          "post_timing_recheck_failed" in off_g["details"]["rigor"] and off_u["evaluation"]["status"] == "PASSED",
          f"gated {off_g['evaluation']['status']}, ungated {off_u['evaluation']['status']}")
    REPORT.append({"id": "host_offload_during_gate", "family": "[7] work outside the measurement (copy engines)",
                   "expect": "INCORRECT_NUMERICAL", "got": [off_g["evaluation"]["status"]], "device": "cuda"})
