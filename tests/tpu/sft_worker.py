"""One process of a multi-process SFT run on CPU: a few steps of the SFT stage's step, then a checkpoint round trip.

Run as ``python sft_worker.py OUT_JSON CHECKPOINT_DIR`` with ``TULU_*`` variables for the process group
(none for the single-process reference) and ``XLA_FLAGS`` forcing the local CPU device count.
Process 0 writes the per-step losses, and the loss of the step replayed after a restore, to OUT_JSON.
"""

import json
import sys

from tulu_jax import distributed

distributed.initialize()  # before any device is touched

import jax  # noqa: E402
import numpy as np  # noqa: E402

from tulu_jax.checkpoint import CheckpointConfig, Checkpointer  # noqa: E402
from tulu_jax.models import init_params, param_logical_axes, preset  # noqa: E402
from tulu_jax.models.params import param_shapes  # noqa: E402
from tulu_jax.sharding import MeshConfig, batch_sharding, make_mesh  # noqa: E402
from tulu_jax.stages.sft import BATCH_KEYS, SFTLossConfig, global_token_count, make_sft_loss  # noqa: E402
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule  # noqa: E402
from tulu_jax.training.state import abstract_state, create_train_state, state_shardings  # noqa: E402
from tulu_jax.training.step import build_train_step, jit_train_step  # noqa: E402

STEPS, BATCH, LENGTH = 3, 8, 32
MODEL = preset("tiny")


def global_batches():
    """The same global batches in every process: random tokens, prompt halves masked, two examples a row."""
    rng = np.random.default_rng(0)
    for _ in range(STEPS):
        input_ids = rng.integers(2, MODEL.vocab_size, (BATCH, LENGTH)).astype(np.int32)
        labels = input_ids.copy()
        labels[:, : LENGTH // 4] = -100
        segment_ids = np.where(np.arange(LENGTH) < LENGTH // 2, 1, 2).astype(np.int32).repeat(BATCH).reshape(LENGTH, BATCH).T
        positions = (np.arange(LENGTH) % (LENGTH // 2)).astype(np.int32)[None].repeat(BATCH, 0)
        yield {"input_ids": input_ids, "labels": labels, "segment_ids": np.ascontiguousarray(segment_ids), "positions": positions}


def main(out_path: str, checkpoint_dir: str) -> None:
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    schedule = make_schedule(1e-3, ScheduleConfig(kind="constant", warmup_steps=0), STEPS)
    optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-3), schedule)
    shapes, axes = param_shapes(MODEL), param_logical_axes(MODEL)
    shardings = state_shardings(mesh, optimizer, shapes, axes)
    state = create_train_state(jax.device_get(init_params(MODEL, jax.random.PRNGKey(0))), optimizer, 0, shardings)
    loss_fn = make_sft_loss(MODEL, SFTLossConfig())
    step = jit_train_step(build_train_step(loss_fn, optimizer, schedule, 2, global_token_count, mesh), mesh, shardings, BATCH_KEYS)

    sharding = batch_sharding(mesh)
    share = distributed.process_share(sharding, BATCH)
    batches = [
        {key: jax.make_array_from_process_local_data(sharding, value[share.row_start : share.row_stop]) for key, value in batch.items()}
        for batch in global_batches()
    ]
    checkpointer = Checkpointer(checkpoint_dir, CheckpointConfig(async_save=False))
    losses = []
    for index, batch in enumerate(batches):
        if index == STEPS - 1:
            checkpointer.save(index, state, {"next_batch": index}, {"model": "tiny"}, force=True)
            checkpointer.wait()
        state, metrics = step(state, batch)
        losses.append(float(jax.device_get(metrics["loss"])))
    restored = checkpointer.restore(STEPS - 1, abstract_state(optimizer, shapes, shardings))
    _, replay_metrics = step(restored.state, batches[STEPS - 1])
    checkpointer.close()
    if distributed.is_primary():
        with open(out_path, "w") as sink:
            json.dump({
                "losses": losses,
                "replayed_loss": float(jax.device_get(replay_metrics["loss"])),
                "process_count": jax.process_count(),
                "device_count": jax.device_count(),
                "local_rows": share.local_rows,
                "restored_data_state": restored.data_state,
            }, sink)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
