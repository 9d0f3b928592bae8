#!/usr/bin/env bash
# Fill benchmarks/gpu_wheels/ (git-ignored: never committed) with what benchmarks/gpu_check.sh needs on a GPU
# machine that has no network and no package registry, then check that it and the working tree fit the 64 MiB
# that travel with a `run` call.
#
#   bash benchmarks/gpu_check_prepare.sh [--diffusers-clone DIR] [--check]
#
# - Wheels (pip download --no-deps) of the versions requirements.lock pins for the GPU image's Python 3.12 on
#   x86-64 Linux: diffusers (absent there) and transformers, tokenizers, peft, accelerate, safetensors (there,
#   but maybe at other versions). The image's own torch, torchvision, numpy, pillow and huggingface-hub (1.33,
#   the lock's pin below Python 3.11; hub 2.x would also need httpx2) stay. Wheels of other versions are removed
#   (pip refuses two versions of one package).
# - diffusers' examples/dreambooth/train_dreambooth_lora_sdxl.py at commit 58eb52c (the SPEC's), unmodified,
#   from a local clone of huggingface/diffusers (DIR or $DIFFUSERS_CLONE; a work tree or a bare git dir).
#   Kept from an earlier run when no clone is given.
# - --check: then the dry run on the installed wheels (gpu_check.sh --dry-run --with-wheels, about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."

dest=benchmarks/gpu_wheels
py=${PYTHON:-.venv/bin/python}
commit=58eb52c
script=examples/dreambooth/train_dreambooth_lora_sdxl.py
packages=(diffusers transformers tokenizers peft accelerate safetensors)
clone=${DIFFUSERS_CLONE:-} check=0
while [[ $# -gt 0 ]]; do
  case "$1" in
  --diffusers-clone) clone=$2 && shift 2 ;;
  --check) check=1 && shift ;;
  *) echo "usage: $0 [--diffusers-clone DIR] [--check]" >&2 && exit 2 ;;
  esac
done

# name==version for Python 3.12 / x86-64 Linux, from the lock's environment markers
mapfile -t pins < <("$py" - "${packages[@]}" <<'EOF'
import sys
from packaging.requirements import Requirement

env = {"python_version": "3.12", "python_full_version": "3.12.3", "platform_machine": "x86_64",
       "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "implementation_name": "cpython",
       "platform_python_implementation": "CPython"}
want, found = {n.lower() for n in sys.argv[1:]}, {}
for line in open("requirements.lock", encoding="utf-8"):
    line = line.strip()
    if line and not line.startswith(("#", "-")):
        req = Requirement(line)
        if req.name.lower() in want and (req.marker is None or req.marker.evaluate(env)):
            found[req.name.lower()] = f"{req.name}{req.specifier}"
if want - found.keys():
    sys.exit(f"requirements.lock: no pin for {', '.join(sorted(want - found.keys()))} under Python 3.12")
print("\n".join(found[n] for n in sorted(found)))
EOF
)
mkdir -p "$dest"
echo "downloading ${pins[*]} into $dest" >&2
"$py" -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check --python-version 3.12 \
  --implementation cp --abi cp312 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$dest" "${pins[@]}"
shopt -s nullglob
for whl in "$dest"/*.whl; do # keep exactly the pinned versions
  base=$(basename "$whl") keep=0
  for pin in "${pins[@]}"; do
    name=${pin%%==*} version=${pin#*==}
    [[ ${base,,} == "${name//-/_}-${version}-"* ]] && keep=1
  done
  [[ $keep = 1 ]] || { echo "removing $base (not pinned)" >&2 && rm -f "$whl"; }
done

if [[ -n "$clone" ]]; then
  gitdir=$clone
  [[ -d "$clone/.git" ]] && gitdir=$clone/.git
  git --git-dir="$gitdir" show "$commit:$script" >"$dest/train_dreambooth_lora_sdxl.py.tmp"
  mv "$dest/train_dreambooth_lora_sdxl.py.tmp" "$dest/train_dreambooth_lora_sdxl.py"
  echo "diffusers' $script at $commit -> $dest/" >&2
elif [[ ! -f "$dest/train_dreambooth_lora_sdxl.py" ]]; then
  echo "no diffusers clone given (--diffusers-clone DIR or \$DIFFUSERS_CLONE) and no $dest/train_dreambooth_lora_sdxl.py" >&2
  exit 1
fi

# What a `run` call sends: tracked and untracked-not-ignored files, plus the carried folder; 64 MiB at most.
tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}' || true)
carried=$(du -cb "$dest" | tail -1 | cut -f1)
total=$((tree + carried)) limit=$((64 * 1024 * 1024))
awk -v t="$tree" -v c="$carried" -v d="$dest" 'BEGIN {
  printf "working tree %.1f MiB + %s %.1f MiB = %.1f MiB (limit 64 MiB)\n", t / 2^20, d, c / 2^20, (t + c) / 2^20 }'
if ((total > limit)); then
  echo "over the 64 MiB that travel with a run call: leave some wheels to the GPU image" >&2
  exit 1
fi
if [[ $check = 1 ]]; then
  bash benchmarks/gpu_check.sh --dry-run --with-wheels
fi
