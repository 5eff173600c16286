"""``tulu-jax plan``: the SFT step compiled for TPU slices by libtpu on this CPU machine.

Tiny model and sequences keep each compile to seconds; the numbers are checked against hand counts of
the train state and against the 6·N·T estimate.
"""

import textwrap

import pytest

from tulu_jax.cli import main
from tulu_jax.errors import MeshError
from tulu_jax.planning import parse_topology, plan_step
from tulu_jax.planning.devices import libtpu_available

needs_libtpu = pytest.mark.skipif(not libtpu_available(), reason="libtpu is not installed (pip install -e .[tpu-plan])")

TINY_SFT = """
model:
  source: tiny
  # TPU tiles pad every array's last two dims to multiples of (8, 128): shards of 128 keep the counts exact.
  overrides: {vocab_size: 1024, hidden_size: 512, intermediate_size: 1024, num_heads: 4, num_kv_heads: 2,
              head_dim: 128, compute_dtype: bfloat16, remat: full,
              scan_layers: false}  # unscanned and one logits chunk: XLA then counts every FLOP
data: {max_seq_len: 64}
loss: {logits_chunk_size: 64}
training: {batch_size: 8}
mesh: {data: 1, fsdp: -1, tensor: 1}
"""


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "tiny_sft.yaml"
    path.write_text(textwrap.dedent(TINY_SFT))
    return path


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
    return plan_step(tiny_config, "v5e-4")


@needs_libtpu
def test_tiny_sft_step_fits_and_its_state_is_split_over_the_chips(tiny_plan):
    assert tiny_plan.fits and tiny_plan.compiled.mesh_shape == (1, 4, 1)
    # Arguments per chip: float32 params plus Adam's two float32 moments, a quarter each (fsdp=4),
    # and a quarter of the four int32 [8, 64] batch arrays; a few scalars (step, rng, counts) on top.
    state = 3 * 4 * tiny_plan.target.model.num_params() / 4
    batch = 4 * 4 * (8 // 4) * 64
    assert tiny_plan.target.model.num_params() == 1024 * 512 * 2 + 2 * (512 * 128 * (4 + 2 + 2 + 4) + 3 * 512 * 1024 + 2 * 512) + 512
    # Tile padding of the small leaves (norm scales, the batch rows) adds a little.
    assert state + batch <= tiny_plan.compiled.argument_bytes <= 1.03 * (state + batch)
    # The state is donated: its outputs are written in place.
    assert tiny_plan.compiled.alias_bytes >= state


@needs_libtpu
def test_tiny_compiled_flops_match_the_estimate(tiny_plan):
    # Full remat adds a forward (8·N·T instead of 6·N·T); chunked logits and masks add little more.
    assert tiny_plan.compiled_count_is_complete
    ratio = tiny_plan.compiled_flops / tiny_plan.estimated_flops["total"]
    assert 1.1 < ratio < 1.6, ratio
    assert tiny_plan.executed_flops == tiny_plan.compiled_flops
    assert tiny_plan.mfu == pytest.approx(1 / ratio)


@needs_libtpu
@pytest.mark.slow  # compiling the oversized step takes minutes on 2 cores
def test_cli_reports_a_batch_too_large_for_hbm_without_crashing(tiny_config, capsys):
    # 65536 rows of 64 tokens on one 16 GiB v5e chip: the activations alone need far more.
    code = main(["plan", "--config", str(tiny_config), "--topology", "v5e-1", "training.batch_size=65536"])
    output = capsys.readouterr().out
    assert code == 3
    assert "DOES NOT FIT, over by" in output
    over = float(output.split("over by")[1].split("GiB")[0])
    assert over > 1.0


@needs_libtpu
@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--topology", "v9-8"], "unknown TPU family 'v9'"),
        (["--topology", "v5e-4", "mesh.fsdp=3"], "the mesh does not fit v5e-4 (4 chips)"),
        (["--topology", "v5e-4", "training.batch_size=6"], "is not divisible by the data-parallel size data×fsdp = 4"),
        (["--topology", "v5e-4", "training.batch_sise=6"], "unknown key"),
    ],
)
def test_cli_bad_inputs_are_one_line_errors(tiny_config, capsys, arguments, message):
    code = main(["plan", "--config", str(tiny_config), *arguments])
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("error: ") and message in error, error
    assert "Traceback" not in error
