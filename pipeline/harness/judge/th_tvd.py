"""The statistics of the sampling evaluator's distribution test: how far a row's sample frequencies may sit
from its masked probabilities by chance alone, and a binned total variation distance for the rows where
the full one cannot tell a right sampler from a wrong one.

With n samples from a row whose masked probabilities are p, the empirical TVD of a right sampler is about
sum_i sqrt(p_i (1 - p_i)) / sqrt(2 pi n): it grows with the nucleus. Over a 128256-token vocabulary with a
top-p nucleus of most of it, 500,000 samples leave every right sampler at a TVD of 0.173 against the 0.2
threshold (an H100 run, BENCHMARKS.md "Thirteenth session"), and a larger vocabulary passes the threshold by
noise alone (flashinfer-bench PR 396, which skips the test there). A binned TVD compares the frequencies of
a few bins instead of every token: no larger than the full TVD (merging tokens can only hide differences),
with a noise that depends on the number of bins, not on the nucleus. Two partitions are used: bins of equal
expected mass over the tokens sorted by probability (a sampler that flattens, sharpens or truncates the
distribution moves mass between them) and bins drawn at random with a secret seed (one that favours tokens
by anything but their probability)."""

import math

import torch


def noise_tvd(expected, n):
    """Per row of `expected` ([rows, vocab], each summing to 1): the TVD that `n` samples of a right sampler
    show by chance, sum_i E|f_i - p_i| / 2 with the normal approximation of each count."""
    p = expected.double().clamp(0, 1)
    return (p * (1 - p)).sqrt().sum(-1) / math.sqrt(2 * math.pi * max(1, n))


def mass_bins(expected, bins):
    """[rows, vocab] bin ids: each row's tokens sorted by probability and cut into `bins` bins of about equal
    expected mass (a token heavier than a bin fills its own); tokens of probability 0 go to bin `bins`."""
    p = expected.double()
    order = p.argsort(-1, descending=True)
    sp = p.gather(-1, order)
    before = sp.cumsum(-1) - sp
    ids = (before * bins).floor().clamp(0, bins - 1).long()
    ids = torch.where(sp > 0, ids, torch.full_like(ids, bins))
    return torch.empty_like(ids).scatter_(-1, order, ids)


def random_bins(rows, vocab, bins, seed, device):
    """[rows, vocab] bin ids drawn uniformly from 0..bins-1 with `seed` (secret, so a sampler cannot aim at
    them)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, bins, (rows, vocab), generator=g).to(device)


def binned_tvd(freq, expected, ids, n_bins):
    """Per row: the TVD between `freq` and `expected` ([rows, vocab]) summed within the bins `ids`
    ([rows, vocab], values below `n_bins`)."""
    f = torch.zeros(freq.shape[0], n_bins, dtype=torch.float64, device=freq.device)
    e = torch.zeros_like(f)
    f.scatter_add_(-1, ids, freq.double())
    e.scatter_add_(-1, ids, expected.double().to(freq.device))
    return 0.5 * (f - e).abs().sum(-1)


class TvdTest:
    """The distribution test of one set of rows: the full TVD where `samples` samples per row can tell a right
    sampler from one off by `threshold` (its noise at most half the threshold) or `bins` is 0, else the larger
    of the two binned TVDs. `statistic` says which; `tvds(freq)` gives the per-row values."""

    def __init__(self, expected, samples, threshold, bins, seed):
        self.expected = expected
        self.noise = float(noise_tvd(expected, samples).max().item()) if expected.numel() else 0.0
        self.statistic = "binned" if bins > 0 and self.noise > threshold / 2 else "full"
        self.bins = bins
        if self.statistic == "binned":
            rows, vocab = expected.shape
            self.maps = [(mass_bins(expected, bins), bins + 1),
                         (random_bins(rows, vocab, bins, seed, expected.device), bins)]

    def tvds(self, freq):
        """Per-row TVDs of the frequencies `freq` ([rows, vocab]) under this test's statistic."""
        if self.statistic == "full":
            return (0.5 * (freq - self.expected).abs().sum(-1)).tolist()
        per_map = [binned_tvd(freq, self.expected, ids, n) for ids, n in self.maps]
        return torch.stack(per_map).max(0).values.tolist()

    def describe(self):
        """What the verdict's `extra` records of the test."""
        d = {"tvd_statistic": self.statistic, "tvd_noise_full": round(self.noise, 4)}
        if self.statistic == "binned":
            d["tvd_bins"] = self.bins
        return d
