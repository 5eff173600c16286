#!/usr/bin/env bash
# Stream the log of a launched run from one worker (worker 0, the one that logs metrics, by default).
#
# usage: logs.sh NAME ZONE [RUN] [WORKER]
#   RUN defaults to sft; WORKER to 0, or "all" for the last lines of every worker's log.

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -ge 2 ]] || die "usage: $0 NAME ZONE [RUN] [WORKER]"
name="$1"
zone="$2"
run="${3:-sft}"
worker="${4:-0}"
[[ "${worker}" == all || "${worker}" =~ ^[0-9]+$ ]] || die "worker must be a number or 'all', got '${worker}'"
require_gcloud
mapfile -t project < <(project_flags)

if [[ "${worker}" == all ]]; then
  on_all_workers "${name}" "${zone}" "echo \"== \$(hostname)\"; tail -n 20 ~/tulu-jax-logs/${run}.log"
else
  gcloud compute tpus tpu-vm ssh "${name}" --zone="${zone}" "${project[@]}" --worker="${worker}" \
    --command="tail -n 100 -f ~/tulu-jax-logs/${run}.log"
fi
