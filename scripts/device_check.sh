#!/usr/bin/env bash
# The GPU path, end to end, on a bare machine (no virtualenv, no package index):
#
#   bash scripts/device_check.sh [--device cuda|cpu] [--all-wheels] OUTDIR
#
# 1. the machine: GPU, cores, memory, /dev/shm, Python and torch;
# 2. `pip show` of what the machine is expected to lack (scripts/gpu-wheels.txt);
# 3. installs the wheels of wheels/ (`make wheels`, on a machine with an index) that are
#    missing or older here, with --no-deps, into a temporary folder on PYTHONPATH, with the
#    checkout (no editable install); --all-wheels installs every one (to test them anywhere);
# 4. the test files that hold `cuda` tests (only those: the rest of the suite imports
#    packages such a machine has no use for);
# 5. bench/bench_gpu.py --short (its BENCHMARKS section goes to OUTDIR/BENCHMARKS-gpu.md);
# 6. the job in small: synth 80 people -> search 8 trials, 3 folds, 2 epochs on a space file
#    like `default` with pretrained: false (two workers on GPU 0: --gpus 0,0)
#    -> best --export --tta -> predict --eval.
# Each step's output goes to OUTDIR/NN-step.log and one line to the screen and
# OUTDIR/summary.txt. Aim on an H200 with 16 cores: under 8 minutes.
#
# --device cpu runs the same steps on the CPU, with a tiny backbone at 64 px in place of the
# GPU ones, so the script is known to work before a GPU is at hand (under 10 minutes on 2
# cores). PYTHON picks the interpreter (default python3).
set -uo pipefail

usage() {
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-2}"
}

DEVICE=cuda
ALL_WHEELS=0
OUT=
while [[ $# -gt 0 ]]; do
    case $1 in
        --device) DEVICE=${2:-}; shift 2 ;;
        --device=*) DEVICE=${1#*=}; shift ;;
        --all-wheels) ALL_WHEELS=1; shift ;;
        -h | --help) usage 0 ;;
        -*) echo "error: unknown option $1" >&2; usage ;;
        *) [[ -n $OUT ]] && { echo "error: one OUTDIR, got $OUT and $1" >&2; usage; }; OUT=$1; shift ;;
    esac
done
[[ -z $OUT ]] && { echo "error: OUTDIR missing" >&2; usage; }
[[ $DEVICE == cuda || $DEVICE == cpu ]] || { echo "error: --device: expected cuda or cpu, got '$DEVICE'" >&2; exit 2; }

PYTHON=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
SITE=$(mktemp -d "${TMPDIR:-/tmp}/maskopt-site.XXXXXX")
trap 'rm -rf "$SITE"' EXIT
export PYTHONPATH="$ROOT:$SITE"
export NO_ALBUMENTATIONS_UPDATE=1 MPLBACKEND=Agg
export PYTHON SITE DEVICE ALL_WHEELS
cd "$ROOT" || exit 2
: >"$OUT/summary.txt"
START=$SECONDS
FAILED=0
N=0

say() { echo "$*" | tee -a "$OUT/summary.txt"; }

# step NAME TIMEOUT_S COMMAND...: run it, log it, one line of result
step() {
    local name=$1 limit=$2
    shift 2
    N=$((N + 1))
    local log
    log=$(printf '%s/%02d-%s.log' "$OUT" "$N" "$name")
    local t0=$SECONDS
    echo "\$ $*" >"$log"
    # through bash -c, so a step can be one of the functions below (exported)
    timeout --kill-after=10 "$limit" bash -c '"$@"' "$name" "$@" >>"$log" 2>&1
    local rc=$?
    local took=$((SECONDS - t0))
    local last
    last=$(grep '[[:alnum:]]' "$log" | tail -n 1 | cut -c1-160)
    if [[ $rc -eq 0 ]]; then
        say "PASS  $name (${took} s): $last"
    else
        [[ $rc -eq 124 || $rc -eq 137 ]] && last="timed out after ${limit} s; $last"
        say "FAIL  $name (${took} s, exit $rc): $last   [log: $log]"
        FAILED=$((FAILED + 1))
    fi
    return $rc
}

say "maskopt device check: --device $DEVICE, $(date -u '+%Y-%m-%d %H:%M UTC'), checkout $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')"

# -- 1. the machine ----------------------------------------------------------------------------
machine() {
    echo "== host"; uname -a; echo "cores: $(nproc)"; free -g | head -2
    echo "== /dev/shm (DataLoader workers pass batches through it)"; df -h /dev/shm
    if command -v nvidia-smi >/dev/null; then echo "== nvidia-smi"; nvidia-smi; fi
    echo "== python"
    "$PYTHON" - <<'EOF'
import sys
print(sys.version)
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, available {torch.cuda.is_available()}")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"cuda:0 {p.name}, {p.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} device(s)")
EOF
}
export -f machine
step machine 60 machine || exit 1
if [[ $DEVICE == cuda ]] && ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    say "FAIL  torch sees no CUDA device: run with --device cpu, or on the GPU machine"
    exit 1
fi

# -- 2. what the machine lacks, 3. the wheels --------------------------------------------------
NAMES=$(grep -v '^\s*#' scripts/gpu-wheels.txt | sed 's/[=<>].*//' | tr '\n' ' ')
export NAMES
expected_missing() {
    # shellcheck disable=SC2086
    "$PYTHON" -m pip show $NAMES 2>&1 | grep -E '^(Name|Version|WARNING)'
    # shellcheck disable=SC2086
    "$PYTHON" - $NAMES <<'EOF'
import importlib.metadata as md
import sys

missing = []
for name in sys.argv[1:]:
    try:
        md.version(name)
    except md.PackageNotFoundError:
        missing.append(name)
print(f"missing here: {', '.join(missing) or 'none'} ({len(missing)} of {len(sys.argv) - 1})")
EOF
}
export -f expected_missing
step expected-missing 60 expected_missing

install_wheels() {
    ls wheels/*.whl >/dev/null 2>&1 || { echo "no wheels/*.whl: run 'make wheels' where a package index answers"; return 1; }
    "$PYTHON" - "$SITE" "$ALL_WHEELS" wheels/*.whl <<'EOF'
import importlib.metadata as md
import re
import subprocess
import sys
import zipfile

site, everything, wheels = sys.argv[1], sys.argv[2] == "1", sys.argv[3:]

def key(v):  # version order without `packaging` (it may be one of the wheels)
    return [int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", v)]

tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
chosen = []
for path in wheels:
    name, version, python = path.rsplit("/", 1)[-1].split("-")[:3]
    if python.startswith("cp") and python != tag:
        print(f"skip    {name} {version}: built for {python}, this Python is {tag}")
        continue
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if everything or have is None or key(have) < key(version):
        chosen.append(path)
        print(f"install {name} {version}" + (f" (here: {have})" if have else " (missing here)"))
    else:
        print(f"keep    {name} {have} (wheel {version})")
if chosen:
    pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if pip.returncode == 0:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                        "--target", site, *chosen], check=True)
    else:  # no pip: a wheel is a zip of what --target would write
        for path in chosen:
            zipfile.ZipFile(path).extractall(site)
print(f"{len(chosen)} wheel(s) installed into {site}")
EOF
}
export -f install_wheels
step install-wheels 180 install_wheels || exit 1
imports() {
    "$PYTHON" - <<'EOF'
import importlib
import os

import maskopt.cli  # noqa: F401  (the whole CLI imports)

site = os.environ["SITE"]
for name in ("optuna", "sqlalchemy", "albumentations", "kornia", "plotly", "cmaes", "tomli_w",
             "pytest", "timm", "torch", "maskopt"):
    mod = importlib.import_module(name)
    where = "wheels/" if mod.__file__.startswith(site) else os.path.dirname(mod.__file__)
    print(f"{name} {getattr(mod, '__version__', '?')} from {where}")
print("maskopt and everything it imports load")
EOF
}
export -f imports
step imports 120 imports || exit 1

# -- 4. the tests that need CUDA ---------------------------------------------------------------
CUDA_TESTS=$(grep -rlE 'pytest\.mark\.cuda' tests --include='test_*.py' | sort | tr '\n' ' ')
export CUDA_TESTS
cuda_tests() {
    # shellcheck disable=SC2086
    "$PYTHON" -m pytest -q -p no:cacheprovider -rs $CUDA_TESTS | tee "$SITE/pytest.out"
    local rc=${PIPESTATUS[0]}
    if [[ $rc -eq 0 && $DEVICE == cuda ]] && grep -q 'SKIPPED' "$SITE/pytest.out"; then
        echo "cuda tests were skipped on a CUDA machine"
        return 1
    fi
    return "$rc"
}
export -f cuda_tests
step cuda-tests 240 cuda_tests

# -- 5. the benchmark --------------------------------------------------------------------------
if [[ $DEVICE == cuda ]]; then
    step bench-gpu 300 "$PYTHON" -m bench.bench_gpu --short --device cuda --report "$OUT/BENCHMARKS-gpu.md"
else
    step bench-gpu 300 "$PYTHON" -m bench.bench_gpu --short --device cpu --people 12 --folds 2 \
        --epochs 1 --backbones mobilenetv3_small_050 --workers 1,2 --compile-backbones none \
        --cost-sizes 64 \
        --report "$OUT/BENCHMARKS-gpu.md"
fi

# -- 6. the job in small -----------------------------------------------------------------------
JOB=$OUT/job
rm -rf "$JOB" && mkdir -p "$JOB"
MASKOPT=("$PYTHON" -m maskopt.cli)
step synth 120 "${MASKOPT[@]}" synth "$JOB/data" --people 80 --seed 0 || exit 1

"$PYTHON" - "$DEVICE" "$JOB/space.yaml" <<'EOF'
import sys

import yaml

from maskopt.spaces.builtin import DEFAULT

device, path = sys.argv[1:]
params = dict(DEFAULT["params"], pretrained=False, warmup_epochs={"low": 0, "high": 1})  # 2 epochs
space = {"name": "device-check", "epochs": 2, "params": params}
if device == "cpu":  # the fastest tiny backbone at 64 px stands in for the GPU ones; the
    # space's augment_on: auto resolves to cpu there (kornia's colour ops are slow on a CPU)
    space["params"].update(backbone="mobilenetv3_small_050", image_size=64)
space["description"] = f"`default` with pretrained: false ({device})"
with open(path, "w") as f:
    yaml.safe_dump(space, f, sort_keys=False)
EOF

COMMON=(--data "$JOB/data" --storage "sqlite:///$JOB/maskopt.db" --device "$DEVICE")
if [[ $DEVICE == cuda ]]; then
    WORKERS=(--gpus 0,0)  # two trials share the GPU, as `--gpus 0,0` runs them
    LIMITS=(240 180 120)
else
    WORKERS=()
    LIMITS=(420 300 120)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # 2 shared cores: spinning threads cost more
fi
step search "${LIMITS[0]}" "${MASKOPT[@]}" search --space "$JOB/space.yaml" --trials 8 --folds 3 \
    --epochs 2 --seed 0 "${WORKERS[@]}" "${COMMON[@]}" &&
    step export "${LIMITS[1]}" "${MASKOPT[@]}" best --export --tta --out "$JOB/bundle" "${COMMON[@]}" &&
    step predict "${LIMITS[2]}" "${MASKOPT[@]}" predict "$JOB/bundle" --eval --data "$JOB/data" \
        --device "$DEVICE"

say "$([[ $FAILED -eq 0 ]] && echo PASSED || echo "FAILED: $FAILED step(s)") in $((SECONDS - START)) s; logs and BENCHMARKS-gpu.md in $OUT"
[[ $FAILED -eq 0 ]]
