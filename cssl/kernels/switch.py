"""One switch between the CPU-tuned kernels and stock PyTorch, chosen by the tensors' device.

On a CPU the model uses kernels written for it (docs/performance.md):
time-major block-GEMM convolutions (:mod:`cssl.kernels.block_conv`), first-layer group-norm
statistics from the waveform's window moments, dropout masks from 16-bit random lanes
(:mod:`cssl.kernels.dropout`), and an explicit attention path that applies that dropout.
Elsewhere (CUDA) it uses stock PyTorch, which dispatches to the vendor's kernels:
``F.conv1d`` (cuDNN), statistics over the conv output, ``F.dropout`` and
``F.scaled_dot_product_attention`` (flash / memory-efficient attention).

Both sides compute the same function (tests compare them on the CPU); only dropout
masks differ, being random. A graph captured by ``torch.export`` (``cssl export``) takes the stock side:
the tuned kernels shape their work in Python for each input length. :func:`use_kernels` forces one side, for tests and checks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Kernels = Literal["cpu", "stock"]

_forced: Kernels | None = None


def cpu_kernels(device: torch.device) -> bool:
    """True where the CPU-tuned kernels run: on CPU tensors, unless :func:`use_kernels` says otherwise."""
    if _forced is not None:
        return _forced == "cpu"
    return device.type == "cpu" and not torch.compiler.is_exporting()  # exported graphs: stock operators


@contextlib.contextmanager
def use_kernels(kind: Kernels) -> Iterator[None]:
    """Within the block, every device uses ``kind`` (``cpu``: the tuned kernels; ``stock``: PyTorch's)."""
    global _forced
    if kind not in ("cpu", "stock"):
        raise ValueError(f"kernels must be 'cpu' or 'stock', got {kind!r}")
    previous, _forced = _forced, kind
    try:
        yield
    finally:
        _forced = previous
