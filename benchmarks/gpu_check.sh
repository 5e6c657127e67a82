#!/usr/bin/env bash
# The one script to run on a machine with an NVIDIA GPU (about 8 minutes): build the extension for
# the local GPU, run the full test suite with the CUDA tests active, run compute-sanitizer
# (memcheck and racecheck) on a small forward/backward of every CUDA op, run the quick benchmark,
# and copy every log and result to one folder.
#
#   benchmarks/gpu_check.sh OUT_DIR
set -uo pipefail
out=${1:?usage: benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
status=0
step() {  # step NAME COMMAND...: run, log to $out/NAME.log, remember failures
  local name=$1; shift
  echo "== $name: $*"
  local start=$SECONDS
  if "$@" >"$out/$name.log" 2>&1; then echo "   ok ($((SECONDS - start)) s)"
  else echo "   FAILED ($((SECONDS - start)) s), see $out/$name.log"; tail -n 20 "$out/$name.log"; status=1; fi
}

nvidia-smi >"$out/nvidia-smi.txt" 2>&1
arch=$(python3 -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
step build env INN_CUDA_BUILD=cuda TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS="$(nproc)" \
  python3 setup.py build_ext --inplace
step info python3 -m inn_cuda info
step tests python3 -m pytest python_tests -q -x --durations=15
sanitizer=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
for tool in memcheck racecheck; do
  step "sanitizer-$tool" "$sanitizer" --tool "$tool" --error-exitcode 1 \
    python3 benchmarks/sanitizer_cases.py
done
step bench python3 benchmarks/run.py --quick --out "$out/bench"
exit $status
