from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from cssl.utils.config import ConfigError, describe, field_docs, from_dict, load_config, to_dict


@dataclass
class Inner:
    """A nested section."""

    lr: float = 1e-3
    """Learning rate."""
    sizes: tuple[int, ...] = (1, 2)
    """Some sizes."""
    mode: Literal["a", "b", "no"] = "a"
    """A choice."""


@dataclass
class Outer:
    """The top level."""

    name: str = "x"
    """A name."""
    steps: int = 10
    """How many steps."""
    crop: int | None = 5
    """Optional crop."""
    flag: bool = False
    """A switch."""
    inner: Inner = field(default_factory=Inner)
    """The nested section."""


def test_defaults_yaml_and_cli_override_in_order(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\ninner:\n  lr: 2\n  sizes: [3, 4, 5]\n")
    cfg = load_config(Outer, path, ["inner.lr=1e-3", "crop=null", "flag=true", "inner.mode=b"])
    assert cfg.steps == 20
    assert cfg.inner.lr == 0.001 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.sizes == (3, 4, 5)
    assert cfg.crop is None and cfg.flag is True and cfg.inner.mode == "b"
    assert cfg.name == "x"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("inner:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'inner\.lrr'"):
        load_config(Outer, path)
    with pytest.raises(ConfigError, match=r"command line.*unknown key 'nope'"):
        load_config(Outer, None, ["nope=1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("steps=1.5", "'steps' must be an integer"),
        ("steps=true", "'steps' must be an integer"),
        ("inner.lr=fast", "'inner.lr' must be a number"),
        ("flag=1", "'flag' must be true or false"),
        ("inner.mode=c", "'inner.mode' must be one of"),
        ("inner=3", "'inner' is a section"),
        ("inner.sizes=[1,x]", r"'inner.sizes\[1\]' must be an integer"),
        ("steps", "expected key=value"),
    ],
)
def test_wrong_types_are_rejected(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, [override])


def test_base_inheritance_and_cycles(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("steps: 7\ninner:\n  lr: 3\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ninner:\n  mode: b\n")
    cfg = load_config(Outer, tmp_path / "child.yaml")
    assert (cfg.steps, cfg.inner.lr, cfg.inner.mode) == (7, 3.0, "b")
    (tmp_path / "x.yaml").write_text("base: y.yaml\n")
    (tmp_path / "y.yaml").write_text("base: x.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Outer, tmp_path / "x.yaml")


def test_non_mapping_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(Outer, tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(Outer, tmp_path / "absent.yaml")


def test_round_trip_through_dict() -> None:
    cfg = load_config(Outer, None, ["inner.sizes=[9]", "name=y"])
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_field_docs_and_describe() -> None:
    assert field_docs(Inner) == {"lr": "Learning rate.", "sizes": "Some sizes.", "mode": "A choice."}
    lines = describe(Outer())
    assert "inner.lr = 0.001  # Learning rate." in lines


def test_section_from_yaml_file(tmp_path: Path) -> None:
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "inner.yaml").write_text("lr: 4\nmode: b\n")
    (tmp_path / "stage.yaml").write_text("inner: presets/inner.yaml\nsteps: 3\n")
    cfg = load_config(Outer, tmp_path / "stage.yaml", ["inner.lr=5"])
    assert (cfg.inner.lr, cfg.inner.mode, cfg.steps) == (5.0, "b", 3)
    (tmp_path / "bad.yaml").write_text("inner: presets/absent.yaml\n")
    with pytest.raises(ConfigError, match="absent.yaml: config file not found"):
        load_config(Outer, tmp_path / "bad.yaml")


def test_bare_no_reaches_a_literal_as_text() -> None:
    assert load_config(Outer, None, ["inner.mode=no"]).inner.mode == "no"


def test_presets_ship_inside_the_package() -> None:
    from cssl.utils.config import PRESETS, preset
    from pretrain.config import PretrainConfig

    assert PRESETS.parent.name == "cssl"  # package data, not the checkout's folder
    cfg = load_config(PretrainConfig, preset("pretrain/tiny.yaml"))  # its model: ../model/tiny.yaml resolves too
    assert cfg.model.context.embed_dim == 256
    with pytest.raises(ConfigError, match="the shipped presets are: .*pretrain/tiny.yaml"):
        preset("pretrain/nope.yaml")


def test_every_stage_preset_loads_into_its_stage_config() -> None:
    """A typo in a shipped preset (an unknown key, a value out of range) fails here, not in a user's run."""
    from cssl.utils.config import PRESETS
    from finetune.config import FinetuneConfig
    from pretrain.config import PretrainConfig

    stages = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}
    loaded = []
    for stage, cls in stages.items():
        for path in sorted((PRESETS / stage).glob("*.yaml")):
            loaded.append(load_config(cls, path))
    assert len(loaded) >= 10
    read = load_config(FinetuneConfig, PRESETS / "finetune" / "tiny-read.yaml")
    assert (read.early_stop.metric, read.optim.lr, read.model.context.embed_dim) == ("cer", 0.0005, 256)


def test_a_section_file_replaces_the_section(tmp_path: Path) -> None:
    (tmp_path / "inner.yaml").write_text("mode: b\n")
    cfg = load_config(Outer, None, ["inner.lr=5", f"inner={tmp_path / 'inner.yaml'}"])
    assert (cfg.inner.lr, cfg.inner.mode) == (Inner().lr, "b")  # lr=5 set earlier does not survive


def test_model_file_over_a_tiny_preset_gives_that_model_alone() -> None:
    from cssl.model import ModelConfig
    from cssl.utils.config import preset, read_yaml
    from finetune.config import FinetuneConfig
    from pretrain.config import PretrainConfig

    base = load_config(ModelConfig, preset("model/base.yaml"))
    for stage, name in ((FinetuneConfig, "finetune/tiny.yaml"), (PretrainConfig, "pretrain/tiny.yaml")):
        cfg = load_config(stage, preset(name), [f"model={preset('model/base.yaml')}"])
        assert cfg.model == base
        assert cfg.model.context.pos_conv_kernel == 128 and cfg.model.quantizer.temperature[2] == 0.999995
    for name in ("tiny", "base", "large"):  # presets spell out every architectural field
        written = read_yaml(preset(f"model/{name}.yaml"))
        full = to_dict(load_config(ModelConfig, preset(f"model/{name}.yaml")))
        assert set(written) == set(full)
        for section, value in full.items():
            if isinstance(value, dict):
                assert set(written[section]) == set(value), (name, section)


def test_accelerate_launch_configs_parse_and_name_our_layer_class() -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    from cssl.model import context
    from cssl.utils.config import preset

    seen = {}
    for name in ("1node-8gpu", "2node-16gpu", "fsdp-large"):
        cfg = load_config_from_file(str(preset(f"accelerate/{name}.yaml")))
        assert cfg.mixed_precision == "bf16" and cfg.num_processes == 8 * cfg.num_machines
        seen[name] = cfg
    assert seen["2node-16gpu"].num_machines == 2 and seen["2node-16gpu"].main_process_port
    wrap = seen["fsdp-large"].fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    assert isinstance(getattr(context, wrap), type)  # the class FSDP wraps exists under that name
