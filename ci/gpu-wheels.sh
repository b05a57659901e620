#!/usr/bin/env bash
# Fetch, on a machine with a package index, the wheels that a GPU machine without one needs to run
# ci/gpu-check.sh: interp-tests' dependencies that its image lacks (ci/gpu-wheels.txt), for CPython 3.12 on
# x86-64 Linux, into .whl/ (git-ignored; about 40 MB). Carry .whl/ to the GPU machine with the working tree;
# ci/gpu-check.sh installs from it with `pip --no-index`.
#
#   ci/gpu-wheels.sh [DIR]       (default .whl; PYVER=3.12 to target another CPython)
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
pyver=${PYVER:-3.12}
mkdir -p "$dest"
PY=${PYTHON:-python3}
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux_2_5_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
# pure-Python packages published only as sdists are built into wheels here (any Python builds them alike)
sdist_only='transformers-stream-generator|py2store'
sdists=$(grep -E "^($sdist_only)==" ci/gpu-wheels.txt || true)
grep -vE "^(#|\$|($sdist_only)==)" ci/gpu-wheels.txt >"$dest/.binary.txt"
"$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$pyver" "${platforms[@]}" \
  -d "$dest" -r "$dest/.binary.txt"
if [ -n "$sdists" ]; then
  # shellcheck disable=SC2086
  "$PY" -m pip wheel -q --no-deps -w "$dest" $sdists
fi
rm -f "$dest/.binary.txt"
n=$(ls "$dest"/*.whl | wc -l)
want=$(grep -cvE '^(#|$)' ci/gpu-wheels.txt)
[ "$n" -eq "$want" ] || { echo "gpu-wheels: $dest holds $n wheels, ci/gpu-wheels.txt names $want: remove stale ones and rerun" >&2; exit 1; }
echo "gpu-wheels: $n wheels, $(du -sh "$dest" | cut -f1), in $dest"
