"""Typed configs: frozen dataclasses loaded from YAML, with dotted ``a.b.c=value`` overrides.

Every section of a config is a frozen dataclass owned by the part of the code it configures
(``models.config.LlamaConfig``, ``sharding.MeshConfig``, ``training.optimizer.OptimizerConfig``,
``data_pipeline.config.DataConfig`` ...). This module only knows how to build, check and print them.

A config class may declare ``RENAMED_KEYS = {"old.dotted.key": "new.dotted.key"}`` (a ``ClassVar``): for one
release the old name still loads, with a warning that names the new one, and an error about a key given by its
old name names it as written.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, get_args, get_origin, get_type_hints

import yaml

from tulu_jax.errors import ConfigError

T = TypeVar("T")

log = logging.getLogger(__name__)


def load_config(cls: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Read ``path`` (YAML) into ``cls``, apply ``key=value`` overrides, validate, return the frozen config."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
        raw = loaded or {}
    raw = apply_overrides(raw, overrides)
    return from_dict(cls, raw, where=str(path) if path else "config")


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``a.b.c=value`` set; values are parsed as YAML scalars/lists."""
    result = _deep_copy(raw)
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override {override!r} is not of the form key=value (e.g. optimizer.learning_rate=1e-5)")
        key, value_text = override.split("=", 1)
        try:
            value = yaml.safe_load(value_text) if value_text != "" else ""
        except yaml.YAMLError:
            value = value_text
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return result


def from_dict(cls: type[T], raw: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping, refusing unknown keys and values of the wrong type."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(raw).__name__}")
    raw, used_old_names = _renamed(cls, raw, where)
    try:
        return _build(cls, raw, where)
    except ConfigError as error:
        raise ConfigError(_as_written(str(error), used_old_names)) from None


def _build(cls: type[T], raw: Mapping[str, Any], where: str) -> T:
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for {cls.__name__}; allowed keys: {', '.join(sorted(fields))}"
        )
    hints = get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in raw.items()}
    try:
        instance = cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None
    _check_output_dir(instance, where)
    return instance


def _renamed(cls: type, raw: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, str]]:
    """``raw`` with each old key of ``cls.RENAMED_KEYS`` moved to its new name (laid over what the new name
    holds, so an old-named override still changes a new-named file), and ``{new: old}`` of the names moved."""
    renames = getattr(cls, "RENAMED_KEYS", {})
    if not renames:
        return dict(raw), {}
    result, used = _deep_copy(raw), {}
    for old, new in renames.items():
        *old_parents, old_name = old.split(".")
        node = result
        for part in old_parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or old_name not in node:
            continue
        value = node.pop(old_name)
        *new_parents, new_name = new.split(".")
        target = result
        for part in new_parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"{where}.{part}: expected a mapping, got {target!r}")
        target[new_name] = _laid_over(target.get(new_name), value)
        used[new] = old
        log.warning("%s: %s is now called %s; the old name works until the next release", where, old, new)
    return result, used


def _laid_over(base: Any, value: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(value, Mapping):
        merged = dict(base)
        for key, item in value.items():
            merged[key] = _laid_over(merged.get(key), item)
        return merged
    return value


def _as_written(message: str, used_old_names: Mapping[str, str]) -> str:
    """``message`` with every renamed key that was given by its old name called by that old name."""
    for new, old in used_old_names.items():
        message = re.sub(rf"(?<![\w]){re.escape(new)}(?![\w])", old, message)
    return message


def _check_output_dir(config: Any, where: str) -> None:
    """Every config with an ``output_dir`` (each stage's) needs one that names a directory.

    Empty would train into the current directory; an existing file would fail later with a traceback."""
    value = getattr(config, "output_dir", None)
    if not isinstance(value, str):
        return
    if not value.strip():
        raise ConfigError(f"{where}: output_dir is empty; give the directory the run writes to (e.g. runs/sft)")
    if "://" not in value and Path(value).exists() and not Path(value).is_dir():
        raise ConfigError(f"{where}: output_dir {value!r} is a file, not a directory; choose another output_dir")


def to_dict(config: Any) -> Any:
    """A plain YAML-able rendering of a config (nested dataclasses, tuples as lists, enums as values)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {field.name: to_dict(getattr(config, field.name)) for field in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(item) for item in config]
    if isinstance(config, dict):
        return {key: to_dict(value) for key, value in config.items()}
    if isinstance(config, enum.Enum):
        return config.value
    if isinstance(config, Path):
        return str(config)
    return config


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def check_choice(where: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise a ConfigError naming ``where`` when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if hint is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not allowed; choose one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list, Sequence) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(arg, item, f"{where}[{i}]") for i, (arg, item) in enumerate(zip(args, value)))
        item_hint = args[0] if args else Any
        return tuple(_coerce(item_hint, item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        return from_dict(hint, value, where)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "5e-6" (no dot) as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(
                f"{where}: {value!r} is not allowed; choose one of {', '.join(repr(m.value) for m in hint)}"
            ) from None
    return value


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _deep_copy(value) if isinstance(value, Mapping) else value for key, value in raw.items()}
