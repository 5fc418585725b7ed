"""Typed configuration: dataclass defaults, YAML overrides, ``key=value`` overrides.

Every stage and component has a ``@dataclass`` config whose defaults are complete.
A YAML file only overrides some of those defaults, and so do command-line arguments
of the form ``section.key=value`` (the value is parsed as YAML: ``lr=1e-3``,
``crop=null``, ``speeds=[0.9,1.1]``). Unknown keys and values of the wrong type
stop with a :class:`ConfigError` naming the key and where it came from.

A YAML file may start from another one with ``base: other.yaml`` (resolved relative
to the file); keys in the file then override the base's. A section may also be given
as the path of a YAML file holding that section's keys (``model: ../model/tiny.yaml``),
which is how stage configs share the model presets; such a file replaces the section
(it starts from the section's defaults), so ``model=configs/model/base.yaml`` on top of a
tiny preset gives BASE, not a mix of both.

Numeric fields may carry bounds: ``lr: Annotated[float, POSITIVE]`` or
``prob: Annotated[float, Range(0, 1)]``. A value outside them stops with the key, the
value and the allowed range when the config loads, not minutes into a run.

Field documentation follows the attribute-docstring convention: a string literal
right after the field. :func:`field_docs` reads them back for ``--help`` output.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from cssl.utils.errors import UserError

T = TypeVar("T")

BASE_KEY = "base"

PRESETS = Path(__file__).resolve().parents[1] / "configs"
"""The shipped presets (``model/``, ``pretrain/``, ``finetune/``), package data; ``configs/`` in a checkout."""


def preset(name: str) -> Path:
    """The shipped preset ``name`` (``pretrain/tiny.yaml``), found whether cssl runs from a checkout or is installed."""
    path = PRESETS / name
    if not path.is_file():
        known = sorted(str(p.relative_to(PRESETS)) for p in PRESETS.glob("*/*.yaml"))
        raise ConfigError(f"no preset {name!r}; the shipped presets are: {', '.join(known)}")
    return path


class ConfigError(UserError, ValueError):
    """A configuration value that cannot be used; the message names key and source."""


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric field, given as ``Annotated[float, Range(...)]`` metadata."""

    low: float | None = None
    """Smallest allowed value (None: unbounded)."""
    high: float | None = None
    """Largest allowed value (None: unbounded)."""
    low_open: bool = False
    """The low bound itself is not allowed."""
    high_open: bool = False
    """The high bound itself is not allowed."""

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies within the bounds."""
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)
"""Greater than zero (rates, sizes, temperatures)."""
NON_NEGATIVE = Range(0)
"""Zero or more (counts, weights)."""
AT_LEAST_ONE = Range(1)
"""One or more (steps, layers, processes)."""
PROBABILITY = Range(0, 1)
"""A probability or share in [0, 1]."""
DROPOUT = Range(0, 1, high_open=True)
"""A dropout rate in [0, 1)."""

Positive = Annotated[float, POSITIVE]
"""A float greater than zero."""
NonNegative = Annotated[float, NON_NEGATIVE]
"""A float of zero or more."""
Probability = Annotated[float, PROBABILITY]
"""A float in [0, 1]."""
Dropout = Annotated[float, DROPOUT]
"""A dropout rate in [0, 1)."""
Count = Annotated[int, NON_NEGATIVE]
"""An integer of zero or more."""
PositiveInt = Annotated[int, AT_LEAST_ONE]
"""An integer of one or more."""


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()
) -> T:
    """Builds ``cls`` from its defaults, then the YAML file at ``path``, then ``overrides``."""
    cfg = cls()
    if path is not None:
        cfg = apply_dict(cfg, read_yaml(Path(path)), source=str(path), base_dir=Path(path).resolve().parent)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"command line: expected key=value, got {item!r}")
        value = _parse_scalar(raw, source=f"command line ({item})")
        cfg = override(cfg, key.strip(), value, source=f"command line ({item})")
    return cfg


def override(cfg: T, dotted: str, value: Any, source: str) -> T:
    """A copy of ``cfg`` with one (dotted) key set, checked like a YAML value."""
    return apply_dict(cfg, _nest(dotted, value), source=source, base_dir=Path.cwd())


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Reads a YAML mapping, following ``base:`` links; cycles and non-mappings are errors."""
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' links form a cycle")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    merged = read_yaml(path.parent / str(base), _seen + (path,))
    return _deep_merge(merged, data)


def apply_dict(cfg: T, data: dict[str, Any], source: str, prefix: str = "", base_dir: Path | None = None) -> T:
    """Returns a copy of ``cfg`` with the values of ``data`` set, checking keys and types.

    A section given as a string is read as a YAML file (relative to ``base_dir``).
    """
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    changes = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown key '{name}' (known keys here: {known})")
        hint = hints[key]
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            if value is None:
                raise ConfigError(f"{source}: '{name}' is a section and cannot be null")
            if isinstance(value, str) and base_dir is not None:
                # A file replaces the section: it starts from the section's defaults, not from
                # what earlier layers set (model=base.yaml over a tiny preset gives BASE, not a hybrid).
                include = (base_dir / value).resolve()
                fresh = _section_default(fields[key], current)
                changes[key] = apply_dict(fresh, read_yaml(include), str(include), base_dir=include.parent)
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{name}' is a section; give a mapping of its keys or a YAML file")
            changes[key] = apply_dict(current, value, source, prefix=f"{name}.", base_dir=base_dir)
        else:
            changes[key] = coerce(value, hint, name, source)
    return dataclasses.replace(cfg, **changes)


def _section_default(f: dataclasses.Field, current: Any) -> Any:
    """The default value of a section field (its factory's, else a fresh instance of its type)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return type(current)()


def coerce(value: Any, hint: Any, name: str, source: str) -> Any:
    """Checks ``value`` against the type ``hint`` and converts lossless cases (int to float, list to tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin is Annotated:
        value = coerce(value, args[0], name, source)
        for bound in hint.__metadata__:
            if isinstance(bound, Range) and value is not None and not bound.contains(value):
                raise ConfigError(f"{source}: '{name}' = {value!r} is out of range; it must be {bound}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, name, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{source}: '{name}' = {value!r} matches none of {hint}")
    if origin is typing.Literal:
        if isinstance(value, bool) and ("yes" if value else "no") in args:
            value = "yes" if value else "no"  # YAML 1.1 reads a bare no/yes as a boolean
        if value not in args:
            raise ConfigError(f"{source}: '{name}' must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{name}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: '{name}' must have {len(args)} items, got {len(value)}")
            return tuple(coerce(v, a, f"{name}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [coerce(v, item, f"{name}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{name}' must be a mapping, got {value!r}")
        key_hint, value_hint = args if args else (Any, Any)
        return {coerce(k, key_hint, f"{name} key", source): coerce(v, value_hint, f"{name}.{k}", source)
                for k, v in value.items()}
    if hint is float:
        if isinstance(value, str):
            value = _yaml_float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{name}' must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{name}' must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{name}' must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: '{name}' must be a string, got {value!r}")
        return value
    if value is None:
        raise ConfigError(f"{source}: '{name}' cannot be null")
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for checkpoints and YAML dumps)."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "checkpoint") -> T:
    """Rebuilds a config saved with :func:`to_dict`, with the same checks as YAML."""
    return apply_dict(cls(), data, source=source)


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass and its dataclass bases: ``{field: first line}``.

    A subclass that redeclares a field (to change its default) may document it anew.
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = nxt.value.value.strip().splitlines()[0]
    return docs


def describe(cfg: Any, prefix: str = "") -> list[str]:
    """Lines ``key = value  # doc`` for every leaf of a config, for ``--help``."""
    lines = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            lines.extend(describe(value, prefix=f"{prefix}{f.name}."))
        else:
            doc = docs.get(f.name, "")
            lines.append(f"{prefix}{f.name} = {value!r}" + (f"  # {doc}" if doc else ""))
    return lines


def _yaml_float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _parse_scalar(raw: str, source: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: cannot parse value {raw!r}: {err}") from err


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out

