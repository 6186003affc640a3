#!/usr/bin/env bash
# Builds the default Linux guest from Debian packages only:
#   linux-image-686 (Debian 12's i386 non-PAE kernel) and busybox-static:i386,
# fetched with apt-get download and unpacked with dpkg-deb -x, then an
# initramfs with the busybox links and an /init that mounts proc, sys and
# devtmpfs and starts a shell on the console.
#
# Output (cached; rebuilt only when missing or when the packages change):
#   $OUT/vmlinuz   $OUT/initrd.cpio.gz   $OUT/versions
# The initramfs also holds /bench: the static i386 benchmark programs of
# samples/linux/bench (built here with gcc -m32 -static), and /init runs
# /etc/bt86/NAME.sh instead of a shell when the kernel command line has
# bt86.script=NAME (used by bench/linux/measure.sh), then powers off.
# Usage: samples/linux/make-image.sh [OUT]   (default OUT: build/guest)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/build/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work="$out/work"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# A mirror in mid-sync makes apt-get update fail for one list; what matters
# is whether the packages can be resolved afterwards, checked below.
apt_update() {
  as_root apt-get update -qq || echo "make-image: apt-get update reported errors; continuing with the lists it has" >&2
}

# Tools this script needs beyond a minimal Debian.
for tool in cpio gzip; do
  command -v "$tool" >/dev/null || { apt_update; as_root apt-get install -y -qq --no-install-recommends "$tool"; }
done

# i386 packages need the architecture enabled and a package list for it.
if ! dpkg --print-foreign-architectures | grep -qx i386; then
  echo "make-image: enabling the i386 architecture for apt (dpkg --add-architecture i386)"
  as_root dpkg --add-architecture i386
  apt_update
fi
resolve() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
kver=$(resolve linux-image-686:i386)
if [ -z "$kver" ] || [ "$kver" = "(none)" ]; then
  apt_update
  kver=$(resolve linux-image-686:i386)
fi
bver=$(resolve busybox-static:i386)
[ -n "$kver" ] && [ "$kver" != "(none)" ] || { echo "make-image: linux-image-686:i386 not found in apt" >&2; exit 1; }
[ -n "$bver" ] && [ "$bver" != "(none)" ] || { echo "make-image: busybox-static:i386 not found in apt" >&2; exit 1; }

# linux-image-686 is a metapackage: its dependency names the real kernel.
kpkg=$(apt-cache depends "linux-image-686:i386=$kver" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
kpkg=${kpkg%:i386}
[ -n "$kpkg" ] || { echo "make-image: cannot find the kernel package behind linux-image-686" >&2; exit 1; }
bench_src="$root/samples/linux/bench"
bench_hash=$(cat "$bench_src"/*.c "$0" | sha256sum | cut -c1-16)
want="$kpkg $(resolve "$kpkg:i386") busybox-static $bver bench $bench_hash"

if [ -f "$out/versions" ] && [ "$(cat "$out/versions")" = "$want" ] &&
   [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.cpio.gz" ]; then
  echo "make-image: cached ($want)"
  exit 0
fi

rm -rf "$work"
mkdir -p "$work/debs" "$work/kernel" "$work/busybox" "$work/initramfs"
(cd "$work/debs" && apt-get download -q "$kpkg:i386" "busybox-static:i386")
dpkg-deb -x "$work"/debs/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/debs/busybox-static_*.deb "$work/busybox"

vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-* | head -n 1)
cp "$vmlinuz" "$out/vmlinuz"

# The initramfs: busybox and one link per applet it offers.
ir="$work/initramfs"
mkdir -p "$ir"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,root,etc}
cp "$work/busybox/bin/busybox" "$ir/bin/busybox"
for applet in $("$work/busybox/bin/busybox" --list-full 2>/dev/null || true); do
  [ -e "$ir/$applet" ] || ln -s /bin/busybox "$ir/$applet"
done
# A 64-bit host may not run the i386 busybox to list applets: fall back.
if [ ! -e "$ir/bin/sh" ]; then
  for a in sh ls cat echo dmesg ps top mount umount mkdir rm cp mv ln dd sleep uname \
           poweroff reboot halt seq wc head tail grep sed awk sort uniq yes true false \
           free df du env kill printf test expr sync stty clear; do
    ln -sf busybox "$ir/bin/$a"
  done
  for a in poweroff reboot halt; do ln -sf ../bin/busybox "$ir/sbin/$a"; done
fi
mkdir -p "$ir/bench" "$ir/etc/bt86"
for src in "$bench_src"/*.c; do
  gcc -m32 -static -O2 -o "$ir/bench/$(basename "$src" .c)" "$src"
done
cat > "$ir/etc/bt86/bench.sh" <<'BENCH'
#!/bin/sh
# Run by /init for bt86.script=bench: the guest rows of bench/linux/measure.sh.
/bench/sieve
/bench/firsttouch
/bench/forkwait
/bench/getppid
BENCH
cat > "$ir/etc/bt86/boot.sh" <<'BOOT'
#!/bin/sh
# Run by /init for bt86.script=boot: boot, say so, power off (boot time).
true
BOOT
chmod 755 "$ir/etc/bt86/"*.sh
cat > "$ir/init" <<'INIT'
#!/bin/sh
# bt86 guest init: mount the pseudo file systems and start a shell.
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null || mdev -s
echo "bt86 guest: $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "bt86-guest-ready"
for word in $(cat /proc/cmdline); do
  case "$word" in
    bt86.script=*)
      script=/etc/bt86/${word#bt86.script=}.sh
      [ -x "$script" ] && "$script"
      echo "bt86-script-done"
      poweroff -f
      ;;
  esac
done
exec setsid cttyhack /bin/sh -l
INIT
chmod 755 "$ir/init"
echo 'export PS1="# "' > "$ir/etc/profile"
(cd "$ir" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.cpio.gz"
echo "$want" > "$out/versions"
rm -rf "$work"
echo "make-image: $out/vmlinuz and $out/initrd.cpio.gz ($want)"
