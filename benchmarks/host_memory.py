"""Peak host memory per process while loading a Hugging Face checkpoint sharded, and while exporting it.

A bf16 Llama checkpoint (~0.67 GB; ``--quick``: ~14 MB) is loaded by P = 1 and P = 2 processes of 4 CPU
devices each, joined by ``jax.distributed`` as ``tpu_scripts/launch.sh`` joins a pod, on an fsdp mesh, then
exported with the streamed export. Each process reports its peak resident memory (VmHWM) for the load and,
after resetting the peak (``/proc/self/clear_refs``), for the export. The baseline is the same run on a
tiny checkpoint. On CPU the loaded params themselves are host memory, so a process holding its 1/P of the
model is the floor; the bounds checked are those of the multi-host issue:

    load peak   <= model bytes / P x 1.3 + baseline load peak
    export peak <= resident after load + 1.3 x the largest tensor (+ the baseline's export overhead)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# (hidden, intermediate, layers, heads, kv heads, vocab)
FULL = (1024, 4096, 16, 8, 4, 32000)
QUICK = (128, 512, 4, 4, 2, 4000)
TINY = (64, 128, 1, 2, 1, 512)


def write_checkpoint(directory: Path, shape: tuple) -> tuple[int, int]:
    """A random bf16 Llama written tensor by tensor; returns (total bytes, largest tensor bytes)."""
    import ml_dtypes

    from tulu_jax.hf.convert import write_hf_side_files
    from tulu_jax.hf.safetensors_io import write_safetensors
    from tulu_jax.models import LlamaConfig

    hidden, intermediate, layers, heads, kv_heads, vocab = shape
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_layers=layers,
                         num_heads=heads, num_kv_heads=kv_heads, max_position_embeddings=256)
    head_dim = hidden // heads
    rng = np.random.default_rng(0)
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)}
    for i in range(layers):
        prefix = f"model.layers.{i}."
        shapes.update({
            prefix + "self_attn.q_proj.weight": (heads * head_dim, hidden),
            prefix + "self_attn.k_proj.weight": (kv_heads * head_dim, hidden),
            prefix + "self_attn.v_proj.weight": (kv_heads * head_dim, hidden),
            prefix + "self_attn.o_proj.weight": (hidden, heads * head_dim),
            prefix + "mlp.gate_proj.weight": (intermediate, hidden),
            prefix + "mlp.up_proj.weight": (intermediate, hidden),
            prefix + "mlp.down_proj.weight": (hidden, intermediate),
            prefix + "input_layernorm.weight": (hidden,),
            prefix + "post_attention_layernorm.weight": (hidden,),
        })
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(shapes)
    files = [names[i::4] for i in range(4)]  # four shards, each written from its own tensors
    weight_map = {}
    for index, group in enumerate(files):
        file = f"model-{index + 1:05d}-of-00004.safetensors"
        write_safetensors(directory / file, {name: (0.02 * rng.standard_normal(shapes[name], np.float32))
                                             .astype(ml_dtypes.bfloat16) for name in group})
        weight_map.update({name: file for name in group})
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    write_hf_side_files(directory, config, "bfloat16")
    sizes = [2 * int(np.prod(shape)) for shape in shapes.values()]
    return sum(sizes), max(sizes)


def _peak_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def _resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def worker(directory: str, export_dir: str, out: str) -> None:
    """One process: join the run, load sharded, export streamed; process 0 writes what every process saw."""
    from tulu_jax import distributed

    distributed.initialize()
    import jax

    from tulu_jax.hf import read_hf_config
    from tulu_jax.hf.sharded_load import load_hf_params_sharded
    from tulu_jax.hf.streamed_export import export_params_streamed
    from tulu_jax.models import param_logical_axes
    from tulu_jax.models.params import param_shapes
    from tulu_jax.sharding import MeshConfig, make_mesh, tree_shardings

    config = read_hf_config(directory).replace(param_dtype="bfloat16")
    mesh = make_mesh(MeshConfig(fsdp=-1))
    shardings = tree_shardings(mesh, param_logical_axes(config), param_shapes(config))
    jax.block_until_ready(jax.jit(lambda: 0)())
    _reset_peak()
    before = _resident_kib()
    started = time.perf_counter()
    params = jax.block_until_ready(load_hf_params_sharded(directory, config, shardings))
    load = {"before_kib": before, "peak_kib": _peak_kib(), "after_kib": _resident_kib(),
            "seconds": time.perf_counter() - started}
    _reset_peak()
    started = time.perf_counter()
    export_params_streamed(export_dir, params, config)
    export = {"peak_kib": _peak_kib(), "seconds": time.perf_counter() - started}
    report = Path(out) / f"process-{jax.process_index()}.json"
    report.write_text(json.dumps({"load": load, "export": export}))
    distributed.barrier("memory reported")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch(directory: Path, processes: int, devices: int, scratch: Path) -> list[dict]:
    out = scratch / f"report-{directory.name}-{processes}"
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    started = []
    for rank in range(processes):
        env = {key: value for key, value in os.environ.items() if not key.startswith("TULU_")}
        env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
        if processes > 1:
            env.update(TULU_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", TULU_NUM_PROCESSES=str(processes),
                       TULU_PROCESS_ID=str(rank))
        started.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.host_memory", str(directory), str(scratch / f"export-{directory.name}-{processes}"),
             str(out)], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL))
    for process in started:
        _, stderr = process.communicate(timeout=1800)
        if process.returncode:
            raise RuntimeError(f"memory worker failed:\n{stderr.decode()[-3000:]}")
    return [json.loads((out / f"process-{rank}.json").read_text()) for rank in range(processes)]


def run(quick: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        model_bytes, largest = write_checkpoint(scratch / "model", QUICK if quick else FULL)
        write_checkpoint(scratch / "tiny", TINY)
        result: dict = {"model_bytes": model_bytes, "largest_tensor_bytes": largest, "dtype": "bfloat16",
                        "devices_per_process": 4, "processes": {}}
        for processes in (1, 2):
            baseline = _launch(scratch / "tiny", processes, 4, scratch)
            measured = _launch(scratch / "model", processes, 4, scratch)
            rows = []
            for rank, (base, ours) in enumerate(zip(baseline, measured)):
                load_bound = model_bytes / processes * 1.3 + base["load"]["peak_kib"] * 1024
                export_added = ours["export"]["peak_kib"] * 1024 - ours["load"]["after_kib"] * 1024
                base_added = max(base["export"]["peak_kib"] - base["load"]["after_kib"], 0) * 1024
                rows.append({
                    "process": rank,
                    "baseline_load_peak_mb": round(base["load"]["peak_kib"] / 1024, 1),
                    "load_peak_mb": round(ours["load"]["peak_kib"] / 1024, 1),
                    "load_bound_mb": round(load_bound / 2**20, 1),
                    "load_within_bound": ours["load"]["peak_kib"] * 1024 <= load_bound,
                    "load_peak_minus_baseline_over_model_share": round(
                        (ours["load"]["peak_kib"] - base["load"]["peak_kib"]) * 1024 / (model_bytes / processes), 3),
                    "export_added_mb": round(export_added / 2**20, 1),
                    "export_added_over_largest_tensor": round((export_added - base_added) / largest, 3),
                    "export_within_bound": export_added - base_added <= 1.3 * largest,
                    "load_seconds": round(ours["load"]["seconds"], 2),
                    "export_seconds": round(ours["export"]["seconds"], 2),
                })
            result["processes"][str(processes)] = rows
    return result


if __name__ == "__main__":
    worker(*sys.argv[1:4])
