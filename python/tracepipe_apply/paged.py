"""A small paged-KV decoder with continuous batching, over any Llama-architecture model with Hugging
Face's module names (transformers' LlamaForCausalLM, or tiny.TinyLlama).

It keeps the model's own modules (embedding, RMSNorms, projections, MLP, rotary embedding) and
replaces only attention: each layer writes its K/V into a paged cache (page size 1 or 64, pages
handed out by an allocator) and calls the GQA paged prefill or decode definition by name through
apply (attention.py). Scheduling is SGLang's in miniature: requests arrive at given iterations; an
iteration prefills every arrived request that fits (pages and batch), else decodes every running one;
a request leaves when it has its tokens, and its pages return to the pool.
"""

import math

import torch

from .attention import paged_decode, paged_prefill
from .tiny import rotate_half


class PagedKVCache:
    """K and V pages per layer: [num_pages, page_size, kv_heads, head_dim], and a page allocator."""

    def __init__(self, layers, num_pages, page_size, kv_heads, head_dim, dtype, device):
        shape = (num_pages, page_size, kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.page_size = page_size
        self.free = list(range(num_pages - 1, -1, -1))  # pop() hands out the lowest free page

    def alloc(self, n):
        if n > len(self.free):
            raise MemoryError(f"paged cache: {n} pages asked, {len(self.free)} free")
        return [self.free.pop() for _ in range(n)]

    def release(self, pages):
        self.free.extend(pages)
        self.free.sort(reverse=True)


class Request:
    __slots__ = ("rid", "prompt", "max_new", "arrival", "out", "pages", "kv_len")

    def __init__(self, rid, prompt, max_new, arrival):
        self.rid, self.prompt, self.max_new, self.arrival = rid, list(prompt), max_new, arrival
        self.out, self.pages, self.kv_len = [], [], 0


class PagedDecoder:
    """Greedy generation with a paged KV cache and continuous batching (see the module doc)."""

    def __init__(self, model, page_size=1, num_pages=None, max_batch=64, max_tokens=4096):
        cfg = model.config
        p = next(model.parameters())
        self.model, self.device, self.dtype = model, p.device, p.dtype
        self.h = cfg.num_attention_heads
        self.kv = cfg.num_key_value_heads
        self.d = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.h
        self.scale = 1.0 / math.sqrt(self.d)
        self.page_size = page_size
        num_pages = num_pages or max(1, math.ceil(max_tokens / page_size))
        self.cache = PagedKVCache(cfg.num_hidden_layers, num_pages, page_size, self.kv, self.d, self.dtype, self.device)
        self.max_batch = max_batch
        self.waiting, self.running, self.done = [], [], {}
        self.iteration = 0
        self.log = []  # per iteration: ("prefill" | "decode", number of requests)

    def add(self, prompt, max_new_tokens, arrival=0):
        """Queues a request (token ids) arriving at iteration `arrival`; returns its id."""
        rid = len(self.waiting) + len(self.running) + len(self.done)
        self.waiting.append(Request(rid, prompt, max_new_tokens, arrival))
        return rid

    def _pages_for(self, r):
        return math.ceil((len(r.prompt) + r.max_new) / self.page_size)

    @torch.no_grad()
    def step(self):
        """Runs one iteration; False when nothing is left to do."""
        if not (self.waiting or self.running):
            return False
        admit = []
        free = len(self.cache.free)
        for r in self.waiting:
            if r.arrival <= self.iteration and len(self.running) + len(admit) < self.max_batch \
                    and self._pages_for(r) <= free:
                free -= self._pages_for(r)
                admit.append(r)
        if admit:
            for r in admit:
                self.waiting.remove(r)
                r.pages = self.cache.alloc(self._pages_for(r))
            self._forward(admit, prefill=True)
            self.running += admit
            self.log.append(("prefill", len(admit)))
        elif self.running:
            self._forward(self.running, prefill=False)
            self.log.append(("decode", len(self.running)))
        for r in [r for r in self.running if len(r.out) >= r.max_new]:
            self.running.remove(r)
            self.cache.release(r.pages)
            self.done[r.rid] = r.out
        self.iteration += 1
        return True

    def run(self):
        """Runs to completion; {request id: generated token ids}."""
        while self.step():
            pass
        return dict(sorted(self.done.items()))

    def _layout(self, reqs, new):
        """Index tensors of a batch: qo_indptr, kv_indptr, kv_indices, kv_last_page_len, slots of the
        new tokens, and positions."""
        ps = self.page_size
        qo, kvp, idx, last, slots, pos = [0], [0], [], [], [], []
        for r, n in zip(reqs, new):
            total = r.kv_len + n
            used = math.ceil(total / ps)
            qo.append(qo[-1] + n)
            kvp.append(kvp[-1] + used)
            idx += r.pages[:used]
            last.append(total - (used - 1) * ps)
            for p in range(r.kv_len, total):
                slots.append(r.pages[p // ps] * ps + p % ps)
                pos.append(p)
        i32 = dict(dtype=torch.int32, device=self.device)
        return (torch.tensor(qo, **i32), torch.tensor(kvp, **i32), torch.tensor(idx, **i32),
                torch.tensor(last, **i32), torch.tensor(slots, dtype=torch.long, device=self.device),
                torch.tensor(pos, dtype=torch.long, device=self.device))

    def _forward(self, reqs, prefill):
        m = self.model.model
        toks = [r.prompt if prefill else [r.out[-1]] for r in reqs]
        qo, kvp, idx, last, slots, pos = self._layout(reqs, [len(t) for t in toks])
        ids = torch.tensor([t for ts in toks for t in ts], dtype=torch.long, device=self.device)
        x = m.embed_tokens(ids)
        n = ids.shape[0]
        cos, sin = m.rotary_emb(x[None], pos[None])
        cos, sin = cos[0][:, None, :], sin[0][:, None, :]
        for li, layer in enumerate(m.layers):
            a = layer.self_attn
            y = layer.input_layernorm(x)
            q = a.q_proj(y).view(n, self.h, self.d)
            k = a.k_proj(y).view(n, self.kv, self.d)
            v = a.v_proj(y).view(n, self.kv, self.d)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            kc, vc = self.cache.k[li], self.cache.v[li]
            kc.view(-1, self.kv, self.d)[slots] = k
            vc.view(-1, self.kv, self.d)[slots] = v
            if prefill:
                o, _ = paged_prefill(q, kc, vc, qo, kvp, idx, last, self.scale)
            else:
                o, _ = paged_decode(q, kc, vc, kvp, idx, last, self.scale)
            x = x + a.o_proj(o.reshape(n, self.h * self.d))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        logits = self.model.lm_head(m.norm(x[qo[1:].long() - 1]))
        nxt = logits.argmax(dim=-1).tolist()
        for r, t, tok in zip(reqs, toks, nxt):
            r.kv_len += len(t)
            r.out.append(tok)
