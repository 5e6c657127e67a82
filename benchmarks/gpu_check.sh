#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU, sized for a device lease: at most
# DEADLINE_S (default 480 s = 8 minutes on one H200 with 16 cores) INCLUDING the build. Steps:
# build for sm_90 only, a hard check that every CUDA op is served by compiled kernels, the
# GPU-relevant tests (CUDA cases, the library path, host syncs / graph capture; not slow; parallel
# workers; a per-test timeout; TF32 off via python_tests/conftest.py), compute-sanitizer memcheck
# and racecheck on the fused kernels only (benchmarks/sanitizer_cases.py, which has cases that
# split the depth), and the quick benchmark on CUDA only. A step that would start with less time
# left than it needs is skipped and says so; every step's limit is cut to the time left.
#
#   benchmarks/gpu_check.sh OUT_DIR
#
# Everything (logs, summary.txt, bench results) goes into ONE archive, OUT_DIR/gpu_check.tar.gz,
# written by an exit trap, so it exists even when a step fails or the deadline cuts the run.
# compute-sanitizer: PATH, $CUDA_HOME/bin, /usr/local/cuda/bin, or a pip install of NVIDIA's
# nvidia-cuda-sanitizer-api wheel. SKIP=tests,bench (step names) leaves steps out; DRY_RUN=1 only
# prints the commands (and checks that the script parses and the tools it needs are found).
set -uo pipefail
out=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
cd "$(dirname "$0")/.."
deadline=$((SECONDS + ${DEADLINE_S:-480}))
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} INN_CUDA_BACKEND=compiled
status=0
: >"$work/summary.txt"

pack() {  # the exit trap: one archive with everything, whatever happened
  printf 'exit status %d, %d s\n' "$status" "$SECONDS" >>"$work/summary.txt"
  tar -czf "$out/gpu_check.tar.gz" -C "$work" . && rm -rf "$work"
  echo "wrote $out/gpu_check.tar.gz"
}
trap pack EXIT

record() { printf '%-20s %-40s %5s\n' "$1" "$2" "${3:-}" >>"$work/summary.txt"; }

step() {  # step NAME NEED_S LIMIT_S COMMAND...: run if NEED_S are left, log to NAME.log
  local name=$1 need=$2 limit=$3; shift 3
  local left=$((deadline - SECONDS))
  if [[ ",${SKIP:-}," == *",${name%%-*},"* ]]; then record "$name" "skipped (SKIP)"; return; fi
  if ((left < need)); then
    record "$name" "SKIPPED: ${left} s left, needs ${need} s"; status=1; return
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit} s): $*"
  if [ -n "${DRY_RUN:-}" ]; then record "$name" "dry run"; return; fi
  local start=$SECONDS rc what
  timeout --kill-after=10 "$limit" "$@" >"$work/$name.log" 2>&1
  rc=$?
  case $rc in
    0) what=ok ;;
    124|137) what="TIMED OUT after ${limit} s"; status=1 ;;
    *) what="FAILED (exit $rc)"; status=1 ;;
  esac
  echo "   $what ($((SECONDS - start)) s)"
  [ "$what" = ok ] || tail -n 20 "$work/$name.log"
  record "$name" "$what" "$((SECONDS - start))s"
}

find_sanitizer() {
  local candidate
  for candidate in "$(command -v compute-sanitizer)" \
      "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  python3 - <<'PY'
import glob, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
hits = [p for r in roots for p in glob.glob(f"{r}/nvidia/cu*/compute-sanitizer/compute-sanitizer")]
print(hits[0] if hits else "")
PY
}

nvidia-smi >"$work/nvidia-smi.txt" 2>&1
if [ -z "${DRY_RUN:-}" ] && ! python3 -c "import torch; assert torch.cuda.is_available()" \
    2>"$work/gpu-probe.log"; then
  record gpu "NO GPU VISIBLE to torch"; status=1; exit 1
fi

step build 60 240 env INN_CUDA_BUILD=cuda MAX_JOBS="$(nproc)" python3 setup.py build_ext --inplace
# hard failure unless _C's compiled kernels serve every CUDA op (no reference / NVRTC fallback)
step served 20 60 python3 -c "
import inn_cuda._backend as b
bad = {op: d['cuda'] for op, d in b.SERVED_BY.items() if d['cuda'] != 'compiled'}
assert not bad, f'CUDA ops not served by compiled kernels: {bad}'
print(b.describe_backends(b.info()))"
step info 10 60 python3 -m inn_cuda info
# parallel workers and a per-test timeout when pytest-xdist / pytest-timeout are installed (the
# `test` extra); without them the step says so in its log and runs serially, untimed per test
plugins=()
python3 -c "import xdist" 2>/dev/null && plugins+=(-n 8 --dist loadgroup) || echo "no pytest-xdist" >>"$work/summary.txt"
python3 -c "import pytest_timeout" 2>/dev/null && plugins+=(--timeout 90) \
  || echo "no pytest-timeout" >>"$work/summary.txt"
step tests 60 200 python3 -m pytest -q -p no:cacheprovider -m "not slow" "${plugins[@]}" \
  --maxfail=25 --durations=15 \
  python_tests/test_interval_linear.py python_tests/test_interval_conv.py \
  python_tests/test_library_path.py python_tests/test_host_syncs.py \
  python_tests/test_point_weight_grad.py \
  -k "cuda or capture or synchronises"
sanitizer=$(find_sanitizer)
if [ -z "$sanitizer" ]; then
  record sanitizer "NOT RUN: no compute-sanitizer found"; status=1
else
  # Fused kernels only (INN_CUDA_ALGORITHM=fused; PyTorch's own kernels excluded by name).
  # Without the caching allocator every tensor is its own allocation, so memcheck sees an access
  # past a tensor's end instead of landing in a neighbour inside a pooled block.
  step sanitizer-memcheck 40 120 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 INN_CUDA_ALGORITHM=fused \
    "$sanitizer" --tool memcheck --error-exitcode 1 --kernel-name-exclude kns=at:: \
    python3 benchmarks/sanitizer_cases.py
  step sanitizer-racecheck 40 120 env INN_CUDA_ALGORITHM=fused "$sanitizer" --tool racecheck \
    --error-exitcode 1 --kernel-name kns=interval_tile_kernel python3 benchmarks/sanitizer_cases.py
fi
step bench 60 150 python3 benchmarks/run.py --quick --device cuda --networks none \
  --out "$work/bench"
echo "== summary"
cat "$work/summary.txt"
exit $status
