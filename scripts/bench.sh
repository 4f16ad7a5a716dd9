#!/usr/bin/env bash
# Benchmarks (README.md, "Benchmarks"): layermount against kernel overlayfs and fuse-overlayfs,
# layerdiff against diff -rq, rsync and umoci, layermount inspect against find. Prints tables of
# medians and ratios against anchors measured in the same run, then the issue targets met/missed.
#
#   scripts/bench.sh [--quick] [--no-cold] [--samples N] [--cold-samples N] [--list]
#                    [overlay|diff|inspect|requests|all ...] [FILTER ...]
#
#   overlay   mounts of the real Debian stack, a 100k-file synthetic stack and a stack with a
#             1 GiB file: find, ls -lR, tar, stat, random preads, sequential read; warm and cold
#             (caches dropped); daemon RSS per cached inode
#   diff      the real rootfs pair and a 100k-file tree with 1% changes: layerdiff (default,
#             --trust-mtime, -o tar/tar.gz, --upper) vs diff -rq (--no-dereference), rsync -c,
#             rsync, umoci repack
#   inspect   layermount inspect of the stacks vs find -printf of their layers
#   requests  FUSE request counts per workload from -d mounts (untimed; for profiling)
#   all       overlay diff inspect requests (the default)
#   FILTER    run only benchmarks whose name contains it (--list shows the names)
#   --quick   fewer samples (3 warm at most, 1 cold), for iteration
#
# Needs root (mounts, drop_caches). Installs its apt packages (scripts/setup.sh), builds
# layermount, layerdiff and Benchmarks/ in release mode, and builds or reuses the corpora
# outside the repository:
#   LAYERMOUNT_CORPUS      real Debian stack (make-layers.sh; default /var/tmp/layermount-corpus)
#   LAYERMOUNT_BENCH_DATA  synthetic stacks, diff trees, upper dirs, umoci images, results
#                          (default /var/tmp/layermount-bench; about 12 GB; first build ~10 min)
#   LAYERMOUNT_SYNTH_OVERLAY / LAYERMOUNT_SYNTH_OCI  reuse a prebuilt make-synthetic.py stack
#                          (kernel / OCI whiteout format) instead of building one
# Output is also saved in $LAYERMOUNT_BENCH_DATA/results/.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO"

PARTS=() FILTERS=() QUICK= COLD=1 SAMPLES= COLD_SAMPLES= LIST=
COMMAND_LINE="scripts/bench.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    overlay|diff|inspect|requests) PARTS+=("$1") ;;
    all) PARTS+=(overlay diff inspect requests) ;;
    --quick) QUICK=1 ;;
    --no-cold) COLD= ;;
    --samples) SAMPLES=$2; shift ;;
    --cold-samples) COLD_SAMPLES=$2; shift ;;
    --list) LIST=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; FILTERS+=("$@"); break ;;
    -*) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    *) FILTERS+=("$1") ;;
  esac
  shift
done
[ ${#PARTS[@]} -gt 0 ] || PARTS=(overlay diff inspect requests)
want() { local p; for p in "${PARTS[@]}"; do [ "$p" = "$1" ] && return 0; done; return 1; }

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: the benchmark mounts kernel overlayfs and drops caches for cold runs"

DATA=${LAYERMOUNT_BENCH_DATA:-/var/tmp/layermount-bench}
MAKE_SYNTH="$SHARED/corpus/make-synthetic.py"
DIFFTOOLS="$SHARED/diffcases/lib/difftools.py"
mkdir -p "$DATA/results"
WORK=$(mktemp -d /var/tmp/layermount-bench-run.XXXXXX)
SETUP_MNT="$DATA/.mnt"

# Unmount everything below a directory, deepest first (mountinfo field 5).
unmount_below() {
  local mp
  for mp in $(awk -v b="$1" '$5 == b || index($5, b "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    fusermount3 -u "$mp" 2>/dev/null || umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || true
  done
}
cleanup() {
  unmount_below "$WORK"
  unmount_below "$SETUP_MNT"
  if awk -v b="$WORK" 'index($5, b) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    log "warning: mounts remain below $WORK; not removing it"
  else
    rm -rf --one-file-system "$WORK"
  fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ set-up and build
log "setup: apt packages (scripts/setup.sh, plus GNU time for peak RSS)"
scripts/setup.sh --no-build
BENCH_PACKAGES=(time)
for p in "${BENCH_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' && continue
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$p" >/dev/null
done
# build_release [ARGS]: swift build -c release, showing only diagnostics; fails when the build does.
build_release() {
  local status=0 logfile
  logfile=$(mktemp "$WORK/build.XXXXXX")
  swift build -c release "$@" > "$logfile" 2>&1 || status=$?
  grep -Ev '^\[[0-9]+/[0-9]+\]|^Building|^Build complete|^Compiling|^Write' "$logfile" >&2 || true
  [ "$status" = 0 ] || die "swift build -c release $* failed"
}
log "build: layermount, layerdiff (release)"
build_release
BIN=$(swift build -c release --show-bin-path)
log "build: Benchmarks/ (release)"
build_release --package-path Benchmarks
LAYERBENCH="$(swift build -c release --package-path Benchmarks --show-bin-path)/layerbench"

ARGS=(--work "$WORK" --layermount "$BIN/layermount" --layerdiff "$BIN/layerdiff" --raw "$WORK/raw.tsv")
for p in "${PARTS[@]}"; do ARGS+=(--part "$p"); done
if [ -n "$QUICK" ]; then ARGS+=(--samples 3 --min-samples 2 --cold-samples 1 --budget 15); fi
[ -n "$SAMPLES" ] && ARGS+=(--samples "$SAMPLES")
[ -n "$COLD_SAMPLES" ] && ARGS+=(--cold-samples "$COLD_SAMPLES")
[ -n "$COLD" ] || ARGS+=(--no-cold)

# ------------------------------------------------------------------ corpora
# A finished input tree T is marked by T.bench-done next to it (never inside: the benchmarks
# read the trees whole).
done_mark() { [ -e "$1.bench-done" ]; }
mark_done() { touch "$1.bench-done"; }

real_corpus() {
  if [ ! -e "$CORPUS_DIR/.done-layer3-oci" ] || [ ! -e "$CORPUS_DIR/summary.txt" ]; then
    log "corpus: building the real Debian stack in $CORPUS_DIR (make-layers.sh, about a minute)"
    flock "$CORPUS_DIR.lock" "$SHARED/corpus/make-layers.sh" "$CORPUS_DIR" | tail -n 3 >&2
  fi
}

# synth_stack OUT FORMAT: a 100k-file, 3-layer make-synthetic.py stack (its defaults, seed 42).
# A prebuilt stack given through LAYERMOUNT_SYNTH_* is used as it is.
synth_stack() {
  local out=$1 format=$2
  done_mark "$out" && return 0
  if [ "${out%/*}" != "$DATA" ]; then
    [ -e "$out/manifest.json" ] || die "$out: not a make-synthetic.py stack (no manifest.json)"
    return 0
  fi
  log "corpus: make-synthetic.py $out --format $format (100k files, about a minute)"
  python3 "$MAKE_SYNTH" "$out" --format "$format" --force > "$out.log" 2>&1 \
    || { tail -5 "$out.log" >&2; die "make-synthetic.py failed (log: $out.log)"; }
  mark_done "$out"
}

# A benchmark-only stack whose lower layer holds a 1 GiB file (random bytes, not sparse).
big_stack() {
  local out="$DATA/big"
  done_mark "$out" && return 0
  log "corpus: $out (a 1 GiB file in the lower layer of a 2-layer stack)"
  rm -rf "$out"
  mkdir -p "$out/lower/bench" "$out/upper/bench"
  head -c 1G /dev/urandom > "$out/lower/bench/1GiB.bin"
  echo "benchmark-only layer" > "$out/upper/bench/README"
  mark_done "$out"
}

# The diff trees: A = a one-layer 100k-file make-synthetic.py tree; B = A with 1% changes
# (make-synthetic.py --mutate); kernel-overlay upper dirs holding 0.1%, 1% and 10% changes of A
# for layerdiff --upper: each changed tree is copied onto a kernel overlay mount (lower A, empty
# upper) with rsync, which writes only what differs, as a build step would; then unmounted.
DIFF_A="$DATA/diff/a/layer1"
DIFF_B="$DATA/diff/b-1pct"
mutate() {  # DST RATE
  log "corpus: $1 = A with $2 changes (make-synthetic.py --mutate)"
  rm -rf "$1"
  python3 "$MAKE_SYNTH" --mutate "$DIFF_A" "$1" --change-rate "$2" --seed 42 --changelog "$1.changes.tsv" \
    > "$1.log" 2>&1 || { tail -5 "$1.log" >&2; die "make-synthetic.py --mutate failed (log: $1.log)"; }
}
diff_trees() {
  mkdir -p "$DATA/diff"
  if ! done_mark "$DATA/diff/a"; then
    log "corpus: diff tree A (make-synthetic.py --layers 1, 100k files)"
    rm -rf "$DATA"/diff/* "$DATA/umoci-synth100k" "$DATA/umoci-synth100k.bench-done"
    python3 "$MAKE_SYNTH" "$DATA/diff/a" --layers 1 --seed 7 --no-manifest --force > "$DATA/diff/a.log" 2>&1 \
      || { tail -5 "$DATA/diff/a.log" >&2; die "make-synthetic.py failed (log: $DATA/diff/a.log)"; }
    mark_done "$DATA/diff/a"
  fi
  if ! done_mark "$DIFF_B"; then mutate "$DIFF_B" 0.01; mark_done "$DIFF_B"; fi
  local rate label b upper
  for rate in 0.001 0.01 0.1; do
    case $rate in 0.001) label=0.1pct ;; 0.01) label=1pct ;; 0.1) label=10pct ;; esac
    upper="$DATA/diff/upper-$label"
    done_mark "$upper" && continue
    b="$DATA/diff/b-$label"
    [ "$label" = 1pct ] || mutate "$b" "$rate"
    log "corpus: $upper (rsync of a tree with $label changes onto a kernel overlay over A)"
    rm -rf "$upper" "$upper.tmp"
    mkdir -p "$upper.tmp/upper" "$upper.tmp/work" "$SETUP_MNT"
    mount -t overlay overlay -o "lowerdir=$DIFF_A,upperdir=$upper.tmp/upper,workdir=$upper.tmp/work" "$SETUP_MNT"
    rsync -aHAX --delete --checksum --numeric-ids "$b/" "$SETUP_MNT/"
    umount "$SETUP_MNT"
    mv "$upper.tmp/upper" "$upper"
    rm -rf "$upper.tmp"
    [ "$label" = 1pct ] || rm -rf "$b"
    mark_done "$upper"
  done
}

# scale_tree N: $DATA/scale-N/{a,b}: N small files in directories of at most 100 entries, 3
# deep (the same width and depth for every N), and b = a with 1% of the files rewritten, for
# layerdiff's memory against the number of files.
scale_tree() {
  local n=$1 out="$DATA/scale-$1"
  done_mark "$out" && return 0
  log "corpus: $out ($n files, width 100, depth 3; a and a 1% changed copy)"
  rm -rf "$out"; mkdir -p "$out"
  python3 - "$out" "$n" <<'PY'
import os, random, shutil, sys
out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(n)
a = os.path.join(out, "a")
for i in range(n):
    d = os.path.join(a, f"d{i // 10000:02d}", f"d{(i // 100) % 100:02d}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f"f{i % 100:02d}")
    with open(p, "wb") as f:
        f.write(rng.randbytes(rng.randrange(64, 1024)))
    os.utime(p, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9 + i))
b = os.path.join(out, "b")
shutil.copytree(a, b, symlinks=True, copy_function=shutil.copy2)
for i in rng.sample(range(n), n // 100):
    p = os.path.join(b, f"d{i // 10000:02d}", f"d{(i // 100) % 100:02d}", f"f{i % 100:02d}")
    with open(p, "wb") as f:
        f.write(rng.randbytes(rng.randrange(64, 1024)))
for root in (a, b):  # directory mtimes equal on both sides
    for dirpath, dirnames, _ in os.walk(root, topdown=False):
        os.utime(dirpath, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))
PY
  mark_done "$out"
}

# umoci_prepare NAME A B: an OCI layout with A packed as tag "a", and a bundle unpacked from it
# whose rootfs is then made equal to B (rsync, mtimes truncated to whole seconds as umoci
# stores them), as ../shared/diffcases/oracle.sh does. The benchmark times `umoci repack`.
umoci_prepare() {
  local out="$DATA/umoci-$1" a=$2 b=$3
  if ! command -v umoci >/dev/null; then log "umoci: not installed; its rows are skipped"; return 1; fi
  done_mark "$out" && return 0
  log "umoci: preparing $out (repack of A, unpack, rsync of B; minutes for the 100k tree)"
  rm -rf "$out"; mkdir -p "$out"
  if ! ( set -e
         umoci init --layout "$out/img"
         umoci new --image "$out/img:base"
         umoci unpack --image "$out/img:base" "$out/b0"
         find "$out/b0/rootfs" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
         cp -a "$a/." "$out/b0/rootfs/"
         python3 "$DIFFTOOLS" clamp "$out/b0/rootfs"
         umoci repack --image "$out/img:a" "$out/b0"
         rm -rf "$out/b0"
         umoci unpack --image "$out/img:a" "$out/bundle"
         rsync -aHAXS --delete --checksum --numeric-ids "$b/" "$out/bundle/rootfs/"
         python3 "$DIFFTOOLS" clamp "$out/bundle/rootfs"
       ) > "$out.log" 2>&1; then
    log "umoci: preparation failed, its rows are skipped: $(tail -1 "$out.log")"
    return 1
  fi
  mark_done "$out"
}

SYNTH_OVERLAY=${LAYERMOUNT_SYNTH_OVERLAY:-$DATA/synth100k-overlay}
SYNTH_OCI=${LAYERMOUNT_SYNTH_OCI:-$DATA/synth100k-oci}
if [ -z "$LIST" ]; then
  if want overlay || want requests || want inspect || want diff; then real_corpus; fi
  if want overlay || want requests || want inspect; then synth_stack "$SYNTH_OVERLAY" overlay; fi
  if want inspect; then synth_stack "$SYNTH_OCI" oci; fi
  if want overlay; then big_stack; fi
  if want diff; then diff_trees; scale_tree 10000; scale_tree 100000; fi
fi
C=$CORPUS_DIR
ARGS+=(--stack "real=$C/layer1:$C/layer2:$C/layer3"
       --stack "synth100k=$SYNTH_OVERLAY/layer1:$SYNTH_OVERLAY/layer2:$SYNTH_OVERLAY/layer3"
       --inspect-stack "real-oci=$C/layer1-oci:$C/layer2-oci:$C/layer3-oci"
       --inspect-stack "synth100k-oci=$SYNTH_OCI/layer1:$SYNTH_OCI/layer2:$SYNTH_OCI/layer3"
       --big-stack "$DATA/big/lower:$DATA/big/upper"
       --pair "real=$C/rootfs1:$C/rootfs2" --upper "real=layer2:$C/layer2"
       --pair "synth100k=$DIFF_A:$DIFF_B")
for label in 0.1pct 1pct 10pct; do ARGS+=(--upper "synth100k=$label:$DATA/diff/upper-$label"); done
for n in 10000 100000; do ARGS+=(--scale-pair "$n=$DATA/scale-$n/a:$DATA/scale-$n/b"); done
if [ -z "$LIST" ] && want diff; then
  umoci_prepare real "$C/rootfs1" "$C/rootfs2" && ARGS+=(--umoci "real=$DATA/umoci-real/img:$DATA/umoci-real/bundle")
  umoci_prepare synth100k "$DIFF_A" "$DIFF_B" \
    && ARGS+=(--umoci "synth100k=$DATA/umoci-synth100k/img:$DATA/umoci-synth100k/bundle")
fi

if [ -n "$LIST" ]; then
  "$LAYERBENCH" --list "${ARGS[@]}" ${FILTERS[@]+"${FILTERS[@]}"}
  exit 0
fi

# ------------------------------------------------------------------ run
RESULT="$DATA/results/bench-$(date +%Y%m%d-%H%M%S).txt"
export LC_ALL=C
{
  echo "layermount benchmarks  $(date -u '+%Y-%m-%d %H:%M UTC')  commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- Sources Benchmarks || echo '+dirty')"
  echo "command: $COMMAND_LINE"
  echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, kernel $(uname -r), $(df -T /var/tmp | awk 'NR == 2 { print $2 }') under /var/tmp"
  echo "tools: $(fuse-overlayfs --version 2>/dev/null | grep -m1 fuse-overlayfs), $(umoci --version 2>/dev/null || echo 'umoci missing'), $(rsync --version | head -1 | awk '{ print $1, $3 }'), $(diff --version | head -1), $(tar --version | head -1)"
  echo "load: $(uptime | sed 's/.*load average/load average/') (the machine is shared: compare ratios, which interleave samples, rather than absolute times)"
  "$LAYERBENCH" "${ARGS[@]}" ${FILTERS[@]+"${FILTERS[@]}"}
} | tee "$RESULT"
status=${PIPESTATUS[0]}
log "results saved in $RESULT"
exit "$status"
