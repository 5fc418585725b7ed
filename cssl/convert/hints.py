"""What ``model.*`` setting would make a model fit a file: hints for mismatch errors."""

from __future__ import annotations

import re
from collections.abc import Sequence

_SHAPE_HINTS: tuple[tuple[str, str], ...] = (
    (r"mask_embedding$", "model.context.embed_dim = {s0}"),
    (r"feature_extractor\.conv_layers\.(?P<i>\d+)\.conv\.weight$",
     "model.feature_encoder.conv_layers[{i}] = [{s0}, {s2}, stride] (channels, kernel)"),
    (r"feature_extractor\.conv_layers\.(?P<i>\d+)\.layer_norm\.", "model.feature_encoder.conv_layers[{i}] channels = {s0}"),
    (r"feature_projection\.projection\.weight$", "model.context.embed_dim = {s0}"),
    (r"feature_projection\.layer_norm\.", "model.feature_encoder.conv_layers (last channels = {s0})"),
    (r"pos_conv_embed\.conv\.parametrizations\.weight\.original1$",
     "model.context.pos_conv_kernel = {s2}, model.context.pos_conv_groups = embed_dim / {s1}"),
    (r"pos_conv_embed\.conv\.parametrizations\.weight\.original0$", "model.context.pos_conv_kernel = {s2}"),
    (r"feed_forward\.intermediate_dense\.weight$", "model.context.ffn_dim = {s0}"),
    (r"(attention|layer_norm|output_dense|bias)", "model.context.embed_dim = {s0}"),
    (r"quantizer\.codebook$", "model.quantizer.entries = {s1} / groups, model.quantizer.dim = groups x {s2}"),
    (r"quantizer\.weight_proj\.weight$", "model.quantizer.groups x entries = {s0}"),
    (r"(project_q|final_proj)\.weight$", "model.final_dim = {s0}"),
    (r"aux\.", "a CTC head of {s0} outputs (the vocabulary)"),
)


def mismatch_hint(missing: Sequence[str], unexpected: Sequence[str], key: str | None = None,
                  shape: tuple[int, ...] | None = None) -> str:
    """A ``set model.X = ...`` hint for a shape mismatch at ``key`` or for missing/unexpected keys."""
    if key is not None and shape is not None:
        dims = {f"s{i}": d for i, d in enumerate(shape)}
        for pattern, text in _SHAPE_HINTS:
            match = re.search(pattern, key)
            if match:
                try:
                    return "the file fits " + text.format(**match.groupdict(), **dims)
                except (KeyError, IndexError):
                    break
        return "set model.* to the file's architecture (cssl pretrain CONFIG --print-config shows it)"
    layers = [int(m.group(1)) for k in unexpected if (m := re.search(r"transformer\.layers\.(\d+)\.", k))]
    if layers:
        return f"the file has {max(layers) + 1} Transformer layers: set model.context.num_layers = {max(layers) + 1}"
    convs = [int(m.group(1)) for k in unexpected if (m := re.search(r"conv_layers\.(\d+)\.", k))]
    if convs:
        return f"the file has {max(convs) + 1} conv layers: set model.feature_encoder.conv_layers to match"
    in_layers = [(int(m.group(1)), m.group(2)) for k in missing if (m := re.search(r"transformer\.layers\.(\d+)\.(.+)", k))]
    if in_layers:
        first = min(i for i, _ in in_layers)
        parts = {part for i, part in in_layers if i == first}
        if any("attention" in p for p in parts) and any("feed_forward" in p for p in parts):  # whole layers
            return f"the file has {first} Transformer layers: set model.context.num_layers = {first}"
        names = sorted({part for _, part in in_layers})
        return (f"the file lacks {', '.join(names[:3])} in Transformer layer(s) "
                f"{', '.join(str(i) for i in sorted({i for i, _ in in_layers})[:5])}: it is incomplete or another "
                "architecture's; convert it again from its source")
    if any("pos_conv" in k for k in missing):
        return ("the file has no positional convolution (pos_conv): it is incomplete or another architecture's; "
                "convert it again from its source")
    if any("layer_norm" in k for k in list(missing) + list(unexpected)):
        return "the file's local tower uses the other norm: set model.feature_encoder.norm (group_norm / layer_norm)"
    if any(re.search(r"conv_layers\.\d+\.conv\.bias$", k) for k in list(missing) + list(unexpected)):
        return "the file's conv layers differ in biases: set model.feature_encoder.bias"
    return "set model.* to the file's architecture"
