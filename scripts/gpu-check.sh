#!/bin/bash
# The first run of the GPU backends on a real NVIDIA GPU (x86_64 Linux with the NVIDIA driver):
# what whoever next has such a machine runs, from a checkout where `make fetch` has put the models
# and footage into .cache. It
#   1. makes a venv of its own (.venv-gpu; $RVA_GPU_VENV for another) with RVA's dependencies and
#      the pinned GPU wheels of scripts/gpu-requirements.txt (onnxruntime-gpu in place of
#      onnxruntime, TensorRT 10, CUDA 12.9 and cuDNN 9 as wheels). A machine without PyPI gives
#      a folder of those wheels: --wheels DIR (pip download -r scripts/gpu-requirements.txt and
#      the project's own requirements, elsewhere);
#   2. runs the cross-backend test (tests/models/test_onnx_backend.py -k gpu_backend) with the
#      GPU required: a backend that cannot load fails instead of skipping;
#   3. measures (scripts/gpu-measure.py): the TensorRT engine's build time and cached load,
#      ms/frame at 512x512 for ONNX Runtime on the CPU, on CUDA/TensorRT and for the tensorrt
#      backend, and the GPU backends' counts against the CPU's on the labelled frames;
#   4. runs `rva bench` with gear.backend = tensorrt, gear.device = cuda.
# Everything it prints also goes to gpu-check.log (or $RVA_GPU_LOG). Without an NVIDIA GPU it
# stops at once, saying so. Written, not yet run on a GPU.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
venv=${RVA_GPU_VENV:-$root/.venv-gpu}
log=${RVA_GPU_LOG:-$root/gpu-check.log}
cache=${RVA_CACHE:-$root/.cache}
bench_seconds=${RVA_GPU_BENCH_SECONDS:-20}
wheels=

die() {
    echo "gpu-check: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case $1 in
        --wheels) wheels=$(cd "${2:?--wheels needs a folder}" && pwd); shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (usage: scripts/gpu-check.sh [--wheels DIR])" ;;
    esac
done

[ "$(uname -m)" = x86_64 ] ||
    die "the pinned wheels are for x86_64; on a Jetson use docs/jetson.md's self-check"
if [ ! -e /dev/nvidia0 ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    die "no NVIDIA GPU here (/dev/nvidia0 missing and no nvidia-smi): run this on a machine with one"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi sees no GPU (is the NVIDIA driver loaded?)"
fi
video=$cache/footage/vtest.avi
[ -f "$video" ] || die "$video missing: run make fetch first"
[ -d "$cache/models/yolov3-tiny" ] || die "$cache/models/yolov3-tiny missing: run make fetch first"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed"

exec > >(tee "$log") 2>&1
echo "gpu-check: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo 'no git')"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>/dev/null || true

pip_args=(--quiet --disable-pip-version-check)
if [ -n "$wheels" ]; then
    pip_args+=(--no-index --find-links "$wheels")
fi
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
py=$venv/bin/python
echo "== installing RVA's dependencies and the GPU wheels into $venv"
"$py" -m pip install "${pip_args[@]}" "${root}[dev]"
# onnxruntime and onnxruntime-gpu are the same module (the same files): the CPU one, a
# dependency of RVA, goes, and the GPU one is installed afresh (on a second run too).
"$py" -m pip uninstall --quiet --yes onnxruntime onnxruntime-gpu
"$py" -m pip install "${pip_args[@]}" -r "$here/gpu-requirements.txt"
# The checkout's code, not the copy pip installed (as `make` runs it).
export PYTHONPATH=$root RVA_CACHE=$cache RVA_MODEL_CACHE=$cache/models RVA_GPU_REQUIRED=1
"$py" - <<'EOF'
import onnxruntime, tensorrt
print(f"onnxruntime {onnxruntime.__version__}: {onnxruntime.get_available_providers()}")
print(f"tensorrt {tensorrt.__version__}")
EOF

status=0
echo "== cross-backend test (GPU backends against OpenCV on the CPU)"
(cd "$root" && "$py" -m pytest tests/models/test_onnx_backend.py tests/models/test_gpu_backend.py \
    -k "gpu_backend or provider or engine" -p no:cacheprovider -q -rs -s) || status=1

echo "== measurements at 512x512 (one JSON object per line)"
"$py" "$here/gpu-measure.py" --video "$video" || status=1

echo "== rva bench on the tensorrt backend"
config=$(mktemp --suffix=.toml)
trap 'rm -f "$config"' EXIT
printf '[cameras.0]\nsource = "%s"\n[gear]\nbackend = "tensorrt"\ndevice = "cuda"\n' "$video" > "$config"
"$py" -m rva --config "$config" config check || status=1
"$py" -m rva --config "$config" bench --seconds "$bench_seconds" --slices 2 --no-still || status=1

if [ "$status" -eq 0 ]; then
    echo "gpu-check: all passed; the log is $log: its figures go into README/docs/models.md"
else
    echo "gpu-check: FAILED (see above); the log is $log"
fi
exit "$status"
