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
    """
    context, targets = context.float(), targets.float()
    negatives = take_rows(targets, distractors)  # (N, K, F)
    candidates = torch.cat([targets.unsqueeze(1), negatives], dim=1)  # (N, 1 + K, F)
    logits = F.cosine_similarity(context.unsqueeze(1), candidates, dim=-1) / temperature  # (N, 1 + K)
    same = (negatives == targets.unsqueeze(1)).all(dim=-1)  # (N, K)
    return logits.masked_fill(F.pad(same, (1, 0), value=False), float("-inf"))


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
