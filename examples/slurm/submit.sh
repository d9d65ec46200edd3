#!/bin/bash
# Submit examples/slurm/fleet.sbatch once per node type: each an array of RUNS repeat runs, one at a time
# (%1) so that no two runs share a node. Node types are the cluster's feature names (sinfo -o "%N %f").
#   examples/slurm/submit.sh h100 a100 cpu-large        (RUNS=5 by default)
set -euo pipefail
if [ "$#" -eq 0 ]; then
    echo "usage: $0 NODE_TYPE [NODE_TYPE ...]   (each a node feature: sinfo -o \"%N %f\")" >&2
    exit 2
fi
RUNS="${RUNS:-5}"
case "$RUNS" in ''|*[!0-9]*|0) echo "RUNS must be a whole number from 1, not '$RUNS'" >&2; exit 2 ;; esac
here="$(cd "$(dirname "$0")" && pwd)"
checkout="$(cd "$here/../.." && pwd)"  # the tasks run there, wherever this was submitted from
# Every type checked before any is submitted; an empty one would submit --constraint= (any node).
for type in "$@"; do
    case "$type" in ''|*[!A-Za-z0-9_.-]*) echo "a node type is letters, digits, _ . and -, not '$type'" >&2; exit 2 ;; esac
done
for type in "$@"; do
    sbatch --constraint="$type" --array="1-${RUNS}%1" \
        --export="ALL,NODE_TYPE=${type},FMNIST_BENCH_DIR=${checkout}" "$here/fleet.sbatch"
done
