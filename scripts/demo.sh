#!/usr/bin/env bash
# The main job on real data: set up, build, build (or reuse) a real Debian layer stack,
# mount it with layermount, show the merged tree, unmount.
#   scripts/demo.sh
# Env: LAYERMOUNT_CORPUS (default /var/tmp/layermount-corpus) holds the stack.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO"
scripts/setup.sh --release
BIN=$(swift build -c release --show-bin-path)
LM="$BIN/layermount"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

say "the real layer stack (debootstrap + two docker-build-like steps): $CORPUS_DIR"
if [ ! -e "$CORPUS_DIR/.done-layer3-oci" ]; then
  echo "building it (about a minute; needs the Debian mirror)..."
  flock "$CORPUS_DIR.lock" "$SHARED/corpus/make-layers.sh" "$CORPUS_DIR" | tail -n 5
fi
sed -n '1,9p' "$CORPUS_DIR/summary.txt"

WORK=$(mktemp -d /var/tmp/layermount-demo.XXXXXX)
MNT=$WORK/merged
OCI=$WORK/merged-oci
mkdir -p "$MNT" "$OCI"
cleanup() {
  for m in "$MNT" "$OCI"; do
    if mountpoint -q "$m" 2>/dev/null; then "$LM" --unmount "$m" 2>/dev/null || fusermount3 -uz "$m"; fi
  done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

say "mount it: layers bottom first; the command returns once the mount is usable"
L="$CORPUS_DIR"
run "$LM" "$L/layer1" "$L/layer2" "$L/layer3" "$MNT"
run findmnt -no SOURCE,FSTYPE,OPTIONS "$MNT"

say "the merged tree"
run ls "$MNT"
run ls -l "$MNT/app" "$MNT/usr/bin/python3"
run head -n 3 "$MNT/etc/os-release"
printf '$ find %s | wc -l\n' "$MNT"; find "$MNT" | wc -l
printf '$ du -sh --apparent-size %s\n' "$MNT"; du -sh --apparent-size "$MNT"

say "which layer each file comes from (read-only xattr user.layermount.layer = INDEX:PATH)"
for f in bin/bash usr/bin/python3.11 app/etc etc/passwd; do
  printf '%-22s %s\n' "/$f" "$(getfattr --absolute-names --only-values -n user.layermount.layer "$MNT/$f")"
done

say "whiteouts from layer 3 (rm -rf /usr/share/doc/* in its build step) hide layer 1 and 2 files"
printf 'layer1 has %s entries in usr/share/doc, the merged tree %s\n' \
  "$(ls "$L/layer1/usr/share/doc" | wc -l)" "$(ls "$MNT/usr/share/doc" | wc -l)"
run ls -A "$MNT/usr/share/doc"

say "read-only: writes fail with EROFS"
printf '$ touch %s/new\n' "$MNT"; touch "$MNT/new" 2>&1 || true

say "the same stack in OCI whiteout format (.wh. files) mounts to the same tree"
run "$LM" -o "lowerdir=$L/layer3-oci:$L/layer2-oci:$L/layer1-oci" "$OCI"
run python3 scripts/treedump.py compare "$MNT" "$OCI" "$L/rootfs3" --mtime

say "unmount"
run "$LM" --unmount "$OCI"
run "$LM" --unmount "$MNT"
mountpoint -q "$MNT" && echo "still mounted?!" || echo "unmounted; the daemons exit by themselves"
