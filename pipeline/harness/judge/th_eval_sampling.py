"""SamplingEvaluator: how samplers (op_type `sampling`) are judged, in verify and in the post-timing recheck."""

import math
import os
import secrets
import time

import torch

import th_core as C
from th_candidate import Verdict, write_inputs
from th_eval_default import DefaultEvaluator
from th_tvd import TvdTest


class SamplingEvaluator(DefaultEvaluator):
    """flashinfer-bench's SamplingEvaluator: a sampler's outputs are random, so they are never compared with
    the reference's; every sample must lie in the vocabulary and inside the top-k/top-p mask of its row, and
    the distribution of many samples must be within a total variation distance of the masked probabilities."""

    @classmethod
    def can_evaluate(cls, definition):
        """Samplers: definitions of op_type `sampling` (their outputs are random token ids)."""
        return definition.get("op_type") == "sampling"

    @classmethod
    def verify(cls, ctx, cand, wl, axes, blobs):
        """Validity of every sample, then the TVD of many samples against the masked probabilities."""
        v = Verdict()
        names = list(ctx.defn["inputs"])
        extra = ctx.tol["extra"]
        n_valid = int(extra.get("sampling_validation_trials", 100))
        thr = float(extra.get("sampling_tvd_threshold", 0.2))
        per_row = int(extra.get("sampling_samples_per_row", 500000))
        t0 = time.monotonic()
        inputs = C.gen_inputs(ctx.defn, wl, axes, ctx.device, secrets.randbits(62), blobs)
        probs = inputs[names.index("probs")]
        batch, vocab = probs.shape
        mask = cls.sampling_mask(ctx, inputs, probs)
        expected = probs.float() * mask
        expected = expected / expected.sum(-1, keepdim=True)
        ipath = os.path.join(ctx.scratch, "samp_in.safetensors")
        opath = os.path.join(ctx.scratch, "samp_out.safetensors")
        scalars = write_inputs(ipath, inputs)
        v.phase("inputs", t0)
        s = cls.draw_samples(ctx, cand, v, {"inputs": ipath, "out": opath, "scalars": scalars, "axes": axes,
                                            "n": n_valid}, batch)
        if s is None:
            return v
        t0 = time.monotonic()
        if batch == 0:
            return v  # an empty batch: the right (empty) shape is all there is to check
        if not cls.samples_in_mask(mask, s):
            v.max_abs = v.max_rel = math.inf
            v.fail("INCORRECT_NUMERICAL", "a sample is out of the vocabulary or outside the top-k/top-p mask")
            return v
        v.phase("compare", t0)
        t0 = time.monotonic()
        # The distribution test runs on a few rows picked in secret (`sampling_tvd_rows`), each tiled so that
        # one call samples it many times: the statistics per row are those of flashinfer-bench's evaluator
        # (`sampling_samples_per_row` samples each), at a cost that does not grow with the batch.
        n_rows = max(1, min(batch, int(extra.get("sampling_tvd_rows", 2))))
        picked = sorted(secrets.SystemRandom().sample(range(batch), n_rows))
        pick = torch.tensor(picked, device=probs.device)
        expected = expected[pick]
        # Where the nucleus is so large that a right sampler's full TVD sits near the threshold by chance, the
        # test bins the vocabulary (th_tvd.py; `sampling_tvd_bins`, 0: always the full TVD).
        test = TvdTest(expected, per_row, thr, int(extra.get("sampling_tvd_bins", 100)), secrets.randbits(62))
        # flashinfer-bench tiles the rows to a 10000-row batch; the tile is capped in bytes here (a 10000-row tile
        # of a 128K vocabulary is 5 GB per call, twice over with the fresh clone) and called more often instead:
        # the same samples per row, a fraction of the memory.
        row_bytes = max(1, probs[0].numel() * probs.element_size())
        tile_rows = max(n_rows, min(10000, int(extra.get("sampling_tile_max_bytes", 1 << 30)) // row_bytes))
        repeat = max(1, tile_rows // n_rows)
        first_axis = ctx.defn["inputs"]["probs"]["shape"][0]
        rows_only, tiled_idx = [], []
        for i, (nm, x) in enumerate(zip(names, inputs)):
            spec = ctx.defn["inputs"][nm]
            if isinstance(x, torch.Tensor) and spec.get("shape") and spec["shape"][0] == first_axis:
                x = x.index_select(0, pick.to(x.device))
                tiled_idx.append(i)
            rows_only.append(x)
        scalars = write_inputs(ipath, rows_only)
        taxes = dict(axes)
        taxes[first_axis] = n_rows * repeat
        calls = math.ceil(per_row / repeat)
        v.phase("inputs", t0)
        counts = torch.zeros(n_rows * vocab, dtype=torch.float64, device=probs.device)
        # The estimate only drops as samples accrue (an empirical TVD overstates the true one), so once a tenth of
        # the samples puts every row under half the threshold the test passes there; failing takes all of them.
        early = int(extra.get("sampling_tvd_early_fraction_inv", 10))
        chunks = [max(1, calls // early), calls - max(1, calls // early)] if early > 1 and calls > 1 else [calls]
        done = 0
        for k, n in enumerate(chunks):
            req = {"inputs": ipath, "out": opath, "scalars": scalars, "axes": taxes, "n": n,
                   "tile": {"inputs": tiled_idx, "repeat": repeat}}
            s = cls.draw_samples(ctx, cand, v, req, n_rows * repeat)
            if s is None:
                return v
            t0 = time.monotonic()
            s = s.reshape(-1).to(counts.device)
            rows = torch.arange(s.numel(), device=s.device) % n_rows
            s = s.clamp(0, vocab - 1)
            counts.index_add_(0, rows * vocab + s, torch.ones_like(s, dtype=torch.float64))
            done += n
            freq = (counts.reshape(n_rows, vocab) / counts.reshape(n_rows, vocab).sum(-1, keepdim=True)).float()
            tvds = test.tvds(freq)
            v.phase("compare", t0)
            if k == 0 and len(chunks) > 1 and max(tvds) <= thr / 2:
                break
        tol = C.workload_tolerance(ctx.tol, wl)
        a, r, _, _ = C.error_stats(freq, expected, tol["rtol"], tol["atol"], 1.0)
        v.max_abs, v.max_rel = a, r
        v.extra = {"tvd": max(tvds), "tvds_per_batch": tvds, "tvd_rows": picked, "tvd_samples_per_row": done * repeat,
                   **test.describe()}
        if max(tvds) > thr:
            v.fail("INCORRECT_NUMERICAL", f"TVD {max(tvds):.4f} > threshold {thr}")
        return v

    @classmethod
    def recheck(cls, ctx, outs, inputs, wl=None):
        """Post-timing recheck of a sampler: its last timed samples (random, so never equal to the reference's)
        must lie in the vocabulary and inside the top-k/top-p mask of that exact input."""
        names = list(ctx.defn["inputs"])
        probs = inputs[names.index("probs")]
        s = outs[0]
        if s is None or tuple(s.shape) != (probs.shape[0],):
            return "INCORRECT_SHAPE", None, None, None, f"samples shape {None if s is None else list(s.shape)}"
        if s.numel() == 0:
            return None, 0.0, 0.0, 1.0, None
        if not cls.samples_in_mask(cls.sampling_mask(ctx, inputs, probs), s.reshape(1, -1)):
            return "INCORRECT_NUMERICAL", math.inf, math.inf, 0.0, "a timed sample is outside the top-k/top-p mask"
        return None, 0.0, 0.0, 1.0, None

    @classmethod
    def sampling_mask(cls, ctx, inputs, probs):
        """[batch, vocab] booleans: the tokens of each row that its top-k / top-p (as the definition's name and
        inputs have them) leave in play."""
        name = ctx.defn["name"]
        names = list(ctx.defn["inputs"])
        batch, vocab = probs.shape
        mask = torch.ones_like(probs, dtype=torch.bool)

        def per_row(v):
            if isinstance(v, torch.Tensor):
                v = v.reshape(-1)
                return [v[i % v.numel()].item() for i in range(batch)]
            return [v] * batch

        if "top_k" in name and "top_k" in names:
            ks = per_row(inputs[names.index("top_k")])
            for i, k in enumerate(ks):
                k = int(k)
                if 0 < k < vocab:
                    kth = torch.topk(probs[i].float(), k).values[-1]
                    mask[i] &= probs[i].float() >= kth
        if "top_p" in name and "top_p" in names:
            ps = per_row(inputs[names.index("top_p")])
            for i, p in enumerate(ps):
                p = float(p)
                if 0 < p < 1:
                    sp, idx = torch.sort(probs[i].float(), descending=True)
                    keep = torch.cumsum(sp, 0) <= p + 0.05
                    keep[0] = True
                    m = torch.zeros(vocab, dtype=torch.bool, device=probs.device)
                    m[idx[keep]] = True
                    mask[i] &= m
        return mask

    @staticmethod
    def samples_in_mask(mask, s):
        """True when every sample of `s` ([calls, batch] token ids) is in the vocabulary and in its row's mask."""
        s = s.to(mask.device).long()
        rows = torch.arange(s.shape[-1], device=mask.device).expand_as(s)
        inb = (s >= 0) & (s < mask.shape[1])
        return bool(inb.all().item()) and bool(mask[rows[inb], s[inb]].all().item())

    @classmethod
    def draw_samples(cls, ctx, cand, v, req, batch):
        """`req["n"]` sampler calls in the worker; their samples ([calls, batch]), or None with `v` failed."""
        t0 = time.monotonic()
        rep, err = cand.call(dict(req, op="call_many"), ctx.timeout, what=f"a request of {req['n']} sampler calls",
                             key="timeout_s, per call")
        v.phase("calls", t0)
        if err:
            v.fail(err[0], err[1], (rep or {}).get("rigor"))
            return None
        s = C.load_tensors(req["out"], ctx.device)["samples"]
        if s.dim() != 2 or s.shape[1] != batch:
            v.fail("INCORRECT_SHAPE", f"samples shape {list(s.shape)} does not match the batch of {batch}")
            return None
        return s
