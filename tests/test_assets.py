"""The shipped checkpoints load as pretraining releases, and the real-speech one says what it heard."""

from __future__ import annotations

from pathlib import Path

import torch

from cssl.cli.select import default_checkpoint
from cssl.convert.loading import load_model
from cssl.train.checkpoint import load_checkpoint

ASSETS = Path(__file__).resolve().parents[1] / "cssl" / "assets"


def test_the_real_speech_checkpoint_is_a_release_with_its_speakers_and_card() -> None:
    path = ASSETS / "tiny-real-pretrained.pt"
    release = load_checkpoint(path)
    assert release["kind"] == "pretrain" and release["step"] == 6000
    speakers = release["speakers"]
    assert len(speakers) == 178 and {s.split(":")[0] for s in speakers} == {"ls", "sc", "fsdd"}
    assert not {"fsdd:theo", "fsdd:yweweler"} & set(speakers)  # FSDD's test speakers were never heard
    assert all(v.dtype == torch.float16 for v in release["model"].values() if v.is_floating_point())
    model = load_model(path).model.eval()
    with torch.no_grad():
        out = model.encode(torch.randn(1, 16000))
    assert out.layers[-1].shape == (1, 49, 256)  # 20 ms frames of the tiny model
    card = (ASSETS / "tiny-real-pretrained.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in card and "CC BY-SA 4.0" in card and "5.14 h" in card
    assert default_checkpoint() == path  # what cssl select embeds with
