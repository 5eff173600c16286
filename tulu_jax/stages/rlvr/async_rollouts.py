"""Asynchronous RLVR (``rollout.async_steps = k >= 1``): rollouts on a sampler sub-mesh, k steps ahead.

The slice is split (``distributed.sub_meshes.split_devices``): every process gives its first
``rollout.sampler_chips / processes`` devices to the sampler, the rest to the learner. Policy versions count
learner steps: the state after step ``n`` is version ``n``. The rollout trained on at step ``n`` was sampled
by version ``max(0, n - 1 - k)``, so it is never more than k versions older than the policy it updates
(k = 0 would be the synchronous recipe, which keeps its own path in ``stage.RLVR.step``).

One step ``n`` (``AsyncRollouts``, a ``training.loop.TrainStep``), every process running the same programs:
  1. the policy (version ``n - 1``) is resharded on the learner's chips into the sampling layout and copied
     device to device onto the sampler's chips (``sampler_weights``; no host copy, no collective between the
     sub-meshes);
  2. the learner's prepare and update programs are dispatched on the oldest queued rollout;
  3. while they run, the sampler decodes the prompts of step ``n + k`` with version ``n - 1``, and each host
     scores its rows; the rollout is moved to the learner's mesh and queued with its version.
At the first step the queue is empty: the rollouts of steps ``1 .. k`` are sampled first, all by version 0.

The queue is part of the checkpoint (``QueuedState.queue``: token ids, sampler log-probs and scores of k
rollouts, a few MB), and the prompt loader runs k batches ahead of the learner, so a resumed run trains on
exactly the rollouts the interrupted one would have. The rollout metrics logged at step ``n`` (reward,
accuracy, lengths) describe the rollout sampled during step ``n``, as in the synchronous recipe; the learner's
describe the update of step ``n``; ``rollout/policy_lag`` is the age of the rollout trained on.

Held-out evaluation decodes on the learner's chips between steps (``RLVR.eval_sampler``).
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from tulu_jax import sharding
from tulu_jax.distributed.sub_meshes import copy_tree_across, split_devices
from tulu_jax.errors import TuluError
from tulu_jax.generation import sampling_layout
from tulu_jax.stages.rlvr.config import RLVRConfig
from tulu_jax.stages.rlvr.rollout import RolloutBatch, assemble_rollout
from tulu_jax.training.state import TrainState

log = logging.getLogger(__name__)

QUEUED_FIELDS = ("input_ids", "positions", "segment_ids", "response_mask", "sampler_logprobs", "scores")


class QueuedRollout(NamedTuple):
    """A rollout sampled ahead of the learner: its batch on the learner's mesh, and the policy version (learner
    steps taken) that sampled it."""

    batch: RolloutBatch
    version: jax.Array  # int32 scalar, replicated


@flax.struct.dataclass
class QueuedState(TrainState):
    """The train state plus the rollouts of the next k steps, oldest first (saved with every checkpoint)."""

    queue: tuple = ()


def train_state(state: QueuedState) -> TrainState:
    """The learner's part, what its programs take."""
    return TrainState(step=state.step, params=state.params, opt_state=state.opt_state, rng=state.rng)


def sub_meshes(config: RLVRConfig) -> tuple[Mesh, Mesh]:
    """``(learner mesh, sampler mesh)`` over disjoint chips; the sampler gets ``rollout.sampler_chips`` (0: half
    the slice). The learner mesh follows ``config.mesh`` on its chips; the sampler's is fsdp over its chips
    with the training tensor size (its sampling layout is chosen from it, as for the whole slice)."""
    chips = config.rollout.sampler_chips or jax.device_count() // 2
    sampler_devices, learner_devices = split_devices(chips)
    learner = sharding.make_mesh(config.mesh, learner_devices)
    sampler = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=-1, tensor=config.mesh.tensor), sampler_devices)
    return learner, sampler


class AsyncRollouts:
    """The asynchronous step: ``host`` takes the prompt batches to sample, ``device`` runs the step (above)."""

    def __init__(self, rlvr: Any, loader: Any):
        self.rlvr, self.loader = rlvr, loader
        self.steps_ahead = rlvr.config.rollout.async_steps
        model = rlvr.model_config
        sample_mesh = rlvr.sampler.sample_mesh
        # The learner's chips as groups of the sampler's size: the copy's source, shard for shard.
        self.staging_mesh = sharding.sampling_mesh(rlvr.mesh, sample_mesh.shape["tensor"])
        self.sampler_shardings = sampling_layout.sampling_param_shardings(model, sample_mesh)
        self.rows = {rank: sharding.batch_sharding(rlvr.mesh, rank) for rank in (1, 2)}
        self.replicated = sharding.replicated(rlvr.mesh)
        self.transfer_bytes = sampling_layout.sampling_weight_bytes(model)  # once into each sampling group
        self._version = None
        log.info("asynchronous RLVR: %d step(s) ahead; sampler %d chips (sampling groups of %d), learner %d chips; "
                 "%.3f GB of sampler weights copied per step and sampling group", self.steps_ahead, sample_mesh.size,
                 sample_mesh.shape["tensor"], rlvr.mesh.size, self.transfer_bytes / 1e9)

    # -- the TrainStep ---------------------------------------------------------------------------------------

    def host(self, state: QueuedState, batch: dict) -> tuple[list, dict]:
        """The prompt batches to sample this step: the batch of step ``n + k``, and at a fresh start first
        those of steps ``1 .. k`` (the loader runs k batches ahead from then on)."""
        if state.queue:
            return [batch], {}
        return [batch, *(next(self.loader) for _ in range(self.steps_ahead))], {}

    def device(self, state: QueuedState, prompt_batches: list) -> tuple[QueuedState, dict]:
        version = self._current_version(state)
        started = time.perf_counter()
        weights = self.sampler_weights(state.params["policy"])
        queue = list(state.queue)
        for offset, prompts in enumerate(prompt_batches[:-1], start=1):  # a fresh start: steps 1 .. k
            queue.append(self._sample(weights, prompts, version + offset, version)[0])
        consumed = queue.pop(0)
        lag = version - int(jax.device_get(consumed.version))
        if lag > self.steps_ahead:
            raise TuluError(f"the rollout for step {version + 1} was sampled {lag} policy versions ago, more than "
                            f"rollout.async_steps={self.steps_ahead}; the queue is out of order")
        learner_state, metrics = self.rlvr.device(train_state(state), consumed.batch)  # dispatched, not awaited
        jax.block_until_ready(weights)  # timed once the update is dispatched, so the learner never waits on it
        transfer_seconds = time.perf_counter() - started
        started = time.perf_counter()
        ahead, rollout_metrics = self._sample(weights, prompt_batches[-1], version + 1 + self.steps_ahead, version)
        rollout_seconds = time.perf_counter() - started
        self._version = version + 1
        return queued_state(learner_state, (*queue, ahead)), {**rollout_metrics, **metrics, "rollout_seconds": rollout_seconds,
                           "rollout/policy_lag": float(lag), "weight_transfer_seconds": transfer_seconds}

    def summarize(self, metrics: dict) -> dict:
        return dict(metrics)

    # -- its parts -------------------------------------------------------------------------------------------

    def sampler_weights(self, policy_params) -> Any:
        """The policy in the sampling layout on the sampler's chips: resharded on the learner's chips (groups
        of the sampler's size), then copied shard for shard, each process copying its own devices' shards."""
        staged = sampling_layout.to_sampling_layout(policy_params, self.rlvr.model_config, self.staging_mesh)
        return copy_tree_across(staged, self.sampler_shardings)

    def _sample(self, weights, prompts: dict, step: int, version: int) -> tuple[QueuedRollout, dict]:
        """The rollout of ``step`` by the policy of ``version``, queued on the learner's mesh."""
        rlvr = self.rlvr
        rollout = rlvr.sampler.sample(weights, prompts, rlvr._rollout_key(step - 1), rlvr.sampling,
                                      rlvr.config.rollout.max_new_tokens, rlvr.config.rollout.samples_per_prompt,
                                      in_sampling_layout=True)
        # Token ids, log-probs and scores (small) cross to the learner's mesh through the hosts.
        fields = sharding.to_every_host(*(getattr(rollout.batch, name) for name in QUEUED_FIELDS))
        batch = RolloutBatch(**{name: sharding.from_every_host(value, self.rows[value.ndim])
                                for name, value in zip(QUEUED_FIELDS, fields)})
        version_array = sharding.from_every_host(np.asarray(version, np.int32), self.replicated)
        return QueuedRollout(batch, version_array), rollout.metrics

    def _current_version(self, state: QueuedState) -> int:
        if self._version is None:  # read once (at the first step or after a resume), then counted
            self._version = int(jax.device_get(state.step))
        return self._version

    # -- what the runner restores ------------------------------------------------------------------------------

    def abstract_queue(self) -> tuple[QueuedRollout, ...]:
        """The queue a checkpoint holds: k rollouts of the configured shapes, on the learner's mesh."""
        config = self.rlvr.config
        rows, prompt, response = (config.rollout.responses_per_step, config.data.max_prompt_len,
                                  config.rollout.max_new_tokens)
        struct = jax.ShapeDtypeStruct
        shapes = jax.eval_shape(assemble_rollout, struct((rows, prompt), jnp.int32), struct((rows, prompt), jnp.int32),
                                struct((rows, response), jnp.int32), struct((rows, response), jnp.float32),
                                struct((rows,), jnp.int32), struct((rows,), jnp.float32))
        batch = RolloutBatch(**{name: struct(getattr(shapes, name).shape, getattr(shapes, name).dtype,
                                             sharding=self.rows[len(getattr(shapes, name).shape)])
                                for name in QUEUED_FIELDS})
        return (QueuedRollout(batch, struct((), jnp.int32, sharding=self.replicated)),) * self.steps_ahead


def queued_state(state: TrainState, queue: tuple = ()) -> QueuedState:
    return QueuedState(step=state.step, params=state.params, opt_state=state.opt_state, rng=state.rng, queue=queue)
