# Sourced by the scripts: PATH for swift, and shared locations.
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  export PATH=/opt/swift/usr/bin:$PATH
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${LAYERMOUNT_SHARED:-$(cd "$REPO/.." && pwd)/shared}
# Corpora live outside the repository.
CORPUS_DIR=${LAYERMOUNT_CORPUS:-/var/tmp/layermount-corpus}
export REPO SHARED CORPUS_DIR
