#!/usr/bin/env bash
# The CUDA checks, run on a lent GPU machine (H100/H200, no network) from the repo root:
#   .whl/  wheels for what its image lacks (PyOpenGL, pyzmq, pygltflib, mediapipe 0.10.14, protobuf 4)
#   .gl/   glvnd/EGL loader .debs (see the device tool's README)
#   .device-cache/samples/  the sample clips (no network there to fetch them)
# Writes logs and JSON into $OUT (or ./out/device). Not used by CI: CI has no GPU.
set -uo pipefail
OUT=${OUT:-out/device}
mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HEADCAST_CACHE=$PWD/.device-cache EGL_PLATFORM=surfaceless
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
hc() { python3 -m tools.cli "$@"; }
step=${1:-all}
if [ "$step" = all ] || [ "$step" = tests ]; then
  python3 -m pytest -q -p no:cacheprovider -m cuda tests 2>&1 | tee "$OUT/pytest_cuda.log" | tail -15
fi
if [ "$step" = all ] || [ "$step" = build ]; then
  clip=.device-cache/samples/WolfgangLanger_Pexels.mp4
  /usr/bin/time -v python3 -m tools.cli build-avatar --video "$clip" --out /tmp/avatar-cuda --device cuda \
      > "$OUT/build_cuda.log" 2> "$OUT/build_cuda.time"; tail -25 "$OUT/build_cuda.log"; grep -E "Elapsed|Maximum resident" "$OUT/build_cuda.time"
  cp /tmp/avatar-cuda/avatar.json "$OUT/avatar_cuda.json" 2>/dev/null
fi
if [ "$step" = all ] || [ "$step" = bench ]; then
  av=/tmp/avatar-cuda; [ -f $av/avatar.json ] || av=""
  hc bench inference ${av:+--avatar $av} --device cuda --avatars 1,2,4,8 --res 256,512 --json "$OUT/bench_inference_cuda.json" 2>&1 | tail -30
  hc bench render --json "$OUT/bench_render_cuda.json" 2>&1 | tail -15
fi
