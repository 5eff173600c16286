"""A full disk or a read-only output, and config.json shapes that lie, are one-line errors that lose nothing."""

import errno
import json

import pytest

import tulu_jax.hf.streamed_export as streamed_export
from tests.models.hf_reference import save_random_hf_llama
from tulu_jax.cli import main


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf")
    save_random_hf_llama(directory)
    return directory


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_during_export_is_one_line_and_leaves_no_directory(hf_model, tmp_path, monkeypatch,
                                                                                  capsys, code):
    def fail(folder, *args, **kwargs):
        raise OSError(code, "No space left on device" if code == errno.ENOSPC else "Read-only file system",
                      str(folder / "model.safetensors"))

    monkeypatch.setattr(streamed_export, "_write_shards", fail)
    assert main(["convert", "--from-hf", str(hf_model), "--to-hf", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in "\n".join(lines)
    assert ("free some space" if code == errno.ENOSPC else "read-only") in lines[-1]
    assert not (tmp_path / "out").exists()  # the next stage cannot mistake a half export for a model


def test_a_head_dim_that_does_not_match_the_weights_names_the_tensor(hf_model, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in hf_model.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    config = json.loads((broken / "config.json").read_text())
    config["head_dim"] = 8  # the weights were made with 64 / 4 heads = 16
    (broken / "config.json").write_text(json.dumps(config))
    assert main(["convert", "--from-hf", str(broken), "--to-hf", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert "model.layers.0.self_attn." in error and "has shape" in error and "does not match the weights" in error
    assert "Traceback" not in error
