"""What the benchmarks print about the CPU: its model name and the kernels PyTorch dispatches on it."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_kind() -> str:
    """PyTorch's CPU kernels as this process runs (``AVX512``, ``AVX2``, ...; ``ATEN_CPU_CAPABILITY`` lowers them)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def cpu_line() -> str:
    """``NAME (KIND kernels)``."""
    return f"{cpu_name()} ({cpu_kind()} kernels)"
