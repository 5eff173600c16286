#!/usr/bin/env bash
# Copy this checkout to every worker of a TPU VM and install tulu-jax with jax[tpu] there.
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

jax_version="$(sed -n 's/.*"jax\[cpu\]==\([0-9.]*\)".*/\1/p' "${source_dir}/setup.py")"
[[ -n "${jax_version}" ]] || die "could not read the pinned jax version from ${source_dir}/setup.py"
on_all_workers "${name}" "${zone}" "set -e
  rm -rf ~/tulu-jax && mkdir -p ~/tulu-jax && tar -xzf ~/tulu-jax.tar.gz -C ~/tulu-jax
  python3 -m venv ~/tulu-jax/.venv
  ~/tulu-jax/.venv/bin/pip install --quiet --upgrade pip
  ~/tulu-jax/.venv/bin/pip install --quiet -e ~/tulu-jax 'jax[tpu]==${jax_version}'
  ~/tulu-jax/.venv/bin/python -c 'import jax; print(jax.process_index(), jax.device_count(), jax.devices()[0].device_kind)'"
echo "tulu-jax is installed on every worker of ${name}"
