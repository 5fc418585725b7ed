"""cssl: self-supervised speech representation learning (wav2vec 2.0 style) and CTC fine-tuning."""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000
"""The rate, in Hz, that every waveform in the pipeline is resampled to."""
