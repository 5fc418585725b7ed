"""fairseq wav2vec 2.0 checkpoints: pretraining (``wav2vec2``, quantizer, ``project_q``,
``final_proj`` and ``mask_emb`` kept) and CTC fine-tuned (``wav2vec_ctc``: ``w2v_encoder.*``,
with the letter dictionary ``dict.ltr.txt`` found beside the file).

A fairseq file is a pickle whose configuration is an ``argparse.Namespace`` (older files,
``args``) or plain dicts (``cfg``). It is read with ``torch.load(weights_only=True)`` and
an allow-list of the few harmless classes such files hold; anything else in the pickle
(a class, a function: code that unpickling would run) is refused by name before loading.
"""

from __future__ import annotations

import argparse
import ast
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from cssl.convert import payload
from cssl.convert.keymaps import FAIRSEQ, rename
from cssl.convert.vocab import import_vocab, reorder_rows
from cssl.model import ModelConfig
from cssl.model.config import ContextConfig, FeatureEncoderConfig, MaskConfig, QuantizerConfig
from cssl.train.checkpoint import CheckpointError

ARCHITECTURES = ("wav2vec2", "wav2vec_ctc")
SAFE_GLOBALS = {"argparse.Namespace": argparse.Namespace}
"""Classes a fairseq checkpoint may hold besides containers and tensors, and their objects."""
DEFAULT_CONV = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
DICTIONARY = "dict.ltr.txt"
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
"""fairseq's Dictionary puts these first, in this order; its CTC blank is ``<s>`` (bos)."""


def load_fairseq_file(path: Path) -> dict[str, Any]:
    """The checkpoint dict of a fairseq file, unpickled with nothing but the allow-list."""
    if not zipfile.is_zipfile(path):  # torch's legacy format (fairseq files before torch 1.6): no listing of
        return _load_legacy(path)      # globals; the weights-only unpickler refuses any outside the allow-list
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
    refused = sorted(set(found) - set(SAFE_GLOBALS))
    if refused:
        raise CheckpointError(f"{path}: refused: the pickle names {refused}, which loading would run; "
                              f"a fairseq wav2vec 2.0 checkpoint holds only tensors, containers and "
                              f"{', '.join(SAFE_GLOBALS)}")
    with torch.serialization.safe_globals(list(SAFE_GLOBALS.values())):
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_legacy(path: Path) -> dict[str, Any]:
    """A legacy-format (non-zip) checkpoint through the weights-only unpickler with the allow-list."""
    import pickle

    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS.values())):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        named = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        raise CheckpointError(f"{path}: refused: the pickle names {named.group(1) if named else 'a global'}, which "
                              f"loading would run; a fairseq wav2vec 2.0 checkpoint holds only tensors, containers and "
                              f"{', '.join(SAFE_GLOBALS)}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {str(err)[:200]})") from None


def is_fairseq(raw: dict[str, Any]) -> bool:
    """A fairseq checkpoint dict: a ``model`` state with ``args`` or ``cfg``."""
    return isinstance(raw.get("model"), dict) and ("args" in raw or "cfg" in raw) and "kind" not in raw


def read_fairseq(path: Path, raw: dict[str, Any] | None = None, dictionary: Path | None = None) -> dict[str, Any]:
    """The cssl checkpoint dict of a fairseq wav2vec 2.0 (pretraining or CTC) checkpoint."""
    source = str(path)
    raw = raw if raw is not None else load_fairseq_file(path)
    model_args, task_args, criterion = _sections(raw, source)
    arch = model_args.get("_name") or model_args.get("arch")
    state = dict(raw["model"])
    fine_tuned = any(k.startswith("w2v_encoder.") for k in state)
    if fine_tuned and arch not in (None, "wav2vec_ctc", "wav2vec2_ctc"):
        raise _unsupported(arch, source)
    if fine_tuned:
        inner = model_args.get("w2v_args")
        if inner is None:
            raise CheckpointError(f"{source}: a fine-tuned model without w2v_args (its pretraining config)")
        model_args, inner_task, _ = _sections({"args": inner} if isinstance(inner, argparse.Namespace) else {"cfg": inner},
                                              source)
        task_args = task_args or inner_task
        inner_arch = model_args.get("_name") or model_args.get("arch")
        if inner_arch not in (None, "wav2vec2") and not str(inner_arch).startswith("wav2vec2"):
            raise _unsupported(inner_arch, source)
        state = {_strip(k): v for k, v in state.items()}
    elif arch not in (None, "wav2vec2") and not str(arch).startswith("wav2vec2"):
        raise _unsupported(arch, source)
    cfg = config_from_fairseq(model_args, source)
    ours = rename(state, FAIRSEQ, to_peer=False, source=source)
    normalize = bool(task_args.get("normalize", False))
    loss = {"num_distractors": model_args.get("num_negatives", 100),
            "cross_distractors": model_args.get("cross_sample_negatives", 0),
            "logit_temperature": model_args.get("logit_temp", 0.1)}
    weights = criterion.get("loss_weights")
    if weights:
        loss["diversity_weight"], loss["penalty_weight"] = (list(weights) + [0.0, 0.0])[:2]
    if not fine_tuned:
        return payload.pretrain_payload(cfg, ours, normalize, f"fairseq checkpoint {source}", loss)
    dict_path = dictionary or path.parent / DICTIONARY
    if not dict_path.is_file():
        raise CheckpointError(f"{source}: a CTC model; its letter dictionary {dict_path} is missing "
                              f"(fairseq keeps it beside the data: copy {DICTIONARY} next to the checkpoint)")
    symbols = list(SPECIALS) + _dictionary(dict_path)
    rows = ours["model.aux.weight"].shape[0]
    if len(symbols) != rows:
        raise CheckpointError(f"{dict_path}: {len(symbols)} symbols with fairseq's 4 specials, the CTC head {rows}")
    blank = "<ctc_blank>" if "<ctc_blank>" in symbols else "<s>"
    vocab, order = import_vocab(symbols, blank, "<unk>", "|", str(dict_path))
    head = reorder_rows({"weight": ours.pop("model.aux.weight"), "bias": ours.pop("model.aux.bias")}, order)
    ours.update({f"model.aux.{k}": v for k, v in head.items()})
    return payload.finetune_payload(cfg, ours, vocab, normalize, f"fairseq checkpoint {source}")


def config_from_fairseq(args: dict[str, Any], source: str) -> ModelConfig:
    """Our architecture for a fairseq ``Wav2Vec2Config`` (dict or Namespace fields; fairseq's defaults)."""
    get = args.get
    if get("activation_fn", "gelu") != "gelu":
        raise CheckpointError(f"{source}: activation_fn={get('activation_fn')!r}; cssl models use GELU")
    if get("layer_type", "transformer") != "transformer" or get("pos_conv_depth", 1) != 1:
        raise CheckpointError(f"{source}: layer_type={get('layer_type')!r}, pos_conv_depth={get('pos_conv_depth')}; "
                              "cssl reads the wav2vec 2.0 Transformer with one position convolution")
    if get("quantize_input", False):
        raise CheckpointError(f"{source}: quantize_input=true is not supported")
    embed = get("encoder_embed_dim", 768)
    final_dim = get("final_dim", 0) or embed
    temp = get("latent_temp", (2.0, 0.5, 0.999995))
    temp = _literal(temp, "latent_temp", source) if isinstance(temp, str) else temp
    return ModelConfig(
        feature_encoder=FeatureEncoderConfig(
            conv_layers=[tuple(int(v) for v in layer) for layer in
                         _literal(get("conv_feature_layers", DEFAULT_CONV), "conv_feature_layers", source)],
            norm="layer_norm" if get("extractor_mode", "default") == "layer_norm" else "group_norm",
            bias=bool(get("conv_bias", False)),
        ),
        context=ContextConfig(
            embed_dim=embed, num_layers=get("encoder_layers", 12), num_heads=get("encoder_attention_heads", 12),
            ffn_dim=get("encoder_ffn_embed_dim", 3072), layer_norm_first=bool(get("layer_norm_first", False)),
            pos_conv_kernel=get("conv_pos", 128), pos_conv_groups=get("conv_pos_groups", 16),
            dropout=get("dropout", 0.1), attention_dropout=get("attention_dropout", 0.1),
            activation_dropout=get("activation_dropout", 0.0), dropout_input=get("dropout_input", 0.0),
            layer_drop=get("encoder_layerdrop", 0.0),
        ),
        quantizer=QuantizerConfig(groups=get("latent_groups", 2), entries=get("latent_vars", 320),
                                  dim=get("latent_dim", 0) or final_dim, temperature=tuple(float(t) for t in temp)),
        mask=MaskConfig(prob=get("mask_prob", 0.65), span=get("mask_length", 10), min_spans=2),
        final_dim=final_dim,
        dropout_features=get("dropout_features", 0.0),
        feature_grad_scale=get("feature_grad_mult", 1.0),
    )


def _sections(raw: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(model, task, criterion) settings of a fairseq checkpoint, from ``cfg`` or the older ``args``."""
    cfg = raw.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), (dict, argparse.Namespace)):
        model = cfg["model"]
        model = vars(model) if isinstance(model, argparse.Namespace) else model
        return dict(model), dict(cfg.get("task") or {}), dict(cfg.get("criterion") or {})
    args = raw.get("args")
    if isinstance(args, argparse.Namespace):
        flat = vars(args)
        return flat, flat, flat
    raise CheckpointError(f"{source}: neither 'cfg' nor 'args' holds the model configuration")


def _strip(key: str) -> str:
    key = key[len("w2v_encoder."):] if key.startswith("w2v_encoder.") else key
    return key[len("w2v_model."):] if key.startswith("w2v_model.") else key


def _literal(text: Any, name: str, source: str) -> Any:
    """A fairseq config string such as ``[(512, 10, 5)] + [(512, 3, 2)] * 4``, evaluated without ``eval``."""
    if not isinstance(text, str):
        return text
    try:
        return _eval(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError) as err:
        raise CheckpointError(f"{source}: {name}={text!r} is not a list expression cssl can read ({err})") from err


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_eval(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _eval(node.left), _eval(node.right)
        return left + right if isinstance(node.op, ast.Add) else left * right
    raise ValueError(f"unexpected {type(node).__name__}")


def _dictionary(path: Path) -> list[str]:
    """The symbols of a fairseq ``dict.*.txt`` (``SYMBOL COUNT [#fairseq:overwrite]`` per line)."""
    symbols = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip().split(" ")
        if len(parts) < 2:
            raise CheckpointError(f"{path}:{number}: expected 'SYMBOL COUNT', got {line!r}")
        symbols.append(parts[0])
    return symbols


def _unsupported(arch: Any, source: str) -> CheckpointError:
    return CheckpointError(f"{source}: fairseq architecture {arch!r}; cssl reads fairseq {', '.join(ARCHITECTURES)} "
                           "(and transformers Wav2Vec2*, torchaudio Wav2Vec2Model); HuBERT, WavLM and data2vec are not supported")
