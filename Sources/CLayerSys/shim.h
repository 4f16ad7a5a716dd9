/* Linux system calls and macros that Swift's Glibc module does not expose:
 * openat2(2) with RESOLVE_* flags, getdents64(2), *xattr(2), makedev/major/minor,
 * SEEK_DATA/SEEK_HOLE. No logic lives here. */
#ifndef LAYERMOUNT_CLAYERSYS_SHIM_H
#define LAYERMOUNT_CLAYERSYS_SHIM_H

/* No _GNU_SOURCE here: it would make these headers differ from Swift's Glibc module.
 * GNU-only constants are spelled out below with their Linux values. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <linux/openat2.h>

/* openat2(2): no glibc wrapper on Debian 12. */
static inline int cls_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how = { .flags = flags, .mode = mode, .resolve = resolve };
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}
static const uint64_t CLS_RESOLVE_NO_XDEV = RESOLVE_NO_XDEV;
static const uint64_t CLS_RESOLVE_NO_MAGICLINKS = RESOLVE_NO_MAGICLINKS;
static const uint64_t CLS_RESOLVE_NO_SYMLINKS = RESOLVE_NO_SYMLINKS;
static const uint64_t CLS_RESOLVE_BENEATH = RESOLVE_BENEATH;
static const uint64_t CLS_RESOLVE_IN_ROOT = RESOLVE_IN_ROOT;

/* getdents64(2): raw directory entries (d_ino, d_off, d_reclen, d_type, d_name). */
/* open_tree(2) (Linux 5.2, the same number on every architecture): with OPEN_TREE_CLONE a
 * detached copy of the mount at `path` alone, without the mounts below it, as the kernel's
 * overlayfs takes its layers (clone_private_mount). Returns an O_PATH descriptor. */
static const unsigned int CLS_OPEN_TREE_CLONE = 1;        /* OPEN_TREE_CLONE */
static const unsigned int CLS_OPEN_TREE_CLOEXEC = 02000000; /* O_CLOEXEC */
static inline int cls_open_tree(int dirfd, const char *path, unsigned int flags) {
    return (int)syscall(428, dirfd, path, flags);
}

static inline long cls_getdents64(int fd, void *buf, size_t size) {
    return syscall(SYS_getdents64, fd, buf, size);
}

/* listxattrat(2) and getxattrat(2) (Linux 6.13): the xattrs of an entry named relative to a
 * directory fd, without the /proc/self/fd detour. The numbers are the same on every
 * architecture (the unified syscall table); older kernels fail with ENOSYS. */
static inline long cls_listxattrat(int dirfd, const char *name, unsigned int atflags, char *list, size_t size) {
    return syscall(465, dirfd, name, atflags, list, size);
}
struct cls_xattr_args { uint64_t value; uint32_t size; uint32_t flags; };
static inline long cls_getxattrat(int dirfd, const char *name, unsigned int atflags, const char *attr,
                                  void *value, size_t size) {
    struct cls_xattr_args args = { .value = (uint64_t)(uintptr_t)value, .size = (uint32_t)size, .flags = 0 };
    return syscall(464, dirfd, name, atflags, attr, &args, sizeof(args));
}

/* copy_file_range(2): in-kernel copy between two files (reflinks where the file system can);
 * glibc declares it only with _GNU_SOURCE. */
static inline long cls_copy_file_range(int fd_in, int64_t *off_in, int fd_out, int64_t *off_out, size_t len) {
    return syscall(SYS_copy_file_range, fd_in, off_in, fd_out, off_out, len, 0u);
}

/* pthread_getattr_np(3): the calling thread's stack bounds; glibc declares it only with
 * _GNU_SOURCE. */
#include <pthread.h>
extern int pthread_getattr_np(pthread_t thread, pthread_attr_t *attributes);
static inline int cls_pthread_getattr_np(pthread_t thread, pthread_attr_t *attributes) {
    return pthread_getattr_np(thread, attributes);
}

/* Wrappers so Swift sees plain functions rather than macros. */
static inline dev_t cls_makedev(unsigned int ma, unsigned int mi) { return makedev(ma, mi); }
static inline unsigned int cls_major(dev_t d) { return major(d); }
static inline unsigned int cls_minor(dev_t d) { return minor(d); }

static const int CLS_SEEK_DATA = 3;               /* SEEK_DATA */
static const int CLS_SEEK_HOLE = 4;               /* SEEK_HOLE */
static const int CLS_O_PATH = 010000000;          /* O_PATH */
static const int CLS_O_TMPFILE = 020000000 | O_DIRECTORY; /* O_TMPFILE */
static const int CLS_AT_EMPTY_PATH = 0x1000;      /* AT_EMPTY_PATH */
static const int CLS_RENAME_NOREPLACE = 1 << 0; /* linux/fs.h */
static const int CLS_RENAME_EXCHANGE = 1 << 1;
static const int CLS_RENAME_WHITEOUT = 1 << 2;
static const int CLS_XATTR_CREATE = XATTR_CREATE;
static const int CLS_XATTR_REPLACE = XATTR_REPLACE;

#endif
