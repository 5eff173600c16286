"""The RLVR sampler as the stage runs it: the policy moved into the sampling layout, then continuous batching.

Two programs per rollout step, both on the slice's chips:
- ``sampler reshard``: ``generation.sampling_layout.resharder``, the policy from its training layout (float32,
  split over fsdp and tensor) to the sampling layout (the compute dtype, split over a group of chips,
  replicated across groups). Its gathers run once per rollout, outside any loop. (The stage moves the same
  bytes weight by weight, see ``to_sampling_layout``; this one program is how they are counted.)
- ``sampler``: ``generation.continuous`` on the sampling mesh, its loop bounded by every row running to the
  limit: ``ceil(rows per group / slots) × max_new_tokens`` decode steps.

The group size and the slots are chosen as the stage chooses them, from the HBM a chip has left beside the
learner's state (its policy, value model, optimizer moments and reference, all resident while sampling).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from tulu_jax import sharding
from tulu_jax.generation import SamplingConfig, continuous, sampling_layout
from tulu_jax.generation.sampler import param_shardings
from tulu_jax.models.params import param_shapes
from tulu_jax.planning.chips import CHIPS, ChipSpec
from tulu_jax.planning.estimate import decode_flops
from tulu_jax.planning.program import Program, abstract, per_chip_bytes
from tulu_jax.planning.target import PlanTarget

# jax's device_kind of compile-only TPU devices -> chip family
DEVICE_KINDS = {"TPU v4": "v4", "TPU v5": "v5p", "TPU v5p": "v5p", "TPU v5 lite": "v5e", "TPU v5e": "v5e",
                "TPU v6 lite": "v6e", "TPU v6e": "v6e"}


def chip_of(mesh) -> ChipSpec:
    kind = mesh.devices.flat[0].device_kind
    if kind not in DEVICE_KINDS:
        raise ValueError(f"no chip figures for device kind {kind!r}")
    return CHIPS[DEVICE_KINDS[kind]]


def free_beside(mesh, resident_per_chip: int) -> float:
    """HBM a chip has left beside ``resident_per_chip`` bytes of learner state."""
    return chip_of(mesh).hbm_bytes - resident_per_chip


def sampling_layout_programs(target: PlanTarget, mesh, policy_shapes, resident,
                             beside_learner: bool = True) -> list[Program]:
    """The reshard and the continuous sampler for ``target``'s RLVR config on the training ``mesh``.

    ``beside_learner=False``: ``mesh`` is a sampler sub-mesh of its own (asynchronous RLVR): nothing of the
    learner stays on its chips, and the weights arrive by a transfer from the learner (planned in
    ``async_plan``), so only the sampler program is returned."""
    config, model = target.stage_config, target.model
    rollout = config.rollout
    rows, prompt, new = rollout.responses_per_step, config.data.max_prompt_len, rollout.max_new_tokens
    policy = abstract(policy_shapes, param_shardings(model, mesh))
    resident = {**dict(resident), "policy": policy} if beside_learner else dict(resident)
    free = free_beside(mesh, per_chip_bytes(resident))
    group = rollout.sampling_group or sampling_layout.group_size(model, mesh.size, mesh.shape["tensor"], free)
    sample_mesh = sharding.sampling_mesh(mesh, group)
    groups = continuous.group_count(sample_mesh)
    continuous.check_rows(rows, groups)
    decode = sampling_layout.fitted_slots(continuous.DecodeSlots(rollout.decode_slots, rollout.page_size), model,
                                          sample_mesh, rows // groups, prompt + new, free)
    slots, _ = decode.resolve(rows // groups)

    sampler_model = sampling_layout.sampling_model(model)
    reshard = Program(
        "sampler reshard", sampling_layout.resharder(model, sample_mesh), (policy,), 0, 0.0, 0.0,
        resident={key: value for key, value in resident.items() if key != "policy"},
        decode={"reshard": True, "group": group}, mesh=mesh,
    )
    sampling = SamplingConfig(rollout.temperature, rollout.top_k, rollout.top_p)
    stop_ids = tuple(sorted(set(model.eos_token_ids)))
    function = continuous.compiled_continuous_sampler(sampler_model, sampling, new, stop_ids,
                                                      int(model.pad_token_id or 0), decode, groups, sample_mesh)
    rows_2d, rows_1d = continuous.rollout_rows(sample_mesh, 2), continuous.rollout_rows(sample_mesh, 1)
    inputs = (
        abstract(param_shapes(sampler_model), sampling_layout.sampling_param_shardings(sampler_model, sample_mesh)),
        jax.ShapeDtypeStruct((rows, prompt), jnp.int32, sharding=rows_2d),
        jax.ShapeDtypeStruct((rows, prompt), jnp.int32, sharding=rows_2d),
        jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding.replicated(sample_mesh)),
        jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=rows_1d),
    )
    flops = decode_flops(model, rows, prompt, new)
    steps = math.ceil(rows // groups / slots) * new
    sampler = Program(
        "sampler", function, inputs, rows * (prompt + new), flops, flops, resident=resident,
        decode={"rows": rows, "prompt": prompt, "new": new, "group": group, "slots": slots,
                "weight_bytes": sampling_layout.sampling_weight_bytes(model)},
        mesh=sample_mesh, unknown_trip_counts=(steps, mean_page_blocks(prompt, new, decode.page_size)), role="sample",
    )
    return [reshard, sampler] if beside_learner else [sampler]


def mean_page_blocks(prompt: int, new: int, page_size: int) -> float:
    """Blocks of page-table columns a decode step's attention walks (``models.paged_attention``: as far as the
    longest row has written), averaged over the steps of rows that all run to the limit."""
    from tulu_jax.models.paged_attention import PAGES_PER_BLOCK

    block = PAGES_PER_BLOCK * page_size
    return sum(-(-(prompt + step + 1) // block) for step in range(new)) / new
