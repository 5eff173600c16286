#!/usr/bin/env bash
# Start the last run launched on a TPU VM again, after a preemption or a crash: reinstall on every worker
# (a recreated VM is bare), then the same launch.sh command. The run resumes from its newest checkpoint in
# the shared output_dir (a gs:// bucket), because every stage resumes by default.
#
# usage: relaunch.sh NAME ZONE        (recreate a deleted VM first with create.sh, e.g. --queued)

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -eq 2 ]] || die "usage: $0 NAME ZONE"
name="$1"
zone="$2"
record="${TULU_TPU_STATE_DIR:-${HOME}/.tulu-jax-tpu}/${name}.launch"
[[ -f "${record}" ]] || die "no launch recorded for '${name}' (${record}); start it once with launch.sh"
require_gcloud
bash "$(dirname "${BASH_SOURCE[0]}")/setup.sh" "${name}" "${zone}"
eval "set -- $(cat "${record}")"
shift  # the recorded launch.sh path; run the one beside this script
bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" "$@"
