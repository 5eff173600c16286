"""``tulu-jax plan``: every stage's programs compiled for TPU slices by libtpu on this CPU machine.

Tiny models and sequences keep each compile to seconds; the numbers are checked against hand counts of
the train state and the KV cache, and against the 6·N·T estimate. The planner compiles what training runs:
the stage and the planner call the same step builder with the same config, model and mesh shape.
"""

import textwrap

import pytest

from tulu_jax.cli import main
from tulu_jax.errors import MeshError
from tulu_jax.planning import parse_topology, plan_stage
from tulu_jax.planning.devices import libtpu_available

needs_libtpu = pytest.mark.skipif(not libtpu_available(), reason="libtpu is not installed (pip install -e .[tpu-plan])")

# TPU tiles pad every array's last two dims to multiples of (8, 128): shards of 128 keep the counts exact.
TINY_MODEL = ("{vocab_size: 1024, hidden_size: 512, intermediate_size: 1024, num_heads: 4, num_kv_heads: 2, "
              "head_dim: 128, compute_dtype: bfloat16, remat: full")
TINY_SFT = f"""
model:
  source: tiny
  overrides: {TINY_MODEL}, scan_layers: false}}  # unscanned, one logits chunk: XLA counts every FLOP
data: {{max_seq_len: 64}}
objective: {{logits_chunk_size: 64}}
training: {{batch_size: 8}}
mesh: {{data: 1, fsdp: -1, tensor: 1}}
"""
TINY_DPO = f"""
model: {{source: tiny, overrides: {TINY_MODEL}}}}}
data: {{kind: preference, max_seq_len: 64, packing: padded}}
objective: {{reference: cached, logits_chunk_size: 64}}
training: {{batch_size: 8}}
mesh: {{data: 1, fsdp: -1, tensor: 1}}
"""
TINY_RM = f"""
model: {{source: tiny, overrides: {TINY_MODEL}}}}}
data: {{kind: preference, max_seq_len: 64, packing: padded}}
training: {{batch_size: 8}}
mesh: {{data: 1, fsdp: -1, tensor: 1}}
"""
TINY_RLVR = f"""
model: {{source: tiny, overrides: {TINY_MODEL}, eos_token_id: 2}}}}
value: {{init: policy}}
data: {{max_prompt_len: 32}}
rollout: {{prompts_per_step: 8, max_new_tokens: 32}}
ppo: {{epochs: 2}}
mesh: {{data: 1, fsdp: -1, tensor: 1}}
training: {{steps: 10}}
"""


def _write(directory, name, text):
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("plan")
    return {stage: _write(directory, f"tiny_{stage}.yaml", text)
            for stage, text in (("sft", TINY_SFT), ("dpo", TINY_DPO), ("rm", TINY_RM), ("rlvr", TINY_RLVR))}


@pytest.fixture(scope="module")
def tiny_config(configs):
    return configs["sft"]


@pytest.mark.parametrize(
    "name, family, chips, grid",
    [("v5p-64", "v5p", 32, "v5p:2x4x4"), ("v4-32", "v4", 16, "v4:2x2x4"), ("v6e-16", "v6e", 16, "v6e:4x4"),
     ("v5litepod-8", "v5e", 8, "v5e:2x4"), ("v5p:2x2x2", "v5p", 8, "v5p:2x2x2")],
)
def test_topology_names(name, family, chips, grid):
    topology = parse_topology(name)
    assert (topology.chip.name, topology.num_chips, topology.libtpu_name) == (family, chips, grid)


@pytest.mark.parametrize("name", ["v7x-8", "tpu-8", "v5p-6", "v6e:2x2x2", "v6e-12"])
def test_unknown_topologies_are_mesh_errors(name):
    with pytest.raises(MeshError):
        parse_topology(name)


@pytest.fixture(scope="module")
def tiny_plan(tiny_config):
    return plan_stage(tiny_config, "v5e-4")


@needs_libtpu
def test_tiny_sft_step_fits_and_its_state_is_split_over_the_chips(tiny_plan):
    (step,) = tiny_plan.programs
    assert tiny_plan.fits and tiny_plan.mesh_shape == (1, 4, 1) and step.name == "train step"
    # Arguments per chip: float32 params plus Adam's two float32 moments, a quarter each (fsdp=4),
    # and a quarter of the four int32 [8, 64] batch arrays; a few scalars (step, rng, counts) on top.
    state = 3 * 4 * tiny_plan.target.model.num_params() / 4
    batch = 4 * 4 * (8 // 4) * 64
    assert tiny_plan.target.model.num_params() == 1024 * 512 * 2 + 2 * (512 * 128 * (4 + 2 + 2 + 4) + 3 * 512 * 1024 + 2 * 512) + 512
    # Tile padding of the small leaves (norm scales, the batch rows) adds a little.
    assert state + batch <= step.argument_bytes <= 1.03 * (state + batch)
    # The state is donated: its outputs are written in place.
    assert step.alias_bytes >= state


@needs_libtpu
def test_tiny_compiled_flops_match_the_estimate(tiny_plan):
    # Full remat adds a forward (8·N·T instead of 6·N·T); chunked logits and masks add little more.
    (step,) = tiny_plan.programs
    assert not step.program.loops
    ratio = step.flops_per_chip * 4 / step.program.model_flops
    assert 1.1 < ratio < 1.6, ratio
    assert tiny_plan.executed_flops(step) == step.flops_per_chip * 4
    # The step time is at least the compute term (FLOPs at peak), so the estimated MFU is at most 1/ratio.
    time = tiny_plan.time(step)
    assert time.lower >= time.compute_seconds and time.upper == pytest.approx(sum(time.terms.values()))
    assert tiny_plan.mfu <= 1 / ratio + 1e-9 and tiny_plan.mfu_upper_time < tiny_plan.mfu
    assert tiny_plan.tokens_per_second_per_chip == pytest.approx(8 * 64 / tiny_plan.step_seconds / 4)


@needs_libtpu
def test_dpo_plan_compiles_the_reference_pass_and_the_step_with_both_sides(configs):
    plan = plan_stage(configs["dpo"], "v5e-4")
    reference, step = plan.programs
    assert (reference.name, step.name) == ("reference pass", "train step") and plan.fits
    assert reference.program.calls_per_step == 0  # runs once over the data, not in the step time
    params = 4 * plan.target.model.num_params() / 4
    # The reference pass takes the params; the optimizer's two moments stay on the chips meanwhile.
    assert reference.resident_bytes == pytest.approx(2 * params, rel=0.03)
    assert step.program.tokens == 2 * 8 * 64  # chosen and rejected of 8 pairs in one forward

    in_step = plan_stage(configs["dpo"], "v5e-4", ["dpo.reference=in_step"])
    (step_with_reference,) = in_step.programs
    # The frozen reference params are an argument of the in-step program: one more copy of the params.
    extra = step_with_reference.argument_bytes - step.argument_bytes
    assert extra == pytest.approx(params, rel=0.05)


@needs_libtpu
def test_reward_model_plan_fits(configs):
    plan = plan_stage(configs["rm"], "v5e-4")
    (step,) = plan.programs
    assert plan.fits and step.program.tokens == 2 * 8 * 64


@needs_libtpu
def test_rlvr_plan_has_the_sampler_and_the_learner_on_one_mesh(configs, capsys, monkeypatch):
    from tulu_jax.stages.rlvr import stage

    calls = []
    original = stage.build_rlvr_learner
    monkeypatch.setattr(stage, "build_rlvr_learner", lambda *args: calls.append(args) or original(*args))
    # The static sampler (the reference kept beside the sampling layout): its KV cache is counted below.
    plan = plan_stage(configs["rlvr"], "v5e-4", ["rollout.sampler=static"])
    # The learner programs are the stage's own (RLVR.__init__ builds them with the same function).
    (config, mesh, model), = calls
    assert config == plan.target.stage_config and model == plan.target.model and dict(mesh.shape)["fsdp"] == 4
    sampler, prepare, update = plan.programs
    assert [p.name for p in plan.programs] == ["sampler", "learner prepare", "learner update"] and plan.fits
    model = plan.target.model
    # The sampler's KV cache: 2 of 8 rows per chip, 32 + 32 slots, K and V per layer and KV head, bf16.
    kv_cache = 2 * (32 + 32) * 2 * model.num_layers * model.num_kv_heads * model.resolved_head_dim * 2
    assert sampler.temp_bytes >= kv_cache
    # While it samples, the value model, both optimizer states and the reference stay on the chips.
    policy = 4 * model.num_params() / 4
    assert sampler.resident_bytes >= policy * (1 + 2 + 2)  # reference + policy moments + value moments
    assert plan.seconds(sampler) > 0 and plan.step_seconds > plan.seconds(sampler)
    assert main(["plan", "--config", str(configs["rlvr"]), "--topology", "v5e-4"]) == 0
    output = capsys.readouterr().out
    assert "rollout" in output and "learner" in output and "host RAM per VM" in output
    assert "decode step: ICI" in output and "MFU estimate" in output


@needs_libtpu
def test_the_stage_and_the_planner_call_the_same_step_builder(tmp_path, monkeypatch):
    from tests.training.sft_data import make_run_inputs, tiny_overrides
    from tulu_jax.config import load_config
    from tulu_jax.stages import sft

    calls = []
    original = sft.build_sft_step

    def spy(config, mesh, model_config=None, total_steps=sft.PLANNED_TOTAL_STEPS):
        built = original(config, mesh, model_config, total_steps)
        calls.append((config, model_config, dict(mesh.shape), built.abstract_inputs()))
        return built

    monkeypatch.setattr(sft, "build_sft_step", spy)
    make_run_inputs(tmp_path / "inputs")
    overrides = tiny_overrides(tmp_path / "inputs", tmp_path / "run", "training.max_steps=1", "checkpoint.save_every=0",
                               "training.tensorboard=false", "mesh.fsdp=4", "mesh.tensor=2")
    sft.run_sft(load_config(sft.SFTConfig, "configs/sft_tiny_cpu.yaml", overrides))
    plan = plan_stage("configs/sft_tiny_cpu.yaml", "v5e-8", overrides)
    (trained, planned) = calls
    assert planned[0] == trained[0] and planned[1] == trained[1] and planned[2] == trained[2] == {
        "data": 1, "fsdp": 4, "tensor": 2}
    # The same abstract state and batch: shapes, dtypes and partition specs leaf by leaf.
    import jax

    def described(tree):
        return [(leaf.shape, leaf.dtype, leaf.sharding.spec) for leaf in jax.tree.leaves(tree)]

    assert described(planned[3]) == described(trained[3])
    assert plan.fits


@needs_libtpu
def test_a_plan_that_does_not_fit_says_by_how_much_where_and_what_helps(tiny_config, capsys):
    # A 4M-row vocabulary on one 16 GiB v5e chip: float32 params and two moments alone are 24 GiB.
    code = main(["plan", "--config", str(tiny_config), "--topology", "v5e-1", "model.overrides.vocab_size=4194304"])
    output = capsys.readouterr().out
    assert code == 3
    (verdict,) = [line for line in output.splitlines() if "DOES NOT FIT" in line]
    assert "the train step needs" in verdict and "over by" in verdict and "larger slice" in verdict
    over = float(verdict.split("over by")[1].split("GiB")[0])
    assert over > 8.0


@needs_libtpu
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--topology", "v9-8"], "unknown TPU family 'v9'"),
        (["--topology", "v5e-4", "mesh.fsdp=3"], "the mesh does not fit v5e-4 (4 chips)"),
        (["--topology", "v5e-4", "training.batch_size=6"], "is not divisible by the data-parallel size data×fsdp = 4"),
        (["--topology", "v5e-4", "training.batch_sise=6"], "unknown key"),
        (["--topology", "v5e-4", "--stage", "pretrain"], "unknown stage 'pretrain'"),
    ],
)
def test_cli_bad_inputs_are_one_line_errors(tiny_config, capsys, arguments, message):
    code = main(["plan", "--config", str(tiny_config), *arguments])
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("error: ") and message in error, error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1


def test_host_memory_of_a_70b_load_and_export_on_a_v5p_512():
    from tulu_jax.models import preset
    from tulu_jax.planning.host_memory import host_memory
    from tulu_jax.stages.sft import SFTConfig

    model = preset("llama3.1-70b", param_dtype="float32")
    topology = parse_topology("v5p-512")  # 256 chips on 64 VMs of 4 chips and 448 GB each
    memory = host_memory("sft", SFTConfig(), model, topology)
    assert topology.num_hosts == 64 and memory.host_ram_bytes == 448 * 10**9
    assert memory.load_bytes == pytest.approx(1.3 * 4 * model.num_params() / 64, rel=1e-6)
    assert memory.export_bytes == pytest.approx(1.3 * 128256 * 8192 * 2, rel=1e-6)  # the bf16 embedding
    assert memory.fits


class _Built(Exception):
    """Raised by the spy once the stage has called its builder: the run need not go further."""


@needs_libtpu
@pytest.mark.slow  # the SFT test above keeps the same-builder check in `make test`
@pytest.mark.parametrize("stage, module_name, builder_name, runner_name", [
    ("dpo", "tulu_jax.stages.dpo", "build_dpo_step", "run_dpo"),
    ("rm", "tulu_jax.stages.reward_model", "build_reward_model_step", "run_reward_model"),
])
def test_preference_stages_and_the_planner_call_the_same_builder(tmp_path, monkeypatch, stage, module_name,
                                                                  builder_name, runner_name):
    import importlib

    import yaml

    from tests.stages.preference_fixtures import build_tokenizer, stage_dict, write_pairs
    from tulu_jax.config import load_config
    from tulu_jax.planning import load_plan_target

    module = importlib.import_module(module_name)
    calls = []
    original = getattr(module, builder_name)

    def spy(config, mesh, model_config=None, *rest):
        calls.append((config, model_config, dict(mesh.shape)))
        if len(calls) == 1:
            raise _Built  # the stage's call: stop the run here
        return original(config, mesh, model_config, *rest)

    monkeypatch.setattr(module, builder_name, spy)
    raw = stage_dict(tmp_path, write_pairs(tmp_path / "pairs.jsonl", 40), build_tokenizer(tmp_path),
                     mesh={"data": 1, "fsdp": 4, "tensor": 2})
    path = tmp_path / f"tiny_{stage}.yaml"
    path.write_text(yaml.safe_dump(raw))
    target = load_plan_target(path)
    with pytest.raises(_Built):
        getattr(module, runner_name)(load_config(type(target.stage_config), path))
    plan = plan_stage(target, "v5e-8")
    (trained, planned) = calls
    assert planned[0] == trained[0] and planned[1] == trained[1] and planned[2] == trained[2]
    assert plan.fits
