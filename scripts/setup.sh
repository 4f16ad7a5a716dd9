#!/usr/bin/env bash
# Installs what layermount needs on Debian 12 (idempotent) and builds it.
#   scripts/setup.sh [--no-build] [--release]
# Packages: build deps (libfuse3-dev, libxxhash-dev, libarchive-dev, libzstd-dev, libssl-dev,
# libdeflate-dev, pkg-config), runtime (fuse3), and what tests, demo and benchmarks use (attr,
# libcap2-bin, fuse-overlayfs, python3, debootstrap, rsync, umoci, zstd, hyperfine, util-linux).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD=1 CONFIG=debug
for a in "$@"; do
  case "$a" in
    --no-build) BUILD= ;;
    --release) CONFIG=release ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option $a" >&2; exit 64 ;;
  esac
done

PACKAGES=(libfuse3-dev fuse3 libxxhash-dev libarchive-dev libzstd-dev zlib1g-dev libssl-dev libdeflate-dev pkg-config
          attr libcap2-bin fuse-overlayfs python3 debootstrap rsync umoci zstd hyperfine
          util-linux procps psmisc kmod)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Kernel pieces the tests compare against.
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw fuse /proc/filesystems || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || echo "setup: warning: /dev/fuse is missing; mounts will fail" >&2

if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi
command -v swift >/dev/null || { echo "setup: swift not found (expected /opt/swift/usr/bin)" >&2; exit 1; }

if [ -n "$BUILD" ]; then
  mkdir -p .build
  build_status=0
  swift build -c "$CONFIG" >.build/setup-build.log 2>&1 || build_status=$?
  grep -Ev '^\[[0-9]+/[0-9]+\]' .build/setup-build.log || true
  test "$build_status" = 0
fi
