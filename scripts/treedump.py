#!/usr/bin/env python3
"""treedump.py - canonical dump of a directory tree, to compare mounts with each other and
with a recorded rootfs (used by the real-stack tests and the demo).

  treedump.py dump TREE [--mtime]          one line per entry, sorted by path bytes
  treedump.py compare TREE TREE... [--mtime]
                                           prints "equal: N entries" (exit 0), or a unified
                                           diff of the first tree against each other (exit 1)

Line: PATH TYPE MODE UID:GID SIZE NLINK DATA LINKGROUP XATTRS [MTIME]
  TYPE      reg dir lnk chr blk fifo sock
  MODE      permission bits incl. setuid/setgid/sticky, octal
  SIZE      bytes ('-' for directories, whose sizes are file-system specific)
  NLINK     link count ('-' for directories: merged ones report 1, as the kernel does)
  DATA      sha256 of a regular file, the target of a symlink, MAJ,MIN of a device, else '-'
  LINKGROUP for a file with several names: the first (smallest) path of its hard-link group
            within the tree, else '-'
  XATTRS    name=hexvalue;... sorted, without overlay-private names (trusted.overlay.*,
            user.overlay.*)
  MTIME     with --mtime: mtime in ns of non-directories
Nothing is followed: symlinks are read with lstat/readlink; names are bytes (escaped).
"""
import hashlib
import os
import stat
import sys

PRIVATE = (b"trusted.overlay.", b"user.overlay.")


def esc(name):
    out = []
    for c in name:
        if c == 0x5C:
            out.append("\\\\")
        elif 0x21 <= c <= 0x7E:
            out.append(chr(c))
        else:
            out.append("\\x%02x" % c)
    return "".join(out)


def sha256(path):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while True:
            buf = os.read(fd, 1 << 20)
            if not buf:
                break
            h.update(buf)
    finally:
        os.close(fd)
    return h.hexdigest()


def xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return "-"
    items = []
    for name in sorted(names):
        raw = os.fsencode(name)
        if raw.startswith(PRIVATE):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as e:
            value = ("ERR:" + (e.strerror or "")).encode()
        items.append("%s=%s" % (esc(raw), value.hex()))
    return ";".join(items) if items else "-"


def walk(root):
    """(relative path bytes, lstat) for every entry, root first."""
    root = os.fsencode(root)
    out = [(b".", os.lstat(root))]
    stack = [b""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        with os.scandir(full) as it:
            for entry in it:
                r = os.path.join(rel, entry.name) if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                out.append((r, st))
                if stat.S_ISDIR(st.st_mode):
                    stack.append(r)
    return out


def dump(root, mtime=False):
    entries = walk(root)
    groups = {}
    for rel, st in entries:
        if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key not in groups or rel < groups[key]:
                groups[key] = rel
    lines = []
    rootb = os.fsencode(root)
    for rel, st in sorted(entries, key=lambda e: e[0].split(b"/")):
        full = rootb if rel == b"." else os.path.join(rootb, rel)
        m = st.st_mode
        isdir = stat.S_ISDIR(m)
        kind = ("reg" if stat.S_ISREG(m) else "dir" if isdir else "lnk" if stat.S_ISLNK(m) else
                "chr" if stat.S_ISCHR(m) else "blk" if stat.S_ISBLK(m) else
                "fifo" if stat.S_ISFIFO(m) else "sock" if stat.S_ISSOCK(m) else "?")
        if kind == "reg":
            data = sha256(full)
        elif kind == "lnk":
            data = esc(os.readlink(full))
        elif kind in ("chr", "blk"):
            data = "%d,%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        else:
            data = "-"
        group = "-"
        if not isdir and st.st_nlink > 1:
            group = esc(groups[(st.st_dev, st.st_ino)])
        fields = [esc(rel), kind, "%04o" % stat.S_IMODE(m), "%d:%d" % (st.st_uid, st.st_gid),
                  "-" if isdir else str(st.st_size), "-" if isdir else str(st.st_nlink), data, group,
                  xattrs(full)]
        if mtime:
            fields.append("-" if isdir else str(st.st_mtime_ns))
        lines.append(" ".join(fields))
    return lines


def main(argv):
    args = [a for a in argv[1:] if a != "--mtime"]
    mtime = "--mtime" in argv
    if len(args) >= 2 and args[0] == "dump":
        sys.stdout.write("\n".join(dump(args[1], mtime)) + "\n")
        return 0
    if len(args) >= 3 and args[0] == "compare":
        import difflib
        first = dump(args[1], mtime)
        status = 0
        for other in args[2:]:
            lines = dump(other, mtime)
            if lines != first:
                status = 1
                diff = list(difflib.unified_diff(first, lines, args[1], other, lineterm="", n=1))
                sys.stdout.write("\n".join(diff[:200]) + "\n")
                if len(diff) > 200:
                    sys.stdout.write("... %d more diff lines\n" % (len(diff) - 200))
        if status == 0:
            print("equal: %d entries" % len(first))
        return status
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
