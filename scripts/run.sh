#!/usr/bin/env bash
# Builds bt86 (see setup.sh), makes the Linux guest image from Debian
# packages (samples/linux/make-image.sh, cached) and boots it: Debian 12's
# i386 kernel with a busybox shell on this terminal. Ctrl-A x quits;
# `poweroff -f` in the guest ends bt86 with status 0. Extra arguments go to
# bt86 (e.g. --stats).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
samples/linux/make-image.sh build/guest
exec build/bt86 "$@" --initrd build/guest/initrd.cpio.gz --append "console=ttyS0 quiet" build/guest/vmlinuz
