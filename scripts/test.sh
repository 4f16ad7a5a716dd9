#!/usr/bin/env bash
# Sets up a fresh machine, builds, and runs every test:
#   1. style checks (only OverlayFS/FUSE imports CFuse; swift format lint --strict)
#   2. swift test (unit, CLI and real FUSE mount tests)
#   3. the conformance harness (../shared/conformance) against layermount, both whiteout formats
#   4. the diff scenarios (../shared/diffcases/check-engine.sh) against layerdiff, applied both by
#      the spec applier and by umoci
#   5. Benchmarks/ builds (scripts/bench.sh runs it; nothing is timed in the tests)
# Usage: scripts/test.sh [--quick]   (--quick: steps 1-2 only)
# Env:   LAYERMOUNT_FULL_CORPUS=1 also runs the tests on the full Debian stack (slow; see README).
#        LAYERDIFF_ROUNDTRIPS=N random diff round trips (default 300), LAYERDIFF_SEED=S first seed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO"

QUICK=
for a in "$@"; do
  case "$a" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown option $a" >&2; exit 64 ;;
  esac
done

step() { printf '\n=== %s\n' "$*"; }

# Tests unmount what they mount, even on failure; a test process that crashes cannot. Whatever
# is still mounted below the tests' scratch directories at exit is unmounted and reported.
cleanup_test_mounts() {
  local base=${LAYERMOUNT_TEST_TMP:-/var/tmp} mp leaked=()
  while read -r mp; do leaked+=("$mp"); done < <(
    awk -v b="$base/" 'index($5, b "layermount-test.") == 1 || index($5, b "layermount-kovl.") == 1 \
      || index($5, b "layerdiff-") == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  [ ${#leaked[@]} -eq 0 ] && return 0
  echo "test.sh: unmounting ${#leaked[@]} mount(s) left by tests: ${leaked[*]}" >&2
  for mp in "${leaked[@]}"; do umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true; done
}
trap cleanup_test_mounts EXIT

step "setup"
scripts/setup.sh --no-build

step "style: CFuse only in OverlayFS/FUSE"
bad=$(grep -rl '^import CFuse' Sources | grep -v '^Sources/OverlayFS/FUSE/' || true)
if [ -n "$bad" ]; then echo "these files import CFuse outside OverlayFS/FUSE:"; echo "$bad"; exit 1; fi
step "style: swift format lint --strict"
swift format lint --strict -r Sources Tests Package.swift Benchmarks/Sources Benchmarks/Package.swift

step "build"
# (not `build | grep || true`: with pipefail a failed build would run `true` and pass)
mkdir -p .build
build_status=0
swift build --build-tests >.build/test-build.log 2>&1 || build_status=$?
grep -Ev '^\[[0-9]+/[0-9]+\]|^Building|^Build complete|^Compiling' .build/test-build.log || true
test "$build_status" = 0

step "swift test"
# The whole log stays in .build/swift-test.log; print every failure and the summary (a bare
# tail would hide failures reported early).
test_status=0
swift test --skip-build --parallel >.build/swift-test.log 2>&1 || test_status=$?
grep -E '✘|recorded an issue|Fatal error|error:|^real pair' .build/swift-test.log | head -n 200 || true
tail -n 3 .build/swift-test.log
test "$test_status" = 0

[ -n "$QUICK" ] && exit 0

BIN=$(swift build --show-bin-path)
export PATH=$BIN:$PATH

step "conformance: layermount vs kernel overlayfs (read-only cases, both whiteout formats)"
# {lowers} is top first, so the -o lowerdir= form; read-write cases need an upper layer (later).
RO_CASES=$(cd "$SHARED/conformance/cases" && ls ro_*.sh)
# A fresh results directory per run (two runs at once must not share one); kept on failure.
CONFORMANCE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/layermount-conformance.XXXXXX")
for fmt in overlay oci; do
  # shellcheck disable=SC2086
  LAYERMOUNT_CMD='layermount -o lowerdir={lowers} {mnt}' LAYERMOUNT_WHITEOUT=$fmt \
    "$SHARED/conformance/harness.sh" -q -r "$CONFORMANCE_DIR/$fmt" -e layermount $RO_CASES \
    | grep -v '^PASS'
  test "${PIPESTATUS[0]}" = 0 || { echo "conformance results kept in $CONFORMANCE_DIR"; exit 1; }
done
rm -rf "$CONFORMANCE_DIR"
step "diff: layerdiff on the 43 ../shared/diffcases scenarios (round trip, also applied by umoci; MINIMAL)"
# MINIMAL entry counts, exact round trips (the spec applier and umoci), refusals where no OCI
# layer can hold the change. The seeded random round trips (LAYERDIFF_ROUNDTRIPS, default 300;
# set it to thousands for a long run) and the real rootfs pair run in `swift test` above.
LAYERDIFF_CMD="$BIN/layerdiff {a} {b} -o {out}" TMPDIR="${TMPDIR:-/var/tmp}" \
  "$SHARED/diffcases/check-engine.sh" -q --umoci-apply | grep -v '^PASS'
test "${PIPESTATUS[0]}" = 0
step "Benchmarks/ builds (scripts/bench.sh runs it; nothing is timed here)"
bench_status=0
swift build --package-path Benchmarks >.build/bench-build.log 2>&1 || bench_status=$?
grep -Ev '^\[[0-9]+/[0-9]+\]|^Building|^Build complete|^Compiling|^Write' .build/bench-build.log || true
test "$bench_status" = 0

echo "all tests passed"
