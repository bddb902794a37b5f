#!/usr/bin/env bash
# The GPU measurements of bench/gpu.py as prepared runs for a lent device machine (its Python has torch,
# torchvision and scikit-learn, which is all these need; PYTHONPATH=. finds augworth through its links).
#
#   bash bench/gpu_device.sh step      # the GPU tests, steps/s eager vs graph, the profile, accuracy (~4 min)
#   bash bench/gpu_device.sh packing   # 1, 2, 4, 8 cells per GPU for ResNet-18 w64 and w16 and small_cnn (~6 min)
#
# The minutes are estimates from the H200 rates in issue 28, not measurements. Each writes its logs and JSON
# rows to $OUT (the device tool's folder that comes back), or to ./gpu-out without one.
set -uo pipefail
export PYTHONPATH=. PYTHONUNBUFFERED=1
out=${OUT:-gpu-out}
mkdir -p "$out"
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/device.txt"
case "${1:-step}" in
  step)
    timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_graph_step.py 2>&1 | tee "$out/tests.log"
    timeout 330 python3 -m bench.gpu --parts step,profile,accuracy --steps 600 --warmup 100 \
      --out "$out/step.json" 2>&1 | tee "$out/step.log"
    ;;
  packing)
    timeout 540 python3 -m bench.gpu --parts packing --steps 200 --warmup 40 --pool 10000 --packing 1,2,4,8 \
      --out "$out/packing.json" 2>&1 | tee "$out/packing.log"
    ;;
  *) echo "usage: bash bench/gpu_device.sh step|packing" >&2; exit 2 ;;
esac
