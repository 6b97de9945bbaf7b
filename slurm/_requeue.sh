# Sourced by the sbatch templates whose command has no signal handler of its own (evaluate,
# generate, pack). SLURM sends SIGUSR1 to this batch shell 90 s before the time limit
# (--signal=B:USR1@90); the trap asks SLURM to requeue the job (the array task, for arrays)
# and the requeued job runs the same command, which skips the work already done. The batch
# shell is the one component that requeues these jobs.
#
# run_requeueable CMD...: run CMD in the background so the trap can fire, return its status.
requeue_id() {
    if [[ -n "${SLURM_ARRAY_JOB_ID:-}" ]]; then
        echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    else
        echo "${SLURM_JOB_ID}"
    fi
}

on_usr1() {
    echo "equissl: time limit near, requeueing $(requeue_id)" >&2
    scontrol requeue "$(requeue_id)"
}

run_requeueable() {
    interrupted=0
    trap 'on_usr1; interrupted=1' USR1
    "$@" &
    local pid=$!
    local status=0
    # `wait` returns early (status > 128) when the trap fires; then wait again for the
    # command's own status (bash keeps it even if the command ended meanwhile).
    while true; do
        interrupted=0
        wait "$pid" && status=0 || status=$?
        ((interrupted)) || break
    done
    return "$status"
}

if [[ -n "${EQUISSL_SETUP:-}" ]]; then
    # modules and the Python environment of this site (see slurm/README.md)
    # shellcheck disable=SC1090
    source "$EQUISSL_SETUP"
fi
