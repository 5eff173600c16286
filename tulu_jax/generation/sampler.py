"""Batched generation with a preallocated KV cache: one prefill, then a ``lax.while_loop`` of one-token steps.

The whole loop is one jitted program, compiled once per (batch, prompt length, max_new_tokens) shape and
sampling setting. Prompts are LEFT-padded (``prompt_ids [batch, prompt_length]``, ``prompt_mask`` 1 on real
tokens): every row's last prompt token sits in the last column, so all rows decode into the same cache slot
at each step. Pad slots get segment id 0 and real tokens segment id 1, so no real token ever attends to a
pad; positions are ``cumsum(mask) - 1``, so each row's first real token has position 0 whatever its padding.
Callers bucket the prompt length (``tulu_jax.generation.prompts.bucket_length``) to bound recompiles.

A row stops after emitting any token of ``stop_ids`` (that token is kept and counted in its length); after
it stops its tokens are ``pad_id`` and its log-probs 0. The loop ends when every row has stopped or after
``max_new_tokens`` steps. Sampling is deterministic for a key: step ``t`` draws every row with
``fold_in(key, t)``, so a row's sampled tokens depend on the batch around it (the continuous-batching sampler
keys each row instead; greedy tokens are the same in both).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from tulu_jax import sharding
from tulu_jax.errors import ConfigError
from tulu_jax.generation import continuous, sampling_layout
from tulu_jax.generation.continuous import DecodeSlots
from tulu_jax.generation.decode_options import decode_compiler_options
from tulu_jax.generation.sampling import SamplingConfig, choose_tokens
from tulu_jax.models import Llama, LlamaConfig, init_cache, param_logical_axes
from tulu_jax.models.params import layers_as_list, param_shapes, with_layers

# One layer's cached keys and values (layouts chosen in tulu_jax.models.attention.attend_cache).
CACHE_AXES = {"key": ("batch", "kv_heads", "length", "head_dim"), "value": ("batch", "kv_heads", "head_dim", "length")}


class GenerationOutput(NamedTuple):
    tokens: jnp.ndarray  # [batch, max_new_tokens] int32, pad_id after the stop token
    logprobs: jnp.ndarray  # [batch, max_new_tokens] float32 under the temperature-scaled softmax; 0 after the stop
    lengths: jnp.ndarray  # [batch] int32: response tokens, the stop token included
    stopped: jnp.ndarray  # [batch] bool: the row emitted a stop token
    logits: Optional[jnp.ndarray] = None  # [batch, max_new_tokens, vocab] float32 when return_logits (tests, debugging)


def prompt_positions(prompt_mask: jnp.ndarray) -> jnp.ndarray:
    """Left-padded prompts: position 0 at each row's first real token (pads get 0 too; they are masked)."""
    return jnp.maximum(jnp.cumsum(prompt_mask.astype(jnp.int32), axis=1) - 1, 0)


def _generate(
    params,
    prompt_ids: jnp.ndarray,  # [batch, prompt_length] int32, left-padded
    prompt_mask: jnp.ndarray,  # [batch, prompt_length], 1 on real tokens
    key: jax.Array,
    *,
    config: LlamaConfig,
    sampling: SamplingConfig,
    max_new_tokens: int,
    stop_ids: tuple[int, ...],
    pad_id: int,
    return_logits: bool,
    mesh: Optional[Mesh],
) -> GenerationOutput:
    if config.scan_layers:
        # Decode steps then read each layer's weights where they are instead of slicing them out of the
        # stacked array at every token (the slices cost a copy of all weights per step on CPU).
        unrolled = dataclasses.replace(config, scan_layers=False)
        params = with_layers(params, layers_as_list(params, config), unrolled)
        config = unrolled
    model = Llama(config)
    batch, prompt_length = prompt_ids.shape
    slots = prompt_length + max_new_tokens
    cache = init_cache(config, batch, slots)
    if mesh is not None:
        # The cache is the largest activation: shard it like the batch (and KV heads over tensor).
        def constrain(layer_cache, axes):
            spec = sharding.mesh_spec(axes, layer_cache.shape, mesh)
            return jax.lax.with_sharding_constraint(layer_cache, NamedSharding(mesh, spec))

        for name, axes in CACHE_AXES.items():
            cache[name] = jax.tree.map(functools.partial(constrain, axes=axes), cache[name])

    prompt_mask = prompt_mask.astype(jnp.int32)
    logits, cache = model.apply(
        {"params": params}, prompt_ids, prompt_positions(prompt_mask), prompt_mask, cache, jnp.int32(0),
        method=Llama.with_cache,
    )
    prompt_lengths = prompt_mask.sum(axis=1)  # [batch]
    stop_array = jnp.asarray(stop_ids if stop_ids else (-1,), jnp.int32)
    state = {
        "step": jnp.int32(0),
        "cache": cache,
        "next_logits": logits[:, -1],  # [batch, vocab]: left padding puts every row's last prompt token here
        "tokens": jnp.full((batch, max_new_tokens), pad_id, jnp.int32),
        "logprobs": jnp.zeros((batch, max_new_tokens), jnp.float32),
        "lengths": jnp.zeros((batch,), jnp.int32),
        "stopped": jnp.zeros((batch,), bool),
    }
    if return_logits:
        state["logits"] = jnp.zeros((batch, max_new_tokens, config.vocab_size), jnp.float32)

    def keep_going(state):
        return (state["step"] < max_new_tokens) & ~jnp.all(state["stopped"])

    def one_token(state):
        step = state["step"]
        tokens, logprobs = choose_tokens(state["next_logits"], sampling, jax.random.fold_in(key, step))
        active = ~state["stopped"]
        tokens = jnp.where(active, tokens, pad_id)
        logprobs = jnp.where(active, logprobs, 0.0)
        new = dict(state)
        new["tokens"] = jax.lax.dynamic_update_slice_in_dim(state["tokens"], tokens[:, None], step, axis=1)
        new["logprobs"] = jax.lax.dynamic_update_slice_in_dim(state["logprobs"], logprobs[:, None], step, axis=1)
        new["lengths"] = state["lengths"] + active.astype(jnp.int32)
        new["stopped"] = state["stopped"] | (active & jnp.isin(tokens, stop_array))
        if return_logits:
            new["logits"] = jax.lax.dynamic_update_slice_in_dim(
                state["logits"], state["next_logits"][:, None], step, axis=1
            )
        # Feed the token back; the last step's forward is unused but keeps the body uniform.
        logits, new["cache"] = model.apply(
            {"params": params},
            tokens[:, None],
            (prompt_lengths + step)[:, None],
            jnp.ones((batch, 1), jnp.int32),
            state["cache"],
            prompt_length + step,
            method=Llama.with_cache,
        )
        new["next_logits"] = logits[:, 0]
        new["step"] = step + 1
        return new

    state = jax.lax.while_loop(keep_going, one_token, state)
    return GenerationOutput(
        tokens=state["tokens"],
        logprobs=state["logprobs"],
        lengths=state["lengths"],
        stopped=state["stopped"],
        logits=state.get("logits"),
    )


@functools.lru_cache(maxsize=64)
def param_shardings(config: LlamaConfig, mesh: Mesh):
    """The parameter shardings the sampler expects (the same rules the trainer uses)."""
    return sharding.tree_shardings(mesh, param_logical_axes(config), param_shapes(config))


@functools.lru_cache(maxsize=64)
def compiled_sampler(config, sampling, max_new_tokens, stop_ids, pad_id, return_logits, mesh):
    """The jitted whole-generation program (prefill and decode loop) for these static settings, cached; the
    one ``generate`` runs, RLVR's rollout calls on the global mesh and the planner lowers."""
    function = functools.partial(
        _generate,
        config=config,
        sampling=sampling,
        max_new_tokens=max_new_tokens,
        stop_ids=stop_ids,
        pad_id=pad_id,
        return_logits=return_logits,
        mesh=mesh,
    )
    options = decode_compiler_options()
    if mesh is None:
        return jax.jit(function, compiler_options=options)
    in_shardings = (
        param_shardings(config, mesh),
        sharding.batch_sharding(mesh),
        sharding.batch_sharding(mesh),
        sharding.replicated(mesh),
    )
    return jax.jit(function, in_shardings=in_shardings, compiler_options=options)


def generate(
    params,
    config: LlamaConfig,
    prompt_ids,
    prompt_mask,
    key: jax.Array,
    *,
    sampling: SamplingConfig = SamplingConfig(),
    max_new_tokens: int = 256,
    stop_ids: Sequence[int] = (),
    pad_id: int = 0,
    mesh: Optional[Mesh] = None,
    return_logits: bool = False,
    decode: Optional[DecodeSlots] = None,
    sampling_group: int = 0,
) -> GenerationOutput:
    """Generate up to ``max_new_tokens`` per left-padded prompt row (see the module docstring for the contract).

    Runs the continuous-batching sampler (``generation.continuous``) on the params copied into the sampling
    layout (``generation.sampling_layout``; with ``mesh``, groups of ``sampling_group`` chips, 0: chosen from
    the model and the free HBM). The batch size must be a multiple of the number of groups. With
    ``return_logits`` (tests, debugging) the static sampler of this module runs instead.
    """
    if max_new_tokens <= 0:
        raise ConfigError(f"max_new_tokens must be positive, got {max_new_tokens}")
    prompt_ids, prompt_mask = _int32(prompt_ids), _int32(prompt_mask)
    if prompt_ids.ndim != 2 or prompt_ids.shape != prompt_mask.shape:
        raise ConfigError(f"prompt_ids {prompt_ids.shape} and prompt_mask {prompt_mask.shape} must be equal [batch, length]")
    total = prompt_ids.shape[1] + max_new_tokens
    if total > config.max_position_embeddings:
        raise ConfigError(
            f"prompt length {prompt_ids.shape[1]} + max_new_tokens {max_new_tokens} = {total} exceeds the model's "
            f"max_position_embeddings {config.max_position_embeddings}; shorten prompts or generate fewer tokens"
        )
    stop_ids = tuple(sorted({int(t) for t in stop_ids}))
    if mesh is not None:
        # Shardings are built outside the mesh context: abstract evaluation of the params under it fails.
        params = jax.device_put(params, param_shardings(config, mesh))
    if return_logits:
        return _generate_static(params, config, prompt_ids, prompt_mask, key, sampling, int(max_new_tokens), stop_ids,
                                int(pad_id), mesh)
    sample_mesh = None if mesh is None else sampling_layout.sample_mesh_for(mesh, config, sampling_group)
    groups = continuous.group_count(sample_mesh)
    continuous.check_rows(prompt_ids.shape[0], groups)
    sampler_params = sampling_layout.to_sampling_layout(params, config, sample_mesh)
    decode = sampling_layout.fitted_slots(decode or DecodeSlots(), config, sample_mesh, prompt_ids.shape[0] // groups,
                                          total)
    function = continuous.compiled_continuous_sampler(
        sampling_layout.sampling_model(config), sampling, int(max_new_tokens), stop_ids, int(pad_id), decode, groups,
        sample_mesh)
    limits = np.full((prompt_ids.shape[0],), max_new_tokens, np.int32)
    if sample_mesh is None:
        output = function(sampler_params, prompt_ids, prompt_mask, key, limits)
    else:
        rows_2d, rows_1d = continuous.rollout_rows(sample_mesh, 2), continuous.rollout_rows(sample_mesh, 1)
        # Prompts and key already on the mesh (as ``tulu-jax eval`` places them) move between layouts on
        # device; host data becomes global arrays without comparing processes.
        on_mesh = lambda array, placed: (jax.device_put(array, placed) if isinstance(array, jax.Array)  # noqa: E731
                                         else sharding.from_every_host(np.asarray(array), placed))
        arguments = (sampler_params, on_mesh(prompt_ids, rows_2d), on_mesh(prompt_mask, rows_2d),
                     on_mesh(key, sharding.replicated(sample_mesh)),
                     sharding.from_every_host(limits, rows_1d))
        with sharding.activate(sample_mesh, "sample"):
            output = function(*arguments)
    return GenerationOutput(output.tokens, output.logprobs, output.lengths, output.stopped)


def _int32(array):
    """Host data stays on the host until it is placed (a device array of one process would be compared
    across processes when placed on a multi-process mesh)."""
    return array.astype(jnp.int32) if isinstance(array, jax.Array) else np.asarray(array, np.int32)


def _generate_static(params, config, prompt_ids, prompt_mask, key, sampling, max_new_tokens, stop_ids, pad_id, mesh):
    """The static sampler over the params as they are (every row decodes until the last one stops)."""
    function = compiled_sampler(config, sampling, max_new_tokens, stop_ids, pad_id, True, mesh)
    if mesh is None:
        return function(params, prompt_ids, prompt_mask, key)
    sharding.check_batch_divisible(prompt_ids.shape[0], mesh, "generation batch size")
    batch = sharding.batch_sharding(mesh)
    prompt_ids, prompt_mask = jax.device_put(prompt_ids, batch), jax.device_put(prompt_mask, batch)
    with sharding.activate(mesh):
        return function(params, prompt_ids, prompt_mask, key)
