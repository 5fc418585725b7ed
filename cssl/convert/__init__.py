"""Checkpoints in and out: cssl, transformers, fairseq, fairseq2 and torchaudio wav2vec 2.0 models.

:func:`read_checkpoint` turns any supported file or folder into a cssl checkpoint dict
(:mod:`cssl.convert.payload`), which the loaders, both stages' ``init`` and ``cssl
convert`` take; :func:`write_checkpoint` writes one in a peer's format. One module per
peer; their parameter names are tables in :mod:`cssl.convert.keymaps`.

===========  ==========================================  =======================================
format       read                                         written
===========  ==========================================  =======================================
cssl         ``kind: pretrain`` / ``finetune`` files      ``torch.save`` of the dict
hf           folder: Wav2Vec2ForPreTraining, -Model,      folder ``from_pretrained`` loads
             -ForCTC (+ vocab.json)
fairseq      wav2vec2 / wav2vec_ctc ``.pt`` (safe load)   (not written)
fairseq2     wav2vec2 family ``NAME.pt`` + card NAME.yaml  the same (pretraining models)
torchaudio   ``Wav2Vec2Model.state_dict()`` (+ NAME.json) state dict + NAME.json
===========  ==========================================  =======================================
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cssl.utils.errors import UserError
from cssl.utils.io import replace_folder

if TYPE_CHECKING:  # torch is imported by the functions that need it: ``cssl --help`` stays quick
    from cssl.model import ModelConfig

FORMATS = ("cssl", "hf", "fairseq", "fairseq2", "torchaudio")
WRITABLE = ("cssl", "hf", "fairseq2", "torchaudio")


def detect(path: str | Path, raw: dict[str, Any] | None = None) -> str:
    """The format of ``path`` (``raw``: the file already loaded, for files)."""
    import torch

    from cssl.convert.fairseq import is_fairseq
    from cssl.convert.fairseq2 import is_fairseq2
    from cssl.convert.hf import is_hf_dir
    from cssl.train.checkpoint import CheckpointError

    path = Path(path)
    if path.is_dir():
        if is_hf_dir(path):
            return "hf"
        raise CheckpointError(f"{path}: a folder without config.json; cssl reads transformers folders "
                              "(config.json + model.safetensors) and checkpoint files")
    if raw is None:
        raw = _load(path)
    if isinstance(raw.get("kind"), str):
        return "cssl"
    if is_fairseq(raw):
        return "fairseq"
    if is_fairseq2(raw):
        return "fairseq2"
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        return "torchaudio"
    raise CheckpointError(f"{path}: not a checkpoint cssl knows (keys {sorted(raw)[:6]}); "
                          f"supported: {', '.join(FORMATS)}")


def read_checkpoint(path: str | Path, config: ModelConfig | None = None) -> dict[str, Any]:
    """Any supported checkpoint as a cssl checkpoint dict; ``config``: the architecture of a bare state dict."""
    from cssl.convert.fairseq import read_fairseq
    from cssl.convert.fairseq2 import read_fairseq2
    from cssl.convert.hf import read_hf
    from cssl.convert.torchaudio import read_torchaudio

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    if path.is_dir():
        detect(path)
        return read_hf(path)
    raw = _load(path)
    kind = detect(path, raw)
    if kind == "cssl":
        return raw
    if kind == "fairseq":
        return read_fairseq(path, raw)
    if kind == "fairseq2":
        return read_fairseq2(path, raw, config)
    return read_torchaudio(path, raw, config)


def output_paths(out: str | Path, to: str) -> list[Path]:
    """What writing ``to`` at ``out`` creates: the folder (hf) or the file and its companion."""
    from cssl.convert.fairseq2 import card_path
    from cssl.convert.torchaudio import sidecar

    out = Path(out)
    return {"torchaudio": [out, sidecar(out)], "fairseq2": [out, card_path(out)]}.get(to, [out])


def write_checkpoint(ckpt: dict[str, Any], out: str | Path, to: str) -> list[Path]:
    """Writes a cssl checkpoint dict as ``to``; returns the files written."""
    from cssl.convert.fairseq2 import write_fairseq2
    from cssl.convert.hf import write_hf
    from cssl.convert.torchaudio import write_torchaudio
    from cssl.train.checkpoint import save_checkpoint

    out = Path(out)
    if to == "hf":  # a folder written whole: no file of an older model left beside the new one
        written = replace_folder(out, lambda tmp: write_hf(ckpt, tmp))
        return [out / p.name for p in written]  # the folder's files are flat
    if to == "torchaudio":
        return write_torchaudio(ckpt, out)
    if to == "fairseq2":
        return write_fairseq2(ckpt, out)
    if to == "cssl":
        save_checkpoint(out, ckpt)
        return [out]
    raise UserError(f"cannot write {to!r}; writable formats: {', '.join(WRITABLE)}")


def _load(path: Path) -> dict[str, Any]:
    """A checkpoint file: ``weights_only`` first, then fairseq's allow-list (a Namespace inside)."""
    import torch

    from cssl.convert.fairseq import load_fairseq_file
    from cssl.train.checkpoint import CheckpointError

    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only met a global: fairseq's Namespace, or worse
        raw = load_fairseq_file(path)  # refuses, naming them, pickles with anything beyond the allow-list
    except (RuntimeError, EOFError, OSError, ValueError) as err:  # cut short, not a torch file...
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err)[:200]}); "
                              "it may be cut short: copy or write it again") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: holds a {type(raw).__name__}, not a checkpoint dict")
    return raw
