#!/usr/bin/env bash
# Times one reference GAN step (batch 128) and one classifier step (batch 32)
# in fedsynth, PyTorch and Keras on TensorFlow, in the same run, and prints
# each median and its ratio to fedsynth.
# Usage: bench/steps.sh [ROUNDS [WARMUP [ITERS]]]
# Each round runs every framework once, one after the other, so that a
# load change on the machine hits all of them. Medians are over the rounds.
# Creates bench/.venv with torch and tensorflow-cpu from PyPI on first use.
set -euo pipefail

if [ $# -gt 3 ]; then
    echo "usage: bench/steps.sh [ROUNDS [WARMUP [ITERS]]] (got $# arguments)" >&2
    exit 2
fi
rounds=${1:-3}
warmup=${2:-2}
iters=${3:-5}
threads=${FEDSYNTH_THREADS:-0}

# Each count must be a whole number up to 9999; ROUNDS and ITERS at least 1.
check_count() {
    local name=$1 value=$2 minimum=$3
    if ! [[ $value =~ ^[0-9]{1,4}$ ]] || [ "$value" -lt "$minimum" ]; then
        echo "invalid $name '$value': use a whole number from $minimum to 9999" >&2
        exit 2
    fi
}
check_count ROUNDS "$rounds" 1
check_count WARMUP "$warmup" 0
check_count ITERS "$iters" 1

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/bench/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    # Both wheels are large; a framework that does not install is skipped.
    "$venv/bin/pip" install --quiet torch || echo "torch not installable here; skipping it"
    "$venv/bin/pip" install --quiet tensorflow-cpu ||
        echo "tensorflow-cpu not installable here; skipping it"
fi

(cd "$root" && cargo build --release --quiet)
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) logical cores"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

results=$(mktemp)
errors=$(mktemp)
trap 'rm -f "$results" "$errors"' EXIT
for round in $(seq "$rounds"); do
    out=$("$root/target/release/fedsynth" --threads "$threads" bench steps \
        --warmup "$warmup" --iters "$iters")
    [ "$round" = 1 ] && echo "fedsynth: $(echo "$out" | head -n1)"
    echo "$out" | sed -nE 's/^GAN step.* ([0-9.]+) s\/step.*/fedsynth gan \1/p' >>"$results"
    echo "$out" | sed -nE 's/^classifier step.* ([0-9.]+) s\/step.*/fedsynth classifier \1/p' >>"$results"
    for framework in torch tensorflow; do
        # TensorFlow logs start-up notices on stderr; they go to a file that is
        # printed only when the run fails.
        out=$("$venv/bin/python" "$root/bench/steps_baselines.py" --framework "$framework" \
            --warmup "$warmup" --iters "$iters" --threads "$threads" 2>"$errors") ||
            { cat "$errors" >&2; exit 1; }
        if echo "$out" | grep -q skipping; then
            [ "$round" = 1 ] && echo "$out"
            continue
        fi
        [ "$round" = 1 ] && echo "$out" | grep version
        echo "$out" | sed -nE 's/^([a-z]+) (gan|classifier): ([0-9.]+) s\/step/\1 \2 \3/p' >>"$results"
    done
    echo "round $round of $rounds done, load $(cut -d' ' -f1-3 /proc/loadavg)"
done

# Median per framework and step, then each step's ratio to fedsynth.
awk '
    { times[$1 " " $2] = times[$1 " " $2] " " $3 }
    END {
        for (key in times) {
            n = split(substr(times[key], 2), v, " ")
            for (i = 1; i <= n; i++)
                for (j = i + 1; j <= n; j++)
                    if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            median[key] = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        }
        split("gan classifier", steps, " ")
        split("fedsynth torch tensorflow", names, " ")
        # Keras runs on TensorFlow; the rows name the API that the models use.
        split("fedsynth pytorch keras", labels, " ")
        for (s = 1; s <= 2; s++)
            for (f = 1; f <= 3; f++) {
                key = names[f] " " steps[s]
                if (!(key in median)) continue
                printf "%-10s %-10s median %.4f s/step", labels[f], steps[s], median[key]
                if (f > 1)
                    printf "  fedsynth / %s = %.2f", labels[f], median["fedsynth " steps[s]] / median[key]
                printf "\n"
            }
    }' "$results"
