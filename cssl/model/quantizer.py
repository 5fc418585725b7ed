"""Gumbel-softmax product quantizer (wav2vec 2.0, section 2.2).

Notation: N vectors, C input width, G codebooks (groups), V entries per codebook,
E = dim / G entry width.

Each input picks one entry per codebook; the chosen entries are concatenated into the
quantized vector (width G * E). In training the choice is a straight-through
Gumbel-softmax sample at temperature ``tau``: the forward pass uses the hard one-hot
choice, gradients flow through the soft probabilities. The diversity loss needs the
perplexity of the average soft distribution per codebook (``prob_perplexity``); the
perplexity of hard choices (``code_perplexity``) tracks codebook usage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    """Quantized vectors and codebook statistics."""

    quantized: Tensor
    """(N, G * E) concatenated codebook entries."""
    codes: Tensor
    """(N, G) chosen entry per codebook."""
    prob_perplexity: Tensor
    """Sum over codebooks of exp(entropy(mean softmax)): ranges over [G, G * V]."""
    code_perplexity: Tensor
    """Same over the hard choices' histogram (how many entries are in use)."""
    num_vars: int
    """G * V, the maximum perplexity."""


class GumbelQuantizer(nn.Module):
    """Product quantizer with ``groups`` codebooks of ``entries`` vectors each."""

    def __init__(self, in_features: int, groups: int, entries: int, dim: int) -> None:
        super().__init__()
        if dim % groups:
            raise ValueError(f"quantizer dim {dim} must be divisible by groups {groups}")
        self.groups = groups
        self.entries = entries
        self.codebook = nn.Parameter(torch.empty(1, groups * entries, dim // groups).uniform_())  # (1, G*V, E)
        self.weight_proj = nn.Linear(in_features, groups * entries)
        nn.init.normal_(self.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)

    def forward(self, x: Tensor, tau: float, noise: Tensor | None = None) -> QuantizerOutput:  # x: (N, C)
        """Quantizes ``x``; in training with Gumbel ``noise`` (N, G, V), drawn here when None."""
        n = x.shape[0]
        g, v = self.groups, self.entries
        logits = self.weight_proj(x).float().view(n * g, v)  # (N*G, V); statistics in float32
        hard_idx = logits.argmax(dim=-1)
        hard = F.one_hot(hard_idx, v).to(logits.dtype)  # (N*G, V)
        avg_hard = hard.view(n, g, v).mean(dim=0)  # (G, V)
        avg_soft = logits.softmax(dim=-1).view(n, g, v).mean(dim=0)  # (G, V)
        code_ppl = _perplexity(avg_hard)
        prob_ppl = _perplexity(avg_soft)
        if self.training:
            if noise is None:
                noise = -torch.empty_like(logits).exponential_().log()  # Gumbel(0, 1)
            soft = ((logits + noise.reshape(n * g, v).to(logits.dtype)) / tau).softmax(dim=-1)  # (N*G, V)
            choice = F.one_hot(soft.argmax(dim=-1), v).to(soft.dtype)
            onehot = choice - soft.detach() + soft  # straight-through: hard forward, soft gradient
        else:
            onehot = hard
        onehot = onehot.view(n, g, v).to(self.codebook.dtype)  # (N, G, V)
        codebook = self.codebook.view(g, v, -1)  # (G, V, E)
        entries = torch.einsum("ngv,gve->nge", onehot, codebook)  # (N, G, E): a matmul per codebook
        return QuantizerOutput(
            quantized=entries.reshape(n, -1),  # (N, G*E)
            codes=hard_idx.view(n, g),
            prob_perplexity=prob_ppl,
            code_perplexity=code_ppl,
            num_vars=g * v,
        )


def _perplexity(avg_probs: Tensor) -> Tensor:
    """sum_g exp(-sum_v p log p) of per-codebook distributions (G, V)."""
    entropy = -(avg_probs * torch.log(avg_probs + 1e-7)).sum(dim=-1)  # (G,)
    return torch.exp(entropy).sum()
