#!/usr/bin/env bash
# Installs what a fresh machine needs to build and test Sigma. Idempotent.
set -euo pipefail
if ! pkg-config --exists libcrypto 2>/dev/null; then
    # OpenSSL is a test oracle for the AES kernels (never on the inference path).
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config
fi
