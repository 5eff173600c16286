#!/usr/bin/env bash
# Create a TPU VM slice, directly or as a queued resource (waits in line for capacity).
#
# usage: create.sh NAME ACCELERATOR_TYPE ZONE [--queued] [--spot] [--version RUNTIME_VERSION]
#   e.g. create.sh tulu-sft v5p-64 us-east5-a --queued
#        create.sh tulu-sft v6e-64 us-east5-b --spot

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 3 ]] || die "usage: $0 NAME ACCELERATOR_TYPE ZONE [--queued] [--spot] [--version RUNTIME_VERSION]"
name="$1"
accelerator_type="$2"
zone="$3"
shift 3
check_accelerator_type "${accelerator_type}"
queued=false
spot=false
version=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --queued) queued=true ;;
    --spot) spot=true ;;
    --version)
      [[ $# -ge 2 ]] || die "--version needs a value"
      version="$2"
      shift
      ;;
    *) die "unknown option '$1'" ;;
  esac
  shift
done
[[ -n "${version}" ]] || version="$(runtime_version_for "${accelerator_type}")"
require_gcloud
mapfile -t project < <(project_flags)
extra=()
if [[ "${spot}" == true ]]; then
  extra+=(--spot)
fi

if [[ "${queued}" == true ]]; then
  gcloud compute tpus queued-resources create "${name}" \
    --node-id="${name}" --zone="${zone}" --accelerator-type="${accelerator_type}" \
    --runtime-version="${version}" "${project[@]}" "${extra[@]}"
  echo "queued ${name}; watch it with:"
  echo "  gcloud compute tpus queued-resources describe ${name} --zone=${zone}"
else
  gcloud compute tpus tpu-vm create "${name}" \
    --zone="${zone}" --accelerator-type="${accelerator_type}" --version="${version}" \
    "${project[@]}" "${extra[@]}"
fi
