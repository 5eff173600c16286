#!/usr/bin/env bash
# Copy this checkout to every worker of a TPU VM and install tulu-jax with jax[tpu] there
# (tpu_scripts/install_worker.sh: uv makes a Python 3.11 venv; the TPU images ship 3.10).
#
# usage: setup.sh NAME ZONE [SOURCE_DIR]
#   SOURCE_DIR defaults to the repository holding this script; it is copied to ~/tulu-jax on each worker.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 2 ]] || die "usage: $0 NAME ZONE [SOURCE_DIR]"
name="$1"
zone="$2"
source_dir="${3:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
[[ -f "${source_dir}/setup.py" ]] || die "${source_dir} is not a tulu-jax checkout (no setup.py)"
require_gcloud
mapfile -t project < <(project_flags)

archive="$(mktemp -t tulu-jax-XXXXXX.tar.gz)"
trap 'rm -f "${archive}"' EXIT
# Only the sources: no virtualenv, runs or caches.
tar -C "${source_dir}" -czf "${archive}" \
  --exclude=.venv --exclude=runs --exclude=.git --exclude='__pycache__' --exclude=.pytest_cache .
gcloud compute tpus tpu-vm scp "${archive}" "${name}:~/tulu-jax.tar.gz" \
  --zone="${zone}" "${project[@]}" --worker=all

on_all_workers "${name}" "${zone}" "set -e
  rm -rf ~/tulu-jax && mkdir -p ~/tulu-jax && tar -xzf ~/tulu-jax.tar.gz -C ~/tulu-jax
  bash ~/tulu-jax/tpu_scripts/install_worker.sh tpu"
echo "tulu-jax is installed on every worker of ${name}"
