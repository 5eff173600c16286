#!/usr/bin/env bash
# Shared helpers for the tpu_scripts: argument checks and gcloud calls on every worker of a TPU VM.
# Sourced, not run. Optional environment: TPU_PROJECT (gcloud project; default: the gcloud config's).

set -euo pipefail

die() {
  echo "error: $*" >&2
  exit 1
}

require_gcloud() {
  command -v gcloud >/dev/null 2>&1 || die "gcloud is not installed; see https://cloud.google.com/sdk/docs/install"
}

# Project flag for gcloud, as an array so an empty project adds nothing.
project_flags() {
  if [[ -n "${TPU_PROJECT:-}" ]]; then
    printf '%s\n' "--project=${TPU_PROJECT}"
  fi
}

# Accelerator types look like v5p-64, v6e-16, v5litepod-8, v4-32.
check_accelerator_type() {
  [[ "$1" =~ ^(v4|v5p|v5e|v5litepod|v6e)-[0-9]+$ ]] ||
    die "accelerator type '$1' is not one of v4-N, v5p-N, v5litepod-N (v5e), v6e-N"
}

# The TPU VM software image that matches an accelerator type.
runtime_version_for() {
  case "$1" in
    v4-*) echo "tpu-ubuntu2204-base" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v5e-* | v5litepod-*) echo "v2-alpha-tpuv5-lite" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    *) die "no runtime version known for '$1'; pass --version" ;;
  esac
}

# Run a shell command on every worker of TPU VM $1 in zone $2.
on_all_workers() {
  local name="$1" zone="$2" command="$3"
  local -a project
  mapfile -t project < <(project_flags)
  gcloud compute tpus tpu-vm ssh "${name}" --zone="${zone}" "${project[@]}" --worker=all --command="${command}"
}
