#!/usr/bin/env bash
# Installs what bt86 needs to build (Debian 12 packages, only the missing
# ones) and then configures and builds it into build/.
# qemu-system-x86 (for comparison runs) is optional and not installed here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(build-essential cmake libzydis-dev libasmjit-dev libxbyak-dev libspdlog-dev
          libgtest-dev libgmock-dev libbenchmark-dev gcc-multilib g++-multilib nasm)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg -s "$p" >/dev/null 2>&1; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} > 0)); then
  as_root=()
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
      as_root=(sudo)
    else
      echo "setup.sh: missing packages (${missing[*]}) and not root; install them as root" >&2
      exit 1
    fi
  fi
  echo "setup.sh: installing ${missing[*]}"
  # A mirror in mid-sync can make one package list fail; the install below
  # still fails loudly if a package really cannot be had.
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update ||
    echo "setup.sh: apt-get update reported errors; trying the install with the lists it has" >&2
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build
cmake --build build -j"$(nproc)"
