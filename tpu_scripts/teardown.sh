#!/usr/bin/env bash
# Stop runs and delete a TPU VM (and its queued resource, if it came from one).
#
# usage: teardown.sh NAME ZONE [--queued] [--stop-only]
#   --stop-only kills tulu-jax processes on every worker but keeps the VM.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 2 ]] || die "usage: $0 NAME ZONE [--queued] [--stop-only]"
name="$1"
zone="$2"
shift 2
queued=false
stop_only=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --queued) queued=true ;;
    --stop-only) stop_only=true ;;
    *) die "unknown option '$1'" ;;
  esac
  shift
done
require_gcloud
mapfile -t project < <(project_flags)

if [[ "${stop_only}" == true ]]; then
  # The TPU is held by the training process; stopping it frees the chips for the next launch.
  on_all_workers "${name}" "${zone}" "pkill -INT -f '.venv/bin/tulu-jax' || true"
  exit 0
fi

if [[ "${queued}" == true ]]; then
  gcloud compute tpus queued-resources delete "${name}" --zone="${zone}" "${project[@]}" --force --quiet
else
  gcloud compute tpus tpu-vm delete "${name}" --zone="${zone}" "${project[@]}" --quiet
fi
