"""Runtime helpers: accelerators one after another in one process, accumulation shares, banners."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cssl.train.runtime import cpu_has_bf16, describe_runtime, local_accumulation, make_accelerator
from cssl.utils.config import ConfigError


def test_successive_runs_in_one_process_get_their_own_precision() -> None:
    # accelerate keeps its settings in a process-wide singleton; each run must still get what it asks for.
    assert make_accelerator("no").mixed_precision == "no"
    assert make_accelerator("bf16").mixed_precision == "bf16"
    accel = make_accelerator("no")
    assert accel.mixed_precision == "no"
    assert describe_runtime(accel) == f"device {accel.device}, 1 process, mixed precision off"


def test_an_update_is_shared_evenly_by_the_processes() -> None:
    assert local_accumulation(64, 8) == 8 and local_accumulation(2, 2) == 1 and local_accumulation(3, 1) == 3
    with pytest.raises(ConfigError, match="cannot be shared evenly by 2 processes; set it to a multiple of 2"):
        local_accumulation(1, 2)


def test_fsdp_without_a_gpu_is_a_clear_error(monkeypatch) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: FSDP can run")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch sets for distributed_type: FSDP
    with pytest.raises(ConfigError, match="FSDP, which accelerate runs on GPUs only"):
        make_accelerator("no")


@pytest.mark.parametrize(("flags", "capability", "expected"), [
    ("fpu avx2 avx512f avx512_bf16", "AVX512", True),
    ("fpu avx2 amx_bf16 amx_tile", "AVX512", True),
    ("fpu avx2 avx512f", "AVX512", False),        # AVX-512 without bf16 arithmetic
    ("fpu avx2 avx512f avx512_bf16", "AVX2", False),  # ATEN_CPU_CAPABILITY=avx2: no AVX-512 kernels
    ("fpu avx2", "DEFAULT", False),
])
def test_bf16_autocast_needs_the_flag_and_the_avx512_kernels(flags: str, capability: str, expected: bool) -> None:
    assert cpu_has_bf16(flags, capability) is expected


def test_end_processes_flushes_output_and_skips_teardown(tmp_path) -> None:
    """The exit status is kept, buffered output and log lines reach their files, atexit handlers do not run."""
    import subprocess
    import sys

    script = ("import atexit, logging, sys\n"
              "import torch.distributed as dist\n"
              "from cssl.train.runtime import end_processes\n"
              f"logging.basicConfig(filename={str(tmp_path / 'run.log')!r}, level=logging.INFO)\n"
              "atexit.register(lambda: print('teardown ran'))\n"
              "logging.info('logged line')\n"
              "sys.stdout.write('no newline yet')\n"
              f"dist.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', rank=0, world_size=1)\n"
              "end_processes(3)\n"
              "print('end_processes returned')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "no newline yet"
    assert "logged line" in (tmp_path / "run.log").read_text()


class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are not finite."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("nan"))


def test_finite_loss_with_nan_gradients_skips_the_update():
    from cssl.train.health import Health, NonFiniteLoss
    from cssl.train.runtime import guarded_update

    accel = make_accelerator("no")
    layer = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=0.1)
    before = [p.detach().clone() for p in layer.parameters()]
    health = Health(max_nonfinite=2)
    loss = _NanGradient.apply(layer(torch.ones(2, 3))).sum()
    loss.backward()
    assert torch.isfinite(loss)
    norm = guarded_update(accel, layer, optimizer, health, float(loss), 2.0, grad_clip=1.0, step=0)
    assert norm != norm and health.nonfinite_total == 1  # NaN returned, counted
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))  # no step
    assert all(p.grad is None for p in layer.parameters())  # gradients dropped
    # a finite update goes through and resets the streak
    layer(torch.ones(2, 3)).sum().backward()
    assert guarded_update(accel, layer, optimizer, health, 1.0, 2.0, grad_clip=1.0, step=1) > 0
    assert health.nonfinite_streak == 0 and not torch.equal(before[0], layer.weight)
    with pytest.raises(NonFiniteLoss, match="non-finite gradient norm"):
        for step in (2, 3):
            _NanGradient.apply(layer(torch.ones(2, 3))).sum().backward()
            guarded_update(accel, layer, optimizer, health, 1.0, 2.0, grad_clip=0.0, step=step)


def test_fused_adamw_updates_as_the_per_tensor_loop_does() -> None:
    from cssl.train.runtime import build_optimizer

    torch.manual_seed(0)
    layers = [torch.nn.Linear(16, 8), torch.nn.Linear(16, 8)]
    layers[1].load_state_dict(layers[0].state_dict())
    start = layers[0].weight.detach().clone()
    optimizers = [build_optimizer(layer.parameters(), 1e-2, (0.9, 0.98), 1e-6, 0.01, fused=fused)
                  for layer, fused in zip(layers, (False, True))]
    assert [o.defaults["fused"] for o in optimizers] == [None, True]
    assert [g["weight_decay"] for g in optimizers[1].param_groups] == [0.01, 0.0]  # the bias is not decayed
    for _ in range(5):
        x = torch.randn(4, 16)
        for layer, optimizer in zip(layers, optimizers):
            layer(x).square().sum().backward()
            optimizer.step()
            optimizer.zero_grad()
    for a, b in zip(layers[0].parameters(), layers[1].parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)  # the same updates, other rounding
    assert (layers[0].weight - start).abs().max() > 1e-2  # five updates of lr 1e-2 moved the weights

