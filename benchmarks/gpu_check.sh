#!/usr/bin/env bash
# GPU check kit (issue 19 item 6): SPEC B1 (fp16) and B2 (bf16) at published size on one CUDA GPU, one
# table + JSON, in about 4 minutes, with no network: what the image lacks (diffusers, and the locked
# transformers/peft/accelerate/...) is installed from benchmarks/gpu_wheels/, which
# benchmarks/gpu_check_prepare.sh fills beforehand together with diffusers' training script.
#
#   bash benchmarks/gpu_check.sh [--out PATH] [gpu_check.py options]   # GPU machine: installs the wheels first
#   bash benchmarks/gpu_check.sh --dry-run [--out PATH]                  # CPU, tiny models, this checkout's env
#   bash benchmarks/gpu_check.sh --dry-run --with-wheels                 # the same, on the carried wheels
#
# Python: $PYTHON, else .venv/bin/python when there is one, else python3 (the GPU image's).
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0 with_wheels=0 args=()
for a in "$@"; do
  case "$a" in
  --dry-run) dry=1 args+=("$a") ;;
  --with-wheels) with_wheels=1 ;;
  *) args+=("$a") ;;
  esac
done
py=${PYTHON:-python3}
[[ -n "${PYTHON:-}" || ! -x .venv/bin/python ]] || py=.venv/bin/python

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_NO_ADVISORY_WARNINGS=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" # vlgen from this working tree, installed or not
if [[ $dry = 0 || $with_wheels = 1 ]]; then
  shopt -s nullglob
  wheels=(benchmarks/gpu_wheels/*.whl)
  if [[ ${#wheels[@]} = 0 ]]; then
    echo "gpu_check: no wheels in benchmarks/gpu_wheels/: run benchmarks/gpu_check_prepare.sh first and carry that folder" >&2
    exit 2
  fi
  site=${TMPDIR:-/tmp}/vlgen-gpu-check-site
  rm -rf "$site"
  t=$SECONDS
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
    --target "$site" "${wheels[@]}"
  echo "installed ${#wheels[@]} wheels into $site in $((SECONDS - t)) s" >&2
  export PYTHONPATH="$PWD/src:$site${PYTHONPATH#"$PWD/src"}"
fi
exec "$py" benchmarks/gpu_check.py "${args[@]}"
