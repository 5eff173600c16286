"""An SFT run resumed with a changed model shape is told which model fields and arrays differ; its checkpoints stay
as they were."""

from __future__ import annotations

from pathlib import Path

from tests.training.sft_data import make_run_inputs, tiny_overrides
from tulu_jax.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_resume_with_a_changed_model_names_the_difference(tmp_path, capsys):
    make_run_inputs(tmp_path / "inputs", copies=4)
    run = tmp_path / "run"
    config = str(ROOT / "configs/sft_tiny_cpu.yaml")
    base = tiny_overrides(tmp_path / "inputs", run, "training.max_steps=2", "checkpoint.save_every=2",
                          "training.tensorboard=false", "training.batch_size=16")
    assert main(["sft", "--config", config, *base]) == 0
    capsys.readouterr()
    before = sorted(path.name for path in (run / "checkpoints").iterdir())
    changed = [*base, "training.max_steps=4", "model.overrides.intermediate_size=96"]
    assert main(["sft", "--config", config, *changed]) == 1
    error = capsys.readouterr().err
    print(error)
    line = next(line for line in error.splitlines() if line.startswith("error: "))
    assert line.startswith("error: shape mismatch") and "Traceback" not in error
    # The model field that changed comes first, with its old and new values; then the arrays it changed.
    assert "intermediate_size: 128 -> 96" in line and "num_layers" not in line
    assert line.index("intermediate_size: 128 -> 96") < line.index("params.layers.mlp.down_proj.kernel")
    assert "checkpoint is intact" in line
    assert "arrays: params.layers.mlp.down_proj.kernel saved (2, 128, 64), now (2, 96, 64);" in line and "saved (" in line and "96)" in line and "corrupt" not in error
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == before
