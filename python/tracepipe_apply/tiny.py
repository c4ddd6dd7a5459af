"""A tiny Llama in plain torch, with Hugging Face's module names and operations (LlamaRMSNorm,
rotary embedding, q/k/v/o projections, SwiGLU MLP), for CPU tests of the adapters and the paged
decoder where transformers is not installed. Its own forward is dense causal attention with no cache:
the reference the paged decoder is checked against."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TinyConfig:
    vocab_size: int = 96
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int = 16
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0


class TinyRMSNorm(nn.Module):
    """Hugging Face's LlamaRMSNorm, operation for operation."""

    def __init__(self, hidden_size, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class TinyRotary(nn.Module):
    """forward(x, position_ids [B, T]) -> (cos, sin) [B, T, head_dim], as LlamaRotaryEmbedding."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.head_dim
        self.register_buffer("inv_freq", 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d)),
                             persistent=False)

    def forward(self, x, position_ids):
        freqs = position_ids[..., None].to(torch.float32) * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class TinyAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, h * d, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, kv * d, bias=False)
        self.o_proj = nn.Linear(h * d, cfg.hidden_size, bias=False)


class TinyMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TinyLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = TinyRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = TinyAttention(cfg)
        self.post_attention_layernorm = TinyRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = TinyMLP(cfg)


class TinyModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList([TinyLayer(cfg) for _ in range(cfg.num_hidden_layers)])
        self.norm = TinyRMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary_emb = TinyRotary(cfg)


class TinyLlama(nn.Module):
    """model.{embed_tokens, layers, norm, rotary_emb}, lm_head and config, as LlamaForCausalLM."""

    def __init__(self, cfg=None):
        super().__init__()
        self.config = cfg or TinyConfig()
        self.model = TinyModel(self.config)
        self.lm_head = nn.Linear(self.config.hidden_size, self.config.vocab_size, bias=False)

    @torch.no_grad()
    def forward(self, input_ids):
        """Dense causal forward of [B, T] token ids -> logits [B, T, vocab]."""
        cfg = self.config
        b, t = input_ids.shape
        h, kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        x = self.model.embed_tokens(input_ids)
        pos = torch.arange(t, device=input_ids.device)[None].expand(b, t)
        cos, sin = self.model.rotary_emb(x, pos)
        cos, sin = cos[:, None], sin[:, None]
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        for layer in self.model.layers:
            a = layer.self_attn
            y = layer.input_layernorm(x)
            q = a.q_proj(y).view(b, t, h, d).transpose(1, 2)
            k = a.k_proj(y).view(b, t, kv, d).transpose(1, 2)
            v = a.v_proj(y).view(b, t, kv, d).transpose(1, 2)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            k, v = k.repeat_interleave(h // kv, dim=1), v.repeat_interleave(h // kv, dim=1)
            s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(d)
            p = torch.softmax(s.masked_fill(~mask, -math.inf), dim=-1)
            o = (p @ v.float()).to(x.dtype).transpose(1, 2).reshape(b, t, h * d)
            x = x + a.o_proj(o)
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.lm_head(self.model.norm(x))


def tiny_llama(seed=0, dtype=torch.float32, cfg=None):
    """A TinyLlama with random weights scaled so its greedy choices are far from ties."""
    g = torch.Generator().manual_seed(seed)
    m = TinyLlama(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return m.to(dtype).eval()
