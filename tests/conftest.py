"""Suite-wide setup: 8 forced CPU devices (before JAX is imported) so mesh tests run on one machine."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch's OpenMP threads spin while they wait; on 2 busy cores they spin against the threads they wait for
# (measured: one SmolLM2 SFT step 87-126 s spinning, 13 s passive). Read when torch loads, so set it here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
