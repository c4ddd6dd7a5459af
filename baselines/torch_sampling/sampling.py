"""Baseline: top-k / top-p / top-k-top-p sampling from probabilities in plain PyTorch, batched.

run(probs, top_k) / run(probs, top_p) (told apart by dtype) / run(probs, top_k, top_p).
Semantics of the definitions' references: k is applied only when 0 < k < vocab (the row is then
renormalised), p <= 0 gives the argmax, p >= 1 no top-p filter, and top-p keeps the sorted prefix
whose exclusive cumulative mass is <= p (of the top-k-renormalised row).
One sort (torch.topk with the largest valid k when every row has a valid k and only top-k is
needed, else a full descending sort), the masks in sorted space, then torch.multinomial on the
kept weights and a gather back to token ids. Value-returning."""
import torch


@torch.no_grad()
def run(probs, *rest):
    if len(rest) == 1:
        x = rest[0]
        top_k, top_p = (x, None) if not x.dtype.is_floating_point else (None, x)
    elif len(rest) == 2:
        top_k, top_p = rest
    else:
        raise TypeError("expected (probs, top_k), (probs, top_p) or (probs, top_k, top_p)")
    probs = probs.float()
    bsz, vocab = probs.shape
    dev = probs.device
    if bsz == 0:
        return torch.empty(0, dtype=torch.int64, device=dev)
    if top_k is not None:
        k = top_k.to(device=dev, dtype=torch.int64).reshape(-1)
        k_valid = (k > 0) & (k < vocab)
        kk = torch.where(k_valid, k, torch.full_like(k, vocab))
    if top_k is not None and top_p is None:
        width = int(kk.max().item())
        if width < vocab:
            vals, idx = torch.topk(probs, width, dim=-1, sorted=True)
        else:
            vals, idx = torch.sort(probs, dim=-1, descending=True)
    elif top_p is not None and top_k is None and bool((top_p.float() >= 1).all().item()):
        return torch.multinomial(probs, 1, replacement=True).reshape(-1)
    else:
        vals, idx = torch.sort(probs, dim=-1, descending=True)
    width = vals.shape[1]
    pos = torch.arange(width, device=dev)
    w = vals
    if top_k is not None:
        w = torch.where(pos[None, :] < kk[:, None], vals, torch.zeros_like(vals))
    if top_p is not None:
        p = top_p.to(device=dev, dtype=torch.float32).reshape(-1)
        if top_k is not None:  # the reference renormalises only when the top-k filter applied
            scale = torch.where(k_valid, w.sum(-1), torch.ones_like(p))
        else:
            scale = torch.ones_like(p)
        cdf = torch.cumsum(w, dim=-1)
        excl = torch.cat([torch.zeros_like(cdf[:, :1]), cdf[:, :-1]], dim=1)
        keep = excl <= (p * scale)[:, None]
        keep[:, 0] = True
        keep = keep | (p >= 1)[:, None] | torch.isnan(p)[:, None]
        argmax_row = p <= 0
        keep = torch.where(argmax_row[:, None], pos[None, :] == 0, keep)
        w = torch.where(keep, w, torch.zeros_like(w))
    choice = torch.multinomial(w, 1, replacement=True)
    return idx.gather(1, choice).reshape(-1)
