"""Typed configs: YAML + dotted overrides into frozen dataclasses, with errors that name the key."""

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from tulu_jax.cli import main
from tulu_jax.config import apply_overrides, from_dict, load_config, to_yaml
from tulu_jax.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    rate: float = 1e-3
    kind: Literal["linear", "cosine"] = "linear"


@dataclass(frozen=True)
class Outer:
    name: str = "run"
    steps: int = 10
    flag: bool = False
    limit: Optional[int] = None
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = field(default_factory=Inner)


def test_yaml_and_overrides_build_the_typed_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: demo\ninner:\n  rate: 5e-6\n")
    config = load_config(Outer, path, ["steps=3", "inner.kind=cosine", "sizes=[4, 8]", "limit=7", "flag=true"])
    assert config == Outer(name="demo", steps=3, flag=True, limit=7, sizes=(4, 8), inner=Inner(5e-6, "cosine"))
    assert from_dict(Outer, __import__("yaml").safe_load(to_yaml(config))) == config


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["stpes=3"], r"unknown key 'stpes' for Outer; allowed keys: flag, inner, limit, name, sizes, steps"),
        (["inner.knd=cosine"], r"config.inner: unknown key 'knd'"),
        (["inner.kind=exp"], r"config.inner.kind: 'exp' is not allowed; choose one of 'linear', 'cosine'"),
        (["steps=many"], r"config.steps: expected an integer, got 'many'"),
        (["flag=maybe"], r"config.flag: expected true or false"),
        (["steps"], r"not of the form key=value"),
    ],
)
def test_mistakes_name_the_key_and_the_allowed_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, None, overrides)


def test_missing_or_malformed_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Outer, tmp_path / "list.yaml")


def test_overrides_create_nested_sections():
    assert apply_overrides({"a": 1}, ["b.c.d=2"]) == {"a": 1, "b": {"c": {"d": 2}}}


def test_cli_prints_config_errors_without_a_traceback(capsys):
    assert main(["sft", "--config", "configs/sft_tiny_cpu.yaml", "optimizer.learning_rat=1"]) == 1
    error = capsys.readouterr().err
    # The startup line (processes, devices) comes first; then the one-line error.
    assert error.splitlines()[-1].startswith("error: ") and len(error.splitlines()) == 2
    assert "unknown key 'learning_rat'" in error and "Traceback" not in error


@pytest.mark.parametrize("command, config", [("sft", "configs/sft_tiny_cpu.yaml"), ("rlvr", "configs/rlvr_tiny_cpu.yaml")])
def test_empty_output_dir_or_a_file_is_refused_at_load(command, config, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # an empty output_dir would have trained here
    config = str(__import__("pathlib").Path(__file__).parents[1] / config)
    before = sorted(path.name for path in tmp_path.parent.iterdir())
    assert main([command, "--config", config, "output_dir="]) == 1
    error = capsys.readouterr().err
    assert "output_dir is empty" in error and "Traceback" not in error
    a_file = tmp_path / "not_a_dir"
    a_file.write_text("keep me")
    assert main([command, "--config", config, f"output_dir={a_file}"]) == 1
    error = capsys.readouterr().err
    assert "is a file, not a directory" in error and "Traceback" not in error and a_file.read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.parent.iterdir()) == before


def test_output_dir_check_applies_to_any_config_with_one():
    @dataclass(frozen=True)
    class Run:
        output_dir: str = "runs/x"

    assert from_dict(Run, {}).output_dir == "runs/x"
    with pytest.raises(ConfigError, match="output_dir is empty"):
        from_dict(Run, {"output_dir": "  "})


def test_an_empty_model_source_is_refused_at_load():
    """It used to pass load and data preparation and fail only when the model was looked for."""
    from tulu_jax.stages.sft import SFTConfig

    with pytest.raises(ConfigError, match=r"model: model.source is empty"):
        load_config(SFTConfig, "configs/sft_tiny_cpu.yaml", ["model.source="])
