#!/usr/bin/env bash
# Start a stage on every worker of a TPU VM at once, detached; output goes to ~/tulu-jax-logs/RUN.log.
#
# usage: launch.sh NAME ZONE STAGE CONFIG [key=value ...]
#   e.g. launch.sh tulu-sft us-east5-a sft configs/tulu3_8b_sft.yaml output_dir=gs://my-bucket/runs/sft-8b
# CONFIG is a path inside the copied checkout. Every worker runs the same command; JAX finds its peers
# from the TPU metadata (tulu_jax.distributed). Set RUN to name the log (default: the stage).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 4 ]] || die "usage: $0 NAME ZONE STAGE CONFIG [key=value ...]"
name="$1"
zone="$2"
stage="$3"
config="$4"
shift 4
[[ "${stage}" =~ ^[a-z]+$ ]] || die "stage '${stage}' should be a tulu-jax command such as sft, dpo, rlvr"
run="${RUN:-${stage}}"
require_gcloud

overrides=""
for override in "$@"; do
  [[ "${override}" == *=* ]] || die "override '${override}' is not key=value"
  overrides+=" $(printf '%q' "${override}")"
done

on_all_workers "${name}" "${zone}" "set -e
  cd ~/tulu-jax && mkdir -p ~/tulu-jax-logs
  nohup .venv/bin/tulu-jax ${stage} --config $(printf '%q' "${config}")${overrides} \
    > ~/tulu-jax-logs/${run}.log 2>&1 < /dev/null &
  echo \"worker \$(hostname): started ${stage} (pid \$!)\""
# Remembered on this workstation, so relaunch.sh can start the same run again after a preemption.
record_dir="${TULU_TPU_STATE_DIR:-${HOME}/.tulu-jax-tpu}"
mkdir -p "${record_dir}"
printf '%q ' "$0" "${name}" "${zone}" "${stage}" "${config}" "$@" > "${record_dir}/${name}.launch"
echo "follow it with: $(dirname "$0")/logs.sh ${name} ${zone} ${run}"
