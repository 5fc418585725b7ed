"""fairseq2's pretraining step, timed inside the fairseq2 environment (.venv-fairseq2) for
benchmarks/pretrain_step.py, which writes the model (``cssl convert``'s fairseq2 output: the same
weights and configuration as the cssl model it times) and the waveforms.

    python benchmarks/fairseq2_step_peer.py DIR NAME --steps 5 --threads 2 [--bf16] [--device cpu]

A full step: fairseq2's own masking and distractor sampling, ``Wav2Vec2Model.forward`` (loss
with the diversity and feature-penalty weights), backward, AdamW. Prints one JSON line with
the step times after one warm-up step (fairseq2 compiles its quantizer on the first call).
Only torch, fairseq2 and yaml are imported.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("name")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--diversity", type=float, default=0.1)
    parser.add_argument("--penalty", type=float, default=0.0)
    args = parser.parse_args()
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(args.folder.resolve())
    os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    torch.set_num_threads(args.threads)
    from fairseq2.models import load_model
    from fairseq2.nn import BatchLayout

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = load_model(args.name, device=device, dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # the kernel the other two steps use
    waves = torch.load(args.folder / "waves.pt", weights_only=True).to(device)
    layout = BatchLayout(tuple(waves.shape), seq_lens=[waves.shape[1]] * waves.shape[0], device=device)
    times = []
    for i in range(args.steps + 1):
        _sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss, output = model(waves, layout, diversity_weight=args.diversity, features_penalty_weight=args.penalty)
        (loss.aggregate / output.num_targets).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        if i > 0:
            times.append(time.perf_counter() - start)
    print(json.dumps({"fairseq2": times, "torch": torch.__version__}))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
