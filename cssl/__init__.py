"""cssl: self-supervised speech representation learning (wav2vec 2.0 style) and CTC fine-tuning."""

from pathlib import Path

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
"""The rate, in Hz, that every waveform in the pipeline is resampled to."""

ASSETS = Path(__file__).resolve().parent / "assets"
"""What ships with the package: the pretrained checkpoints, their model cards, the label-budget figures."""
PRETRAINED = ASSETS / "tiny-pretrained.pt"
"""The tiny model pretrained on synthetic speech (the demo's start)."""
REAL_PRETRAINED = ASSETS / "tiny-real-pretrained.pt"
"""The tiny model pretrained further on real speech (the start for real recordings)."""
