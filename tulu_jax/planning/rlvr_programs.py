"""The RLVR stage's programs on one mesh: the sampler (prefill + decode with its KV cache) and the learner
(the prepare pass: policy, reference and value forwards with advantages; the update: PPO epochs).

The sampler is built in one place (``static_sampler_program``, called from block 1 of ``rlvr_programs``): a
sampler with its own layout replaces that block with its programs (a resharding program and a decode
program); the report reads every program's HBM and ICI traffic from its HLO, whatever it is.

The learner comes from the stage's own builder, ``stages.rlvr.stage.build_rlvr_learner(config, mesh,
model)``, the one ``RLVR`` trains with. The sampler is the generation engine's jitted program
(``generation.sampler.compiled_sampler``), the one ``stages.rlvr.rollout.Sampler.sample`` calls, lowered with the
policy params as the train state holds them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tulu_jax import sharding
from tulu_jax.planning.estimate import decode_flops, executed_training_flops, forward_flops, training_flops
from tulu_jax.planning.program import Program, abstract
from tulu_jax.planning.sampling_programs import sampling_layout_programs
from tulu_jax.planning.target import PlanTarget

# Per-token sequence fields of a RolloutBatch ([rows, prompt + new]); the others are [rows, new] or [rows].
SEQUENCE_KEYS = ("input_ids", "positions", "segment_ids")


def rlvr_programs(target: PlanTarget, mesh) -> list[Program]:
    """The sampler's programs then the learner's, all on ``mesh`` (the synchronous stage)."""
    learner, programs = learner_programs(target, mesh)
    state = learner.abstract_state()
    reference = abstract(learner.param_shapes["policy"], learner.shardings.params["policy"])
    # 1. The sampler (one block: the sampler program and what stays resident beside it).
    others = {"value": state.params.get("value"), "opt_state": state.opt_state, "reference": reference}
    if target.stage_config.rollout.sampler == "static":  # today's reference, to compare plans
        return [static_sampler_program(target, mesh, learner.param_shapes["policy"], others)] + programs
    return sampling_layout_programs(target, mesh, learner.param_shapes["policy"], others) + programs


def learner_programs(target: PlanTarget, mesh):
    """``(the stage's learner, [learner prepare, learner update])`` on ``mesh``: the learner's half of the
    stage, alone on its chips in an asynchronous plan."""
    from tulu_jax.stages.rlvr.rollout import RolloutBatch
    from tulu_jax.stages.rlvr.stage import build_rlvr_learner

    config, model = target.stage_config, target.model
    rollout = config.rollout
    rows, prompt, new = rollout.responses_per_step, config.data.max_prompt_len, rollout.max_new_tokens
    columns = prompt + new
    sharding.check_batch_divisible(rows, mesh, "rollout responses per step (prompts_per_step × samples_per_prompt)")
    sharding.check_batch_divisible(rows // (config.ppo.minibatches * config.ppo.micro_batches), mesh,
                                   "rows per PPO micro-batch")

    # The learner as the stage builds it: policy (+ value) params and their optimizer moments.
    learner = build_rlvr_learner(config, mesh, model)
    shapes, shardings, state = learner.param_shapes, learner.shardings, learner.abstract_state()
    reference = abstract(shapes["policy"], shardings.params["policy"])

    def array(shape, dtype, rank_sharding):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=rank_sharding)

    by_rows, by_rows_columns = sharding.batch_sharding(mesh, 1), sharding.batch_sharding(mesh, 2)

    # 2. The learner's prepare pass: old, reference (and value) outputs, advantages.
    fields = {key: array((rows, columns), jnp.int32, by_rows_columns) for key in SEQUENCE_KEYS}
    fields["response_mask"] = array((rows, new), jnp.float32, by_rows_columns)
    fields["sampler_logprobs"] = array((rows, new), jnp.float32, by_rows_columns)
    fields["scores"] = array((rows,), jnp.float32, by_rows)
    prepared_fields = {key: array((rows, new), jnp.float32, by_rows_columns) for key in
                       ("old_logprobs", "reference_logprobs", "advantages")
                       + (("old_values", "returns") if config.uses_value_model else ())}
    rollout_arrays, learner_batch = RolloutBatch(**fields), RolloutBatch(**fields, **prepared_fields)
    forwards = 3 if config.uses_value_model else 2
    prepare_flops = forwards * forward_flops(model, rows, columns)
    programs = [Program(
        "learner prepare", learner.prepare, (state.params, reference, rollout_arrays), rows * columns,
        prepare_flops, prepare_flops, resident={"opt_state": state.opt_state},
    )]

    # 3. The learner's update: ppo.epochs passes of ppo.minibatches optimizer updates.
    models = 2 if config.uses_value_model else 1
    update_flops = config.ppo.epochs * models * training_flops(model, rows, columns)["total"]
    executed = config.ppo.epochs * models * executed_training_flops(model, rows, columns)
    programs.append(Program(
        "learner update", learner.update, (state, learner_batch), config.ppo.epochs * rows * columns, update_flops,
        executed, resident={"reference": reference},
    ))
    return learner, programs


def static_sampler_program(target: PlanTarget, mesh, policy_shapes, resident) -> Program:
    """Today's sampler: ``generation.sampler.compiled_sampler`` (prefill, then a ``while`` loop of one-token
    steps) on the training mesh, reading the policy params as the train state holds them (float32, split over
    fsdp and tensor), so each step all-gathers the fsdp-split weights. Kept as the reference the planner can
    always measure."""
    from tulu_jax.generation import SamplingConfig
    from tulu_jax.generation.sampler import compiled_sampler, param_shardings

    config, model = target.stage_config, target.model
    rollout = config.rollout
    rows, prompt, new = rollout.responses_per_step, config.data.max_prompt_len, rollout.max_new_tokens
    by_rows_columns = sharding.batch_sharding(mesh, 2)
    sampling = SamplingConfig(rollout.temperature, rollout.top_k, rollout.top_p)
    stop_ids = tuple(sorted(set(model.eos_token_ids)))
    sampler = compiled_sampler(model, sampling, new, stop_ids, int(model.pad_token_id or 0), False, mesh)
    inputs = (
        abstract(policy_shapes, param_shardings(model, mesh)),
        jax.ShapeDtypeStruct((rows, prompt), jnp.int32, sharding=by_rows_columns),
        jax.ShapeDtypeStruct((rows, prompt), jnp.int32, sharding=by_rows_columns),
        jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding.replicated(mesh)),
    )
    flops = decode_flops(model, rows, prompt, new)
    return Program(
        "sampler", sampler, inputs, rows * (prompt + new), flops, flops, resident=resident,
        decode={"rows": rows, "prompt": prompt, "new": new,
                "weight_bytes": model.num_params() * jnp.dtype(model.compute_dtype).itemsize},
        mesh=mesh, unknown_trip_counts=(new, mean_filled_blocks(prompt, new)),
    )


def mean_filled_blocks(prompt: int, new: int) -> float:
    """Blocks the cached attention reads per decode step, averaged over the steps (its loop runs to the
    filled length: ``models.decode_attention``)."""
    from tulu_jax.models.decode_attention import DECODE_BLOCK

    slots = prompt + new
    block = min(DECODE_BLOCK, slots)
    return sum(-(-min(prompt + step + 1, slots) // block) for step in range(new)) / new
