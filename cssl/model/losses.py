"""Pretraining losses as pure functions, computed in float32, each returning (sum, count).

Notation: N scored (masked) frames, F compared width, K distractors per frame.

Sums let the training loop normalise once over everything that went into an update,
across accumulation steps and processes (wav2vec 2.0 divides by the number of masked
frames of the whole update).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def contrastive_logits(context: Tensor, targets: Tensor, distractors: Tensor, temperature: float) -> Tensor:
    """(N, 1 + K) cosine similarities over ``temperature``; column 0 is the true target.

    ``context`` (N, F) are the context outputs at masked frames, ``targets`` (N, F) the
    quantized local features there, ``distractors`` (N, K) indices into ``targets``. A
    distractor identical to the target (the same code picked twice) cannot be told
    apart from it, so its logit is set to -inf, as in wav2vec 2.0.

    Rows are normalised once (N x F) and each frame's candidates dotted with its context
    vector in one batched product, instead of broadcasting a cosine over (N, 1 + K, F):
    the same values as ``F.cosine_similarity`` (each norm clamped at 1e-8), in float32.
    """
    with torch.autocast(context.device.type, enabled=False):
        context, targets = context.float(), targets.float()
        rows = torch.arange(targets.shape[0], device=targets.device)
        index = torch.cat([rows[:, None], distractors], dim=1)  # (N, 1 + K): the target, then its distractors
        candidates = take_rows(unit_rows(targets), index)  # (N, 1 + K, F)
        logits = torch.bmm(candidates, unit_rows(context).unsqueeze(-1)).squeeze(-1) / temperature  # (N, 1 + K)
    same = same_rows(targets, distractors)  # (N, K)
    return logits.masked_fill(F.pad(same, (1, 0), value=False), float("-inf"))


def unit_rows(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Rows of x (N, F) over their norms, each norm clamped at ``eps`` (``F.cosine_similarity``'s rule)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


_FINGERPRINT_MAX_WIDTH = 1 << 16  # 2^47 per term times 2^16 terms stays below 2^63


def same_rows(table: Tensor, index: Tensor) -> Tensor:
    """(N, K) True where row ``index[n, k]`` of ``table`` (N, F) equals row n element for element.

    Equal to ``(table[index] == table[:, None]).all(-1)`` without its (N, K, F) pass: rows are compared
    in full only where integer fingerprints of their bits agree, and equal rows always have equal
    fingerprints (adding 0.0 first gives -0.0 the bits of 0.0; the sums are exact, below 2^63).
    """
    table = table.detach()
    if table.shape[-1] > _FINGERPRINT_MAX_WIDTH:
        raise ValueError(f"rows of width {table.shape[-1]} exceed {_FINGERPRINT_MAX_WIDTH}")
    bits = (table.float() + 0.0).view(torch.int32).long()  # (N, F), each below 2^31 in magnitude
    weights = torch.randint(1, 1 << 16, (table.shape[-1],), generator=torch.Generator().manual_seed(0))
    prints = (bits * weights.to(table.device)).sum(dim=-1)  # (N,): below 2^47 per term
    same = prints[index] == prints[:, None]  # (N, K)
    n, k = same.nonzero(as_tuple=True)  # the few pairs to check in full
    same[n, k] = (table[n] == table[index[n, k]]).all(dim=-1)
    return same


def take_rows(table: Tensor, index: Tensor) -> Tensor:
    """``table[index]`` (rows of ``table`` (R, F) at ``index`` (N, K): (N, K, F)) whose gradient sums
    repeated rows in a fixed order on every device, so that a run repeats bit for bit.

    On CPU the backward of ``table[index]`` adds repeated rows with atomic adds from several threads,
    in whatever order they come; ``index_select``'s backward adds them in index order. On CUDA it is
    the other way round (``index_select``'s backward uses atomic adds; indexing sorts).
    """
    if table.is_cuda:
        return table[index]
    return table.index_select(0, index.reshape(-1)).view(*index.shape, table.shape[-1])  # (N*K, F) -> (N, K, F)


def contrastive_loss(logits: Tensor, usable: Tensor | None = None) -> tuple[Tensor, int]:
    """InfoNCE: cross-entropy of picking column 0, summed over usable frames."""
    if usable is not None:
        logits = logits[usable]
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits.float(), target, reduction="sum"), logits.shape[0]


def contrastive_accuracy(logits: Tensor, usable: Tensor | None = None) -> tuple[Tensor, int]:
    """Frames whose true target scores strictly above every distractor."""
    if usable is not None:
        logits = logits[usable]
    best_other = logits[:, 1:].max(dim=-1).values if logits.shape[1] > 1 else torch.full_like(logits[:, 0], -1e9)
    return (logits[:, 0] > best_other).sum(), logits.shape[0]


def diversity_loss(prob_perplexity: Tensor, num_vars: int, count: int) -> tuple[Tensor, int]:
    """(G*V - perplexity) / (G*V): 0 when all codebook entries are used equally; weighted per frame."""
    return (num_vars - prob_perplexity.float()) / num_vars * count, count


def feature_penalty(features: Tensor, count: int) -> tuple[Tensor, int]:
    """Mean squared local feature (keeps the conv outputs from growing), weighted per frame."""
    return features.float().pow(2).mean() * count, count
