#!/usr/bin/env bash
# Builds bt86 (see setup.sh) and runs every test, each with a time limit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
ctest --test-dir build --output-on-failure -j2 --timeout 300
