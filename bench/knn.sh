#!/usr/bin/env bash
# Measures exact kNN search of fedsynth, numpy and FAISS IndexFlatL2 on the
# same problem in one run, and prints each GFLOP/s and fedsynth's ratio to
# the others. Usage: bench/knn.sh [QUERIES [REFERENCES [DIM [K]]]]
# Creates bench/.venv with numpy and faiss-cpu from PyPI on first use.
set -euo pipefail

queries=${1:-10000}
references=${2:-10000}
dim=${3:-3072}
k=${4:-50}
threads=${FEDSYNTH_THREADS:-0}

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/bench/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet numpy
    # faiss-cpu has no wheel for some platforms; the baseline then skips it.
    "$venv/bin/pip" install --quiet faiss-cpu || echo "faiss-cpu not installable here; skipping it"
fi

(cd "$root" && cargo build --release --quiet)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) logical cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

fedsynth=$("$root/target/release/fedsynth" --threads "$threads" bench knn \
    --queries "$queries" --references "$references" --dim "$dim" --k "$k")
echo "$fedsynth"
baselines=$("$venv/bin/python" "$root/bench/knn_baselines.py" \
    --queries "$queries" --references "$references" --dim "$dim" --k "$k" --threads "$threads")
echo "$baselines"

ours=$(echo "$fedsynth" | sed -E 's/.* ([0-9.]+) GFLOP\/s/\1/')
echo "$baselines" | grep 'GFLOP/s' | while read -r line; do
    name=$(echo "$line" | cut -d: -f1)
    theirs=$(echo "$line" | sed -E 's/.* ([0-9.]+) GFLOP\/s/\1/')
    awk -v a="$ours" -v b="$theirs" -v n="$name" 'BEGIN { printf "fedsynth / %s: %.2f\n", n, a / b }'
done
