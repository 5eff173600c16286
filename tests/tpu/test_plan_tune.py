"""``tulu-jax plan --tune`` on a tiny model: the ranked table, the winning overrides, and the pruning."""

import pytest

from tulu_jax.cli import main
from tulu_jax.planning.devices import libtpu_available

needs_libtpu = pytest.mark.skipif(not libtpu_available(), reason="libtpu is not installed (pip install -e .[tpu-plan])")

TINY_SFT = """
model:
  source: tiny
  overrides: {vocab_size: 1024, hidden_size: 512, intermediate_size: 1024, num_heads: 4, num_kv_heads: 2,
              head_dim: 128, compute_dtype: bfloat16, remat: full, scan_layers: false}
data: {max_seq_len: 64}
objective: {logits_chunk_size: 64}
training: {batch_size: 8}
mesh: {data: 1, fsdp: 2, tensor: 2}
"""


@needs_libtpu
def test_tune_prints_a_ranked_table_and_pasteable_overrides(tmp_path, capsys):
    config = tmp_path / "tiny_sft.yaml"
    config.write_text(TINY_SFT)
    assert main(["plan", "--tune", "--config", str(config), "--topology", "v5p-8",
                 "--tune-include", "model.overrides.remat=full mesh.fsdp=2 mesh.tensor=2"]) == 0
    output = capsys.readouterr().out
    table = output[output.index("rank  remat"):]
    ranked = [line.split() for line in table.splitlines()[1:] if line.split() and line.split()[0].isdigit()]
    assert len(ranked) >= 2 and [row[0] for row in ranked] == [str(i) for i in range(1, len(ranked) + 1)]
    tokens = [float(row[row.index("–", 9) + 2].replace(",", "")) for row in ranked]
    assert tokens == sorted(tokens, reverse=True)  # ranked by estimated tokens/s/chip
    assert "shipped; included" in output  # the included settings are the shipped ones: planned once
    overrides = output[output.index("winning overrides:"):].splitlines()[1:]
    assert [line.split("=")[0] for line in overrides] == [
        "model.overrides.remat", "mesh.data", "mesh.fsdp", "mesh.tensor", "training.micro_batches"]
    # Remat none fits this tiny model, so dots and full are never compiled for a new mesh (dominance ladder).
    compiled = [line.split()[0] for line in output.splitlines() if line.startswith("  remat=")]
    assert "remat=dots" not in compiled and compiled.count("remat=full") == 1
