"""``tulu-jax convert``: Hugging Face ⇄ tulu-jax checkpoints.

  --from-hf DIR --to-hf OUT           re-write a HF Llama directory (validated; dtype or shard size changed)
  --checkpoint RUN --to-hf OUT        export a stage checkpoint (a run's output_dir or its checkpoints/)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tulu_jax.errors import ConfigError

NAME = "convert"
USES_DEVICES = True
HELP = "convert checkpoints: Hugging Face Llama directory or stage checkpoint -> Hugging Face directory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-hf", metavar="DIR", help="a Hugging Face Llama directory (config.json + safetensors)")
    source.add_argument("--checkpoint", metavar="RUN", help="a stage's output_dir or its checkpoints/ directory")
    parser.add_argument("--to-hf", metavar="OUT", required=True, help="directory to write the Hugging Face model to")
    parser.add_argument("--step", type=int, help="with --checkpoint: which step (default: the newest)")
    parser.add_argument("--tokenizer", metavar="DIR", help="tokenizer files to copy (default: the source's, if any)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="tensor dtype to write (default: as stored)")
    parser.add_argument("--max-shard-gb", type=float, default=5.0, help="largest safetensors shard (default 5 GB)")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.hf import load_hf_checkpoint, save_hf_checkpoint

    out = Path(args.to_hf)
    if args.from_hf:
        if Path(args.from_hf).resolve() == out.resolve():
            raise ConfigError("--to-hf must differ from --from-hf (the source is read while the output is written)")
        config, params = load_hf_checkpoint(Path(args.from_hf), param_dtype=args.dtype or "float32")
        tokenizer = args.tokenizer or args.from_hf
        source = args.from_hf
    else:
        from tulu_jax.hf.from_checkpoint import checkpoint_model

        config, params, run_config = checkpoint_model(args.checkpoint, args.step)
        tokenizer = args.tokenizer or run_config.get("data", {}).get("tokenizer")
        source = args.checkpoint
    tokenizer_dir = Path(tokenizer) if tokenizer and Path(tokenizer).is_dir() else None
    if tokenizer_dir is not None and not any((tokenizer_dir / name).is_file() for name in ("tokenizer.json", "tokenizer.model")):
        tokenizer_dir = None
    save_hf_checkpoint(out, params, config, dtype=args.dtype, tokenizer_dir=tokenizer_dir,
                       max_shard_bytes=int(args.max_shard_gb * 2**30))
    print(f"wrote {out} ({config.num_params():,} parameters, {config.num_layers} layers) from {source}"
          + ("" if tokenizer_dir else "; no tokenizer files copied (pass --tokenizer DIR)"))
    return 0
