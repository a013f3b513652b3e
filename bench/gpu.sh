#!/usr/bin/env bash
# The engine bench on a GPU: copydesk's NF4 path on CUDA, a 7B-class model, (a) and (b) of
# bench/engine.py at 1, 16 and 64 concurrent drafts, on a machine that has Python 3.12 with torch and
# transformers but reaches no package registry and no model hub, and receives at most 64 MiB beside
# the working tree.
#
#   bench/gpu.sh --prepare    here: download the wheels and save the tokenizer into .gpu-carry/, then --dry-run
#   bench/gpu.sh --dry-run    here: list what would travel (each carried file, its size); exit 1 unless it fits
#   bench/gpu.sh              there: install the carried wheels, build the model, run the bench
#   bench/gpu.sh --rehearse   here: the same steps on the CPU with a tiny model in NF4 and a few tokens
#
# There, from the repository's root with .gpu-carry/ beside the tree, within a 10-minute command limit.
# It stops itself after BUDGET_S seconds (default 540), so what it printed still comes back. Planned:
# install ~15 s, build and save 14.8 GB ~60-90 s, then the bench: two NF4 loads ~40 s each, (b) and
# (a) at 16-48 new tokens per draft (bench/engine.py's --quick limits) with 4 drafts at least per
# level: ~2-3 min; about 5 min in all, an estimate until it has run. When $OUT is set, the table
# goes to $OUT/gpu-table.md and the whole log to $OUT/gpu-log.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARRY=$ROOT/.gpu-carry
BUDGET_S=${BUDGET_S:-540}
if [[ -z ${PYTHON:-} ]]; then
    PYTHON=python3
    [[ -x $ROOT/.venv/bin/python ]] && PYTHON=$ROOT/.venv/bin/python
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # no registry, no hub: never wait on one
export PIP_ROOT_USER_ACTION=ignore  # the GPU machine runs commands as root
SITE="" MODEL=""  # what run_on makes, removed when it ends

usage() {
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

phase() {
    echo "[gpu.sh $((SECONDS - STARTED)) s] $*" >&2
}

# run_on DEVICE SIZE BENCH_FLAGS...: install, check, build, bench; stdout is the bench's table.
# Run it in a subshell (report's pipeline does): its EXIT trap removes the install and the model.
run_on() {
    set -e  # again: report runs it with errexit off, to keep its status
    local device=$1 size=$2 left status=0
    shift 2
    STARTED=$SECONDS
    [[ -d $CARRY/wheels && -d $CARRY/tokenizer ]] \
        || { echo "no $CARRY/wheels or tokenizer: run bench/gpu.sh --prepare here, then carry .gpu-carry" >&2; return 1; }
    trap 'rm -rf "$SITE" "$MODEL"' EXIT
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/copydesk-site.XXXXXX")
    if [[ $device == cuda ]] && command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2 || true
    fi
    phase "installing the carried wheels into $SITE"
    local wheel wheels=() python_tag
    python_tag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info.major}{sys.version_info.minor}")')
    for wheel in "$CARRY"/wheels/*.whl; do
        if [[ $(basename "$wheel") == *-cp3* && $(basename "$wheel") != *-"$python_tag"-* ]]; then
            phase "skipping $(basename "$wheel"): built for another Python than $python_tag (a rehearsal), its own copy serves"
        else
            wheels+=("$wheel")
        fi
    done
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${wheels[@]}"
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    phase "checking what is imported"
    "$PYTHON" "$ROOT/bench/gpu_carry.py" verify --device "$device"
    phase "building the $size model with random weights"
    MODEL=$("$PYTHON" "$ROOT/bench/gpu_model.py" "$CARRY/tokenizer" --size "$size" --device "$device")
    left=$((BUDGET_S - (SECONDS - STARTED)))
    ((left > 0)) || { phase "no time left for the bench of the budget of $BUDGET_S s"; return 124; }
    phase "running bench/engine.py on $MODEL ($left s left of $BUDGET_S)"
    timeout -k 15 "$left" "$PYTHON" "$ROOT/bench/engine.py" --device "$device" --model "$MODEL" --no-server \
        --concurrency 1,16,64 "$@" || status=$?
    if ((status == 124 || status == 137)); then
        phase "the bench ran past the budget of $BUDGET_S s and was stopped: its progress lines above are what it measured"
    fi
    phase "done (exit $status)"
    return "$status"
}

# report DEVICE SIZE BENCH_FLAGS...: run_on, with the table and the log kept (in $OUT when set).
report() {
    local folder=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/copydesk-gpu-report.XXXXXX")} status
    # Not `|| status=$?`: that would switch errexit off inside run_on too, and a failed step would go on.
    set +e
    { run_on "$@" | tee "$folder/gpu-table.md"; } 2>&1 | tee "$folder/gpu-log.txt"
    status=$?
    set -e
    echo "table: $folder/gpu-table.md, log: $folder/gpu-log.txt"
    return "$status"
}

case "${1:-}" in
    --prepare)
        "$PYTHON" "$ROOT/bench/gpu_carry.py" fetch --carry "$CARRY"
        "$PYTHON" "$ROOT/bench/gpu_carry.py" check --carry "$CARRY" ;;
    --dry-run)
        "$PYTHON" "$ROOT/bench/gpu_carry.py" check --carry "$CARRY" ;;
    --rehearse)
        report cpu tiny --quantization nf4 --max-new-tokens 4,6 --min-requests 2 ;;  # what CUDA loads
    "")
        report cuda 7b --quick --min-requests 4 ;;
    -h | --help)
        usage ;;
    *)
        echo "unknown option $1" >&2
        usage >&2
        exit 2 ;;
esac
