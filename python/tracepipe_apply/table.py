"""The two ways of choosing a solution for a call.

ranked (flashinfer-bench's ApplyTable): from the PASSED traces within the error limits, the fastest
solution (highest speedup_factor) per exact var-axes key, and per definition the solution that won
most keys (`def_best`). Ties go to the smaller solution name, so the table does not depend on the
order traces were read in (flashinfer-bench keeps the first one loaded). stages/apply/policy.ts
writes the same table; python/apply_test.ts checks that the two agree.

pinned (FlashInfer's Trace Apply): one solution per definition whatever the shapes, read from
`pinned.json` beside a TraceSet, or from a folder whose solutions/ holds exactly one per definition.
"""

import json
import os
from collections import Counter

from .traceset import TraceSet, TraceSetError

PINNED_FILE = "pinned.json"
TABLE_FILE = "apply_table.json"


def key_json(axes):
    """flashinfer-bench's ApplyKey as JSON (pydantic's compact form): sorted (name, value) pairs."""
    return json.dumps({"axes": [[k, axes[k]] for k in sorted(axes)], "feats": []}, separators=(",", ":"))


def _better(t, prev):
    return prev is None or t.speedup > prev.speedup or (t.speedup == prev.speedup and t.solution < prev.solution)


def rank_definition(ts, def_name, max_atol, max_rtol, exclude_authors=()):
    """(per-key winner traces {key_json: trace}, [(solution, keys won)] most wins first)."""
    per_key = {}
    for t in ts.filter_traces(def_name, max_atol, max_rtol):
        if ts.solutions[t.solution].author in exclude_authors:
            continue
        k = key_json(t.axes)
        if _better(t, per_key.get(k)):
            per_key[k] = t
    wins = Counter(t.solution for t in per_key.values())
    return per_key, sorted(wins.items(), key=lambda kv: (-kv[1], kv[0]))


def build_table(ts, registry, exclude_authors=()):
    """{"index": {def: {key_json: solution}}, "def_best": {def: solution}, "ranked": {def: [[sol, wins]]}}
    for every definition the registry applies to."""
    index, def_best, ranked = {}, {}, {}
    for name in sorted(ts.definitions):
        cfg = registry.get(name)
        if cfg is None:
            continue
        per_key, wins = rank_definition(ts, name, cfg.max_atol, cfg.max_rtol, exclude_authors)
        if per_key:
            index[name] = {k: per_key[k].solution for k in sorted(per_key)}
            def_best[name] = wins[0][0]
            ranked[name] = [[s, n] for s, n in wins]
    return {"index": index, "def_best": def_best, "ranked": ranked}


def runtime_keys(definition, keys):
    """{runtime key: solution} for the keys a call can produce: those naming exactly the var axes the
    inputs show (flashinfer-bench's keys match only then too). See Definition.pack_key."""
    out = {}
    for k, sol in keys.items():
        axes = dict(json.loads(k)["axes"])
        if tuple(sorted(axes)) == definition.key_axes:
            out[definition.pack_key([axes[a] for a in definition.key_axes])] = sol
    return out


def aot_solutions(table, def_name, cfg):
    """The solutions built when apply is enabled: the top max(1, int(n * aot_ratio)) by keys won,
    plus def_best under use_def_best."""
    out = []
    ranked = table["ranked"].get(def_name) or []
    if ranked and cfg.aot_ratio > 0:
        out = [s for s, _ in ranked[:max(1, int(len(ranked) * cfg.aot_ratio))]]
    best = table["def_best"].get(def_name)
    if best and cfg.on_miss_policy == "use_def_best" and best not in out:
        out.append(best)
    return out


def load_pinned(root):
    """(TraceSet of `root` without traces, {definition: solution name}).

    With `pinned.json` ({"solutions": {def: solution}}, written by the apply stage) its choice is
    used; otherwise solutions/ must hold one solution per definition (FlashInfer's Trace Apply rule).
    """
    ts = TraceSet.from_path(root, traces=False)
    pinned_file = os.path.join(root, PINNED_FILE)
    if os.path.exists(pinned_file):
        try:
            with open(pinned_file, encoding="utf-8") as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise TraceSetError(f"{PINNED_FILE}: $: cannot read: {e}") from None
        sols = raw.get("solutions") if isinstance(raw, dict) else None
        if not isinstance(sols, dict):
            raise TraceSetError(f"{PINNED_FILE}: $.solutions: expected an object {{definition: solution}}")
        for d, s in sols.items():
            if s not in ts.solutions:
                raise TraceSetError(f"{PINNED_FILE}: $.solutions.{d}: solution {s!r} is not in {root}")
            if ts.solutions[s].definition != d:
                raise TraceSetError(f"{PINNED_FILE}: $.solutions.{d}: solution {s!r} is for {ts.solutions[s].definition!r}")
        return ts, dict(sols)
    pinned = {}
    for s in ts.solutions.values():
        if s.definition in pinned:
            raise TraceSetError(
                f"solutions/: $.definition: two solutions for {s.definition!r} ({pinned[s.definition]!r}, {s.name!r}); "
                f"pinned mode takes one per definition (or a {PINNED_FILE} naming the one to use)")
        pinned[s.definition] = s.name
    return ts, pinned
