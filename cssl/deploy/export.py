"""``cssl export``: a fine-tuned checkpoint as an ONNX file (dynamic batch and length axes), optionally with
int8 weights, its recognizer metadata inside (:mod:`cssl.deploy.metadata`).

The graph maps waveforms (B, S) float32 and their valid lengths (B,) int64 to CTC logits (B, T, V) and
valid frame counts (B,): the model's own forward (torchaudio's contract), captured by ``torch.export``
with the stock PyTorch kernels (the CPU-tuned ones are eager-only). Logits stay uncalibrated in the graph;
the temperature, like the vocabulary, travels in the metadata, so greedy decoding needs no softmax. The
input must be at least one receptive field long (400 samples for the standard local tower): the ONNX
recognizer pads shorter audio, as the eager model does.

``int8`` quantises the weights of the matrix products (attention, feed-forward, projections, the CTC head)
with ONNX Runtime's dynamic quantisation (per output channel, activations quantised at run time); the
convolutions stay fp32 (ONNX Runtime's integer convolutions are slower than its fp32 ones on CPUs).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from cssl import SAMPLE_RATE
from cssl.convert.loading import load_model
from cssl.deploy.metadata import ExportMetadata
from cssl.deploy.onnx_model import OnnxCTCModel
from cssl.text.vocab import Vocabulary
from cssl.train.checkpoint import CheckpointError
from cssl.utils.io import atomic_write

OPSET = 18
"""ONNX opset of the exported graph."""


@dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how close the file is to the eager model."""

    path: Path
    """The ONNX file."""
    megabytes: float
    """Its size."""
    max_logit_error: float
    """Largest absolute logit difference from the eager model on a two-utterance check batch."""
    greedy_agreement: float
    """Share of that batch's valid frames whose most likely symbol is the eager model's."""
    metadata: ExportMetadata
    """The recognizer metadata inside."""


class CTCGraph(nn.Module):
    """The exported function: (waveforms (B, S), lengths (B,)) -> (logits (B, T, V), frame lengths (B,))."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, waves: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        logits, frames = self.model(waves, lengths)
        return logits, frames


def export_onnx(checkpoint: str | Path, out: str | Path, int8: bool = False) -> ExportReport:
    """Exports the fine-tuned model of ``checkpoint`` to ``out`` (written atomically)."""
    loaded = load_model(checkpoint)
    if loaded.vocab is None or loaded.model.aux is None:
        raise CheckpointError(f"{checkpoint}: {loaded.source} has no CTC head; only fine-tuned models export "
                              "(cssl finetune ... init=this file, then export its best.pt)")
    return export_model(loaded.model, loaded.vocab, out, int8, loaded.temperature, loaded.normalize,
                        loaded.source, json.dumps(asdict(loaded.config)))


def export_model(model: nn.Module, vocab: Vocabulary, out: str | Path, int8: bool = False, temperature: float = 1.0,
                 normalize: bool = False, source: str = "", architecture: str = "{}") -> ExportReport:
    """Exports a model with a CTC head (a :class:`~cssl.model.Wav2Vec2Model`) and its decoding facts to ``out``."""
    out = Path(out)
    model = model.float().eval()
    encoder = model.feature_extractor
    meta = ExportMetadata(
        symbols=tuple(vocab.symbols), temperature=float(temperature), normalize=bool(normalize),
        sample_rate=SAMPLE_RATE, stride=encoder.stride, receptive_field=encoder.receptive_field,
        quantization="int8-dynamic" if int8 else "none", source=source, architecture=architecture)
    waves, lengths = _check_batch(encoder.receptive_field)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _trace(model, waves, lengths, encoder.receptive_field, fp32)
        graph = fp32
        if int8:
            graph = Path(tmp) / "int8.onnx"
            _quantize(fp32, graph)
        atomic_write(out, lambda target: _write_with_metadata(graph, target, meta))
    with torch.no_grad():
        eager, _ = model(waves, lengths)
    got, frames = OnnxCTCModel(out)(waves, lengths)
    valid = torch.arange(got.shape[1])[None, :] < frames[:, None]  # (B, T)
    agree = (got.argmax(-1) == eager.argmax(-1))[valid].float().mean()
    return ExportReport(out, out.stat().st_size / 2**20, float((got - eager).abs().max()), float(agree), meta)


def _check_batch(receptive_field: int) -> tuple[Tensor, Tensor]:
    """Two utterances of speech-like noise (1.5 s and 1 s), fixed seed: the export's example and check."""
    generator = torch.Generator().manual_seed(0)
    waves = torch.randn(2, 24000, generator=generator) * 0.1
    lengths = torch.tensor([24000, max(16000, receptive_field)])
    waves[1, int(lengths[1]) :] = 0
    return waves, lengths


def _trace(model: nn.Module, waves: Tensor, lengths: Tensor, receptive_field: int, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=1024)
    samples = torch.export.Dim("samples", min=receptive_field, max=SAMPLE_RATE * 3600)
    with warnings.catch_warnings(), torch.no_grad(), _quiet("torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's notes on torchvision and deprecations
        program = torch.onnx.export(CTCGraph(model), (waves, lengths), dynamo=True, opset_version=OPSET,
                                    input_names=["waves", "lengths"], output_names=["logits", "frame_lengths"],
                                    dynamic_shapes=({0: batch, 1: samples}, {0: batch}), verbose=False,
                                    report=False)
    program.save(str(path))


def _quantize(fp32: Path, int8: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inferred = fp32.with_name("inferred.onnx")
    with _quiet("root"):  # ONNX Runtime's tools log every tensor they leave alone
        quant_pre_process(str(fp32), str(inferred), skip_symbolic_shape=True)
        quantize_dynamic(str(inferred), str(int8), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Gemm"])


@contextlib.contextmanager
def _quiet(*loggers: str) -> Iterator[None]:
    """Raises ``loggers`` to ERROR within the block."""
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in loggers]
    for logger, _ in saved:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


def _write_with_metadata(graph: Path, target: Path, meta: ExportMetadata) -> None:
    import onnx

    proto = onnx.load(str(graph))
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "cssl"
    onnx.save(proto, str(target))

