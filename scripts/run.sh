#!/usr/bin/env bash
# Builds bt86 (see setup.sh) and runs the default guest with statistics.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
exec build/bt86 --stats build/samples/hello_user.elf
