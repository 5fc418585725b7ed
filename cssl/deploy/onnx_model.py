"""An exported model run by ONNX Runtime, with the eager model's call contract: waveforms (B, S) and
lengths (B,) in, logits (B, T, V) and frame lengths (B,) out, as torch tensors. The Recognizer decodes
it through the same decoders as a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cssl.deploy.metadata import ExportMetadata
from cssl.train.checkpoint import CheckpointError


class OnnxCTCModel:
    """An ONNX file written by :func:`cssl.deploy.export.export_onnx`, ready to run on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        """``threads``: ONNX Runtime's intra-op threads (default: torch's current setting)."""
        try:
            import onnxruntime as ort
        except ImportError as err:  # pragma: no cover - a dependency of the package
            raise CheckpointError(f"{path}: running an ONNX model needs onnxruntime (pip install onnxruntime)") from err
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{path}: no such file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Memory patterns plan one block per input shape; with every utterance a new length they only add:
        # off, the peak of a padded BASE batch of 8 fell from 6.3 to 3.4 GB at the same speed (docs/performance.md).
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for unreadable files
            raise CheckpointError(f"{path}: ONNX Runtime cannot load it ({str(err).splitlines()[0]})") from err
        props = self.session.get_modelmeta().custom_metadata_map
        try:
            self.meta = ExportMetadata.from_props(props, str(path))
        except ValueError as err:
            raise CheckpointError(str(err)) from None
        names = [i.name for i in self.session.get_inputs()]
        if names != ["waves", "lengths"]:
            raise CheckpointError(f"{path}: inputs {names}, expected ['waves', 'lengths']; export it with cssl export")

    @property
    def stride(self) -> int:
        """Samples between consecutive output frames."""
        return self.meta.stride

    @property
    def receptive_field(self) -> int:
        """Samples one output frame sees."""
        return self.meta.receptive_field

    def __call__(self, waves: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Logits (B, T, V) and valid frames (B,) of ``waves`` (B, S); shorter input than one receptive
        field is zero-padded to it (its valid frames stay as the eager model counts them)."""
        if lengths is None:
            lengths = torch.full((waves.shape[0],), waves.shape[1], dtype=torch.long)
        short = self.receptive_field - waves.shape[1]
        if short > 0:
            waves = F.pad(waves, (0, short))  # (B, receptive field)
        logits, frames = self.session.run(None, {
            "waves": np.ascontiguousarray(waves.detach().cpu().numpy(), dtype=np.float32),
            "lengths": np.ascontiguousarray(lengths.detach().cpu().numpy(), dtype=np.int64),
        })
        return torch.from_numpy(logits), torch.from_numpy(frames).clamp(min=0)
