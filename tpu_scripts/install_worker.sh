#!/usr/bin/env bash
# Install tulu-jax on one TPU VM worker, from the checkout this script sits in (run by setup.sh on every
# worker; also runnable by hand). TPU VM images ship Python 3.10 while tulu-jax needs 3.11, so the venv is
# made by uv (installed from PyPI), which brings its own Python 3.11 when the image has none.
#
# usage: install_worker.sh [JAX_EXTRA]    JAX_EXTRA defaults to tpu (jax[tpu] at the pinned version)

set -euo pipefail
checkout="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extra="${1:-tpu}"
[[ "${extra}" =~ ^(tpu|cpu)$ ]] || { echo "error: JAX_EXTRA must be tpu or cpu, got '${extra}'" >&2; exit 1; }
jax_version="$(sed -n 's/.*"jax\[cpu\]==\([0-9.]*\)".*/\1/p' "${checkout}/setup.py")"
[[ -n "${jax_version}" ]] || { echo "error: no pinned jax version in ${checkout}/setup.py" >&2; exit 1; }

python3 -m pip install --quiet --user --upgrade uv
uv="$(python3 -m site --user-base)/bin/uv"
"${uv}" venv --quiet --python 3.11 "${checkout}/.venv"
"${uv}" pip install --quiet --python "${checkout}/.venv/bin/python" -e "${checkout}" "jax[${extra}]==${jax_version}"
"${checkout}/.venv/bin/python" -c 'import jax, tulu_jax; print(jax.process_index(), jax.device_count(), jax.devices()[0].device_kind)'
