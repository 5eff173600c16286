"""The accelerator benchmark runs end to end at its CPU size: both sides timed, the same work counted."""

import jax

from benchmarks.accelerator_step import run


def test_accelerator_benchmark_tiny_on_cpu():
    result = run("tiny", reps=1, warmup=1)
    assert result["size"] == "tiny" and result["torch_device"] == "cpu"
    assert result["attention"] == ("splash" if jax.devices()[0].platform == "tpu" else "xla")
    for section, rate in (("sft", "tokens_per_second"), ("generation", "new_tokens_per_second")):
        for side in ("tulu_jax", "transformers"):
            assert result[section][side][rate] > 0, (section, side)
        assert result[section]["speedup"] > 0
    assert result["sft"]["tulu_jax"]["mfu_vs_measured_matmul"] > 0
