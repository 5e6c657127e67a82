#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU (about 8 minutes on one H200): build the
# extension for the local GPU, run the full test suite with the CUDA tests active, run
# compute-sanitizer (memcheck and racecheck) on a small forward/backward of every CUDA op, run the
# quick benchmark, and write every log and result to one folder (summary.txt: one line per step).
#
#   benchmarks/gpu_check.sh OUT_DIR
#
# compute-sanitizer is looked up on PATH, in $CUDA_HOME/bin, /usr/local/cuda/bin and in a pip
# install of NVIDIA's nvidia-cuda-sanitizer-api wheel. For a machine without it and without
# network, download the wheel elsewhere (pip download --no-deps nvidia-cuda-sanitizer-api), bring
# it along and pass SANITIZER_WHEEL=path/to/the.whl: it is unpacked into OUT_DIR/.sanitizer.
# Every step has a time limit (seconds, *_TIMEOUT variables) so that a hang cannot eat the
# machine's time; SKIP=tests,bench (a comma list of step names) leaves steps out.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
status=0
: >"$out/summary.txt"
step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $out/NAME.log, record the outcome
  local name=$1 limit=$2; shift 2
  if [[ ",${SKIP:-}," == *",${name%%-*},"* ]]; then
    printf '%-20s %-26s\n' "$name" "skipped (SKIP)" >>"$out/summary.txt"; return
  fi
  echo "== $name: $*"
  local start=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
  rc=$?
  local took=$((SECONDS - start)) what
  case $rc in
    0) what=ok ;;
    124|137) what="TIMED OUT after ${limit} s"; status=1 ;;
    *) what="FAILED (exit $rc)"; status=1 ;;
  esac
  echo "   $what ($took s)"
  [ "$what" = ok ] || tail -n 20 "$out/$name.log"
  printf '%-20s %-26s %5d s\n' "$name" "$what" "$took" >>"$out/summary.txt"
}

find_sanitizer() {
  local candidate
  for candidate in "$(command -v compute-sanitizer)" \
      "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer \
      /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  candidate=$(python3 - <<'EOF'
import glob, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
hits = [p for r in roots for p in glob.glob(f"{r}/nvidia/cu*/compute-sanitizer/compute-sanitizer")]
print(hits[0] if hits else "")
EOF
)
  if [ -z "$candidate" ] && [ -n "${SANITIZER_WHEEL:-}" ]; then
    python3 -m pip install --quiet --no-deps --target "$out/.sanitizer" "$SANITIZER_WHEEL" \
      >"$out/sanitizer-install.log" 2>&1
    candidate=$(ls "$out"/.sanitizer/nvidia/cu*/compute-sanitizer/compute-sanitizer 2>/dev/null \
      | head -n 1)
  fi
  echo "$candidate"
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
if ! arch=$(python3 -c "import torch; assert torch.cuda.is_available(), 'no GPU visible to torch'
print('%d.%d' % torch.cuda.get_device_capability())" 2>"$out/gpu-probe.log"); then
  echo "no usable GPU: $(tail -n 1 "$out/gpu-probe.log")" | tee -a "$out/summary.txt"
  exit 1
fi
echo "GPU compute capability $arch" | tee -a "$out/summary.txt"

step build "${BUILD_TIMEOUT:-240}" env INN_CUDA_BUILD=cuda TORCH_CUDA_ARCH_LIST="$arch" \
  MAX_JOBS="$(nproc)" python3 setup.py build_ext --inplace
step info 60 python3 -m inn_cuda info
step tests "${TESTS_TIMEOUT:-300}" python3 -m pytest python_tests -q -p no:cacheprovider \
  --maxfail=25 --durations=15
sanitizer=$(find_sanitizer)
if [[ ",${SKIP:-}," == *",sanitizer,"* ]]; then
  printf '%-20s %-26s\n' sanitizer "skipped (SKIP)" >>"$out/summary.txt"
elif [ -z "$sanitizer" ]; then
  echo "compute-sanitizer not found (see the header of this script: SANITIZER_WHEEL)" \
    | tee "$out/sanitizer.log"
  printf '%-20s %-26s\n' sanitizer "NOT RUN: no compute-sanitizer" >>"$out/summary.txt"
  status=1
else
  # Without the caching allocator every tensor is its own allocation, so memcheck sees an
  # access past a tensor's end instead of landing in a neighbour inside a pooled block.
  for tool in memcheck racecheck; do
    step "sanitizer-$tool" "${SANITIZER_TIMEOUT:-120}" env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      "$sanitizer" --tool "$tool" --error-exitcode 1 python3 benchmarks/sanitizer_cases.py
  done
fi
step bench "${BENCH_TIMEOUT:-240}" python3 benchmarks/run.py --quick --out "$out/bench"
echo "== summary ($out/summary.txt)"
cat "$out/summary.txt"
exit $status
