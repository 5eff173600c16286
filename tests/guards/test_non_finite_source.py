"""A source checkpoint holding NaN is refused at load, naming the tensor (issue 28 finding 13); it used to fail
after step 1 with "Lower optimizer.learning_rate"."""

import jax
import numpy as np
import pytest

from tulu_jax.errors import CheckpointError
from tulu_jax.hf import read_checkpoint_dir, read_hf_config, save_hf_checkpoint
from tulu_jax.hf.safetensors_io import write_checkpoint_dir
from tulu_jax.models import init_params, param_logical_axes, preset
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh, tree_shardings
from tulu_jax.stages.model_source import ModelConfig, load_model_params


def test_a_checkpoint_with_nan_is_refused_naming_the_tensor(tmp_path):
    config = preset("tiny", vocab_size=512)
    save_hf_checkpoint(tmp_path / "base", jax.device_get(init_params(config, jax.random.PRNGKey(0))), config)
    tensors = read_checkpoint_dir(tmp_path / "base")  # memory-mapped: written to another directory
    tensors["model.norm.weight"] = np.full_like(tensors["model.norm.weight"], np.nan)
    write_checkpoint_dir(tmp_path / "nan", tensors)
    (tmp_path / "nan" / "config.json").write_text((tmp_path / "base" / "config.json").read_text())
    loaded = read_hf_config(tmp_path / "nan")
    shardings = tree_shardings(make_mesh(MeshConfig()), param_logical_axes(loaded), param_shapes(loaded))
    with pytest.raises(CheckpointError, match=r"NaN or inf values in \['norm'\]\['scale'\]"):
        load_model_params(ModelConfig(source=str(tmp_path / "nan")), loaded, 0, shardings)
