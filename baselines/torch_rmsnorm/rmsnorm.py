"""Baseline: PyTorch's fused RMSNorm (torch.nn.functional.rms_norm), eps 1e-5. Value-returning."""
import torch


def run(hidden_states, weight):
    return torch.nn.functional.rms_norm(hidden_states, (hidden_states.shape[-1],), weight, eps=1e-5)
