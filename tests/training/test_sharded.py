"""Training on 8 simulated devices (FSDP, and FSDP × tensor) follows the single-device loss curve."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from data_pipeline.loader import make_global_batch
from tulu_jax.models import init_params, param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, batch_sharding, make_mesh
from tulu_jax.stages.sft import BATCH_KEYS, SFTLossConfig, global_token_count, make_sft_loss
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import create_train_state, state_shardings
from tulu_jax.training.step import build_train_step, jit_train_step

from tests.training.conftest import micro_config, packed_batch

CONFIG = micro_config(num_heads=4, num_kv_heads=2)
STEPS = 5


def loss_curve(mesh_config: MeshConfig, devices) -> list[float]:
    mesh = make_mesh(mesh_config, devices=devices)
    schedule = make_schedule(1e-2, ScheduleConfig(warmup_steps=1), STEPS)
    optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-2, weight_decay=0.1), schedule)
    shardings = state_shardings(mesh, optimizer, param_shapes(CONFIG), param_logical_axes(CONFIG))
    loss_fn = make_sft_loss(CONFIG, SFTLossConfig(reduction="sum", logits_chunk_size=8))
    step = jit_train_step(build_train_step(loss_fn, optimizer, schedule, 1, global_token_count, mesh),
                          mesh, shardings, BATCH_KEYS)
    state = create_train_state(jax.device_get(init_params(CONFIG, jax.random.PRNGKey(0))), optimizer, 0, shardings)
    curve = []
    for index in range(STEPS):
        batch = make_global_batch(packed_batch(8, 16, seed=index), batch_sharding(mesh))
        state, metrics = step(state, batch)
        curve.append(float(metrics["loss_sum"]) / float(metrics["trained_tokens"]))
    return curve


@pytest.fixture(scope="module")
def single_device_curve():
    return loss_curve(MeshConfig(data=1, fsdp=1, tensor=1), jax.devices()[:1])


@pytest.mark.slow  # three compilations; about 80 s of CPU time
@pytest.mark.parametrize("mesh_config", [MeshConfig(fsdp=8), MeshConfig(fsdp=4, tensor=2)], ids=["fsdp8", "fsdp4_tensor2"])
def test_sharded_loss_curve_matches_one_device(single_device_curve, mesh_config):
    assert len(jax.devices()) == 8
    curve = loss_curve(mesh_config, jax.devices())
    np.testing.assert_allclose(curve, single_device_curve, atol=1e-5, rtol=0)
    assert curve[-1] < curve[0]  # it trains
