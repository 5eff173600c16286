"""``tulu-jax convert``: Hugging Face ⇄ tulu-jax checkpoints.

  --from-hf DIR --to-hf OUT           re-write a HF Llama directory (validated; dtype or shard size changed)
  --checkpoint RUN --to-hf OUT        export a stage checkpoint (a run's output_dir or its checkpoints/)
"""

from __future__ import annotations

import argparse

from tulu_jax.errors import ConfigError

NAME = "convert"
USES_DEVICES = True
HELP = "convert checkpoints: Hugging Face Llama directory or stage checkpoint -> Hugging Face directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-hf", metavar="DIR", help="a Hugging Face Llama directory (config.json + safetensors)")
    source.add_argument("--checkpoint", metavar="RUN", help="a stage's output_dir or its checkpoints/ directory")
    parser.add_argument("--to-hf", metavar="OUT", required=True,
                        help="directory to write the Hugging Face model to (local, file:// or gs://)")
    parser.add_argument("--step", type=int, help="with --checkpoint: which step (default: the newest)")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenizer files to copy (default: the source's, if any)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="tensor dtype to write (default: as stored; a checkpoint in float16 or in "
                        "several dtypes needs it)")
    parser.add_argument("--max-shard-gb", type=float, default=5.0, help="largest safetensors shard (default 5 GB)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --to-hf directory whole (without it, a non-empty one is refused)")


def run(args: argparse.Namespace) -> int:
    import jax

    from data_pipeline.paths import as_path
    from tulu_jax import distributed
    from tulu_jax.hf import read_hf_config, write_hf_side_files
    from tulu_jax.hf.safetensors_index import SafetensorsIndex
    from tulu_jax.hf.sharded_load import load_hf_params_sharded
    from tulu_jax.hf.stored_dtype import conversion_dtype
    from tulu_jax.hf.streamed_export import export_params_streamed
    from tulu_jax.models import param_logical_axes
    from tulu_jax.models.params import param_shapes
    from tulu_jax.sharding import MeshConfig, make_mesh, tree_shardings

    out = as_path(args.to_hf)
    # Every refusal below is taken together: all processes print the same line (distributed/refusals.py).
    with distributed.same_verdict("convert inputs"):
        _check_locations(args, out)
        if args.from_hf:
            source = as_path(args.from_hf)
            dtype = conversion_dtype(SafetensorsIndex(source), args.dtype, str(source))
            config = read_hf_config(source).replace(param_dtype=dtype)
            mesh = make_mesh(MeshConfig(), jax.devices())
            params = load_hf_params_sharded(source, config, tree_shardings(mesh, param_logical_axes(config),
                                                                           param_shapes(config)))
            tokenizer_dir = _tokenizer_dir(out, args.tokenizer or args.from_hf)
    if args.checkpoint:
        from tulu_jax.hf.from_checkpoint import checkpoint_model

        source = as_path(args.checkpoint)
        config, params, run_config = checkpoint_model(args.checkpoint, args.step)  # Orbax waits on the others
        with distributed.same_verdict("convert tokenizer"):
            tokenizer_dir = _tokenizer_dir(out, args.tokenizer or run_config.get("data", {}).get("tokenizer"))
    written_dtype = args.dtype or config.param_dtype
    export_params_streamed(
        str(out), params, config, dtype=written_dtype, max_shard_bytes=int(args.max_shard_gb * 2**30),
        write_files=lambda folder: write_hf_side_files(folder, config, written_dtype, tokenizer_dir),
    )
    if jax.process_index() == 0:
        print(f"wrote {out} ({config.num_params():,} parameters, {config.num_layers} layers) from {source}"
              + ("" if tokenizer_dir else "; no tokenizer files copied (pass --tokenizer DIR)"))
    return 0


def _check_locations(args: argparse.Namespace, out) -> None:
    """The buckets exist, ``--to-hf`` holds no input, and (process 0 looks) it is empty unless ``--overwrite``."""
    from data_pipeline.paths import as_path, check_bucket_exists
    from tulu_jax import distributed

    for flag, location in (("--to-hf", args.to_hf), ("--from-hf", args.from_hf), ("--checkpoint", args.checkpoint)):
        if location:
            check_bucket_exists(location, flag)
    if args.from_hf:
        _refuse_writing_over(out, "--from-hf", as_path(args.from_hf))
    else:
        from tulu_jax.checkpoint import find_checkpoint_dir

        _refuse_writing_over(out, "--checkpoint", as_path(args.checkpoint))
        _refuse_writing_over(out, "--checkpoint", find_checkpoint_dir(as_path(args.checkpoint)))
    if distributed.is_primary() and out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise ConfigError(f"--to-hf {out} exists and is not empty; pass --overwrite to replace it whole")


def _tokenizer_dir(out, tokenizer):
    """The tokenizer directory to copy files from, or None when there is none with tokenizer files."""
    from data_pipeline.paths import as_path

    if not tokenizer:
        return None
    _refuse_writing_over(out, "tokenizer", as_path(tokenizer))
    directory = as_path(tokenizer)
    if not directory.is_dir() or not any((directory / name).exists() for name in ("tokenizer.json", "tokenizer.model")):
        return None
    return directory


def _refuse_writing_over(out, flag: str, source) -> None:
    """``--to-hf`` replaces its directory whole: it must be neither ``source`` nor a directory holding it."""
    from data_pipeline.paths import same_location, same_or_within

    if same_or_within(source, out):
        relation = "is" if same_location(source, out) else "holds"
        raise ConfigError(f"--to-hf {out} {relation} the {flag} {source} it reads; writing it would destroy the input. "
                          "Choose another --to-hf")
