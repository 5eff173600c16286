"""tulu-jax: the Tülu 3 post-training recipe (SFT, length-normalized DPO, RLVR) for Llama 3.1 in JAX."""

__version__ = "0.1.0"
