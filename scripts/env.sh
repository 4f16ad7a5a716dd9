# Sourced by the scripts: PATH for swift, and shared locations.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${LAYERMOUNT_SHARED:-$(cd "$REPO/.." && pwd)/shared}
if [ ! -d "$SHARED/corpus" ]; then
  echo "$(basename "$0"): $SHARED not found: the shared corpus tools, conformance harness and diff" \
    "cases live beside the checkout (../shared); clone beside them or set LAYERMOUNT_SHARED=DIR" >&2
  exit 1
fi
# The Swift tests find it the same way.
export LAYERMOUNT_SHARED=$SHARED
# Corpora live outside the repository.
CORPUS_DIR=${LAYERMOUNT_CORPUS:-/var/tmp/layermount-corpus}
export REPO SHARED CORPUS_DIR
