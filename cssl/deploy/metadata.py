"""What an exported model carries beside its graph: the vocabulary, temperature, input normalisation and
frame geometry a recognizer needs, as ONNX ``metadata_props`` (strings under ``cssl.`` keys)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from cssl.text.vocab import Vocabulary

FORMAT = 1
"""Version of the metadata layout; a reader refuses newer ones."""
PREFIX = "cssl."


@dataclass(frozen=True)
class ExportMetadata:
    """The recognizer's side of an exported model."""

    symbols: tuple[str, ...]
    """The CTC vocabulary, blank first (a symbol's position is its output index)."""
    temperature: float
    """Calibrated temperature that divides the logits (1 when never calibrated)."""
    normalize: bool
    """Whether the model reads zero-mean, unit-variance waveforms."""
    sample_rate: int
    """Input sample rate in Hz."""
    stride: int
    """Samples between consecutive output frames."""
    receptive_field: int
    """Samples one output frame sees; shorter input is zero-padded to it."""
    quantization: str
    """``none``, or how the weights were quantised (``int8-dynamic``)."""
    source: str
    """What was exported (the checkpoint's description)."""
    architecture: str
    """The model configuration as JSON, for the record."""

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.symbols)

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` of this record."""
        props = {f"{PREFIX}format": str(FORMAT)}
        for key, value in asdict(self).items():
            props[PREFIX + key] = json.dumps(list(value)) if key == "symbols" else json.dumps(value)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], name: str) -> ExportMetadata:
        """Reads the record from ``props``; raises ``ValueError`` naming what is missing or unreadable."""
        fields = [f for f in cls.__dataclass_fields__]
        missing = [PREFIX + k for k in ["format", *fields] if PREFIX + k not in props]
        if len(missing) == len(fields) + 1:
            raise ValueError(f"{name}: an ONNX model without this suite's metadata (no {PREFIX}* keys); export "
                             "fine-tuned checkpoints with `cssl export CKPT OUT.onnx`")
        if missing:
            raise ValueError(f"{name}: the model's metadata lacks {', '.join(missing)}; export it again with "
                             "`cssl export`")
        if int(props[f"{PREFIX}format"]) > FORMAT:
            raise ValueError(f"{name}: metadata format {props[PREFIX + 'format']} is newer than this version "
                             f"reads ({FORMAT}); upgrade cssl")
        try:
            values = {k: json.loads(props[PREFIX + k]) for k in fields}
        except json.JSONDecodeError as err:
            raise ValueError(f"{name}: unreadable metadata ({err})") from err
        values["symbols"] = tuple(values["symbols"])
        return cls(**values)
