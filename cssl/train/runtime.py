"""Device, precision, optimizer and update helpers around accelerate, shared by both stages.

An update holds ``optim.accumulation`` batches whatever the number of processes: each of
W processes accumulates ``accumulation / W`` of them (:func:`local_accumulation`), and
the sampler deals consecutive batches of the epoch's plan to consecutive ranks, so one
process and W processes see the same batches in an update. Gradients are accumulated
from loss *sums*; before the optimizer step they are scaled by ``world_size /
total_count`` where ``total_count`` is summed over every batch of the update on every
process. DDP averages gradients over processes, so the result is the gradient of (sum
of all losses) / (all counted frames): the same update whatever the number of processes.
"""

from __future__ import annotations

import logging
import math
import os
import random
import sys
from collections.abc import Iterable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs

from cssl.train.health import nonfinite_advice
from cssl.train.schedule import ScheduleConfig, lr_scale
from cssl.utils.config import ConfigError


def resolve_precision(mixed_precision: str) -> str:
    """``auto``: bf16 autocast where the hardware computes in bf16 natively, fp32 elsewhere.

    That is a GPU with bf16 support, or a CPU with AVX512-BF16 or AMX (about 2x the fp32
    matmul rate: a pretraining step of the tiny model runs about 1.4x faster).
    """
    if mixed_precision != "auto":
        return mixed_precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    return "bf16" if cpu_has_bf16() else "no"


def cpu_has_bf16(flags: str | None = None, capability: str | None = None) -> bool:
    """True when the CPU advertises native bf16 arithmetic (``flags``: Linux /proc/cpuinfo's) and
    PyTorch dispatches its AVX-512 kernels (``capability``: ``torch.backends.cpu.get_cpu_capability()``;
    ``ATEN_CPU_CAPABILITY=avx2`` lowers it, and with it the run to fp32, as on an AVX2-only CPU)."""
    if flags is None:
        try:
            flags = open("/proc/cpuinfo", encoding="ascii", errors="ignore").read()
        except OSError:
            return False
    if capability is None:
        capability = torch.backends.cpu.get_cpu_capability()
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and capability.upper().startswith("AVX512")


def make_accelerator(mixed_precision: str, find_unused: bool = False) -> Accelerator:
    """An Accelerator with ``auto`` precision resolved by :func:`resolve_precision`."""
    mixed_precision = resolve_precision(mixed_precision)
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true") and not torch.cuda.is_available():
        raise ConfigError("the accelerate configuration asks for FSDP, which accelerate runs on GPUs only and this "
                          "machine has none; on CPUs launch with a DDP configuration (--multi_gpu --cpu)")
    _forget_accelerator_settings()
    kwargs = DistributedDataParallelKwargs(find_unused_parameters=find_unused)
    # Without CUDA, cpu=True lets processes started by torchrun (accelerate launch --multi_gpu)
    # form a gloo process group on the CPU instead of each running alone.
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available(), kwargs_handlers=[kwargs])


def describe_runtime(accel: Accelerator) -> str:
    """``device cpu, 1 process, mixed precision off`` (the run banner's words)."""
    processes = f"{accel.num_processes} process" + ("es" if accel.num_processes > 1 else "")
    precision = {"no": "off"}.get(str(accel.mixed_precision), str(accel.mixed_precision))
    return f"device {accel.device}, {processes}, mixed precision {precision}"


def local_accumulation(accumulation: int, world_size: int) -> int:
    """Batches each process accumulates so that an update holds ``accumulation`` batches in all.

    ``accumulation`` is the update's size in batches whatever the number of processes
    (fairseq's ``update_freq`` times its GPU count): 1 process accumulates all of them,
    W processes accumulate ``accumulation / W`` each.
    """
    if accumulation % world_size:
        raise ConfigError(f"optim.accumulation={accumulation} batches per update cannot be shared evenly by "
                          f"{world_size} processes; set it to a multiple of {world_size} (an update holds "
                          "optim.accumulation batches whatever the number of processes)")
    return accumulation // world_size


def _forget_accelerator_settings() -> None:
    """Lets the next Accelerator of this process choose its own precision.

    accelerate keeps one precision per process in a singleton and refuses a second
    Accelerator with another ("AcceleratorState has already been initialized and cannot be
    changed"); a process that runs several trainings (notebooks, the test suite, cross-
    validation folds) needs each to get its own. accelerate has no public reset: this calls
    the private one its own test case class (``AccelerateTestCase``) uses between tests,
    keeping the process group (``reset_partial_state=False``). The one use of it; a test
    (``test_runtime.py``) catches a change of that private API.
    """
    AcceleratorState._reset_state(reset_partial_state=False)


def end_processes(code: int) -> None:
    """Ends a multi-process run's process with ``code`` once every process has got here, without the
    interpreter's teardown; returns at once in a single-process run.

    DistributedDataParallel's reducer keeps the gloo group's C++ object (and its transport
    threads, ``pt_gloo_runloop``) alive after ``destroy_process_group`` and after the model is
    freed; it is destroyed during the interpreter's teardown, where it now and then aborts the
    process ("terminate called without an active exception", exit -6) and fails a run that had
    finished and saved everything. Output is flushed first; every file the run writes is closed
    by then.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def stop_reason(max_minutes: float | None, stop_after: int | None, step: int, elapsed_s: float) -> str | None:
    """Why a run stops early at ``step`` (``max_minutes`` / ``stop_after`` of the run config), or None."""
    if stop_after is not None and step >= stop_after:
        return f"stop_after={stop_after} reached"
    if max_minutes is not None and elapsed_s > 60 * max_minutes:
        return f"max_minutes={max_minutes} reached"
    return None


def seed_everything(seed: int) -> None:
    """Seeds torch, numpy and Python's generators."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def set_threads(threads: int | None) -> None:
    """Limits torch's CPU threads when asked (several processes on one CPU)."""
    if threads:
        torch.set_num_threads(threads)
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["WORLD_SIZE"])))


def build_optimizer(params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], eps: float,
                    weight_decay: float, fused: bool = False) -> torch.optim.AdamW:
    """AdamW over trainable parameters; biases and norm weights (1-D) get no weight decay. ``fused``: the
    kernel that updates each tensor in one pass (3.7x faster over BASE's parameters on a CPU)."""
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None)


def set_lr(optimizer: torch.optim.Optimizer, peak: float, step: int, total: int, cfg: ScheduleConfig) -> float:
    """Sets the rate of update ``step`` on every parameter group; returns it."""
    lr = peak * lr_scale(step, total, cfg)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def global_sum(accelerator: Accelerator, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over processes (float64 for exact counts)."""
    t = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    if accelerator.num_processes > 1:
        t = accelerator.reduce(t, reduction="sum")
    return t.tolist()


def gather_rejects(accelerator: Accelerator, rejects):
    """Every process's skipped inputs in one :class:`~cssl.data.rejects.Rejects` (a collective call: all
    processes make it; one process: ``rejects`` itself)."""
    if accelerator.num_processes == 1:
        return rejects
    from accelerate.utils import gather_object

    from cssl.data.rejects import Rejects

    merged = Rejects()
    for items in gather_object([list(rejects.items.values())]):
        merged.extend(items)
    return merged


def gradient_norm(accelerator: Accelerator, model: torch.nn.Module, total_count: float, grad_clip: float) -> float:
    """Normalises accumulated gradients by the update's count and clips them; returns their norm
    before clipping (non-finite when a gradient is)."""
    params = [p for p in model.parameters() if p.grad is not None]
    scale = accelerator.num_processes / max(total_count, 1.0)
    for p in params:
        p.grad.mul_(scale)
    if grad_clip > 0:
        return float(accelerator.clip_grad_norm_(params, grad_clip))
    return float(torch.linalg.vector_norm(torch.stack([p.grad.detach().float().norm() for p in params])))


def guarded_update(accel: Accelerator, model: torch.nn.Module, optimizer: torch.optim.Optimizer, health,
                   loss: float, total_count: float, grad_clip: float, step: int) -> float:
    """Steps when the update's summed loss and its gradient norm are finite; otherwise drops its
    gradients (``health`` counts it and raises after too many in a row). Returns the gradient norm,
    NaN for a skipped update. Under fp16 loss scaling an infinite gradient is the scaler's to skip
    (it lowers the scale), as torch.amp does."""
    lr = optimizer.param_groups[0]["lr"] if optimizer.param_groups else 0.0
    advice = nonfinite_advice(lr, grad_clip, str(accel.mixed_precision))
    if math.isfinite(loss):
        norm = gradient_norm(accel, model, total_count, grad_clip)
        if health.check_loss(0.0 if accel.scaler is not None else norm, step, advice, what="gradient norm"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return norm
    else:
        health.check_loss(loss, step, advice)
    optimizer.zero_grad(set_to_none=True)
    return math.nan

