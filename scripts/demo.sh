#!/usr/bin/env bash
# The main job on real data: set up, build, build (or reuse) a real Debian layer stack,
# mount it with layermount, show the merged tree, unmount.
#   scripts/demo.sh
# Env: LAYERMOUNT_CORPUS (default /var/tmp/layermount-corpus) holds the stack.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO"
scripts/setup.sh --release
echo "demo: not wired up yet"
