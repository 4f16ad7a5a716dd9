/* Shim for libfuse3's low-level API.
 * Pins FUSE_USE_VERSION once and wraps what Swift cannot call: function-like and
 * initializer macros, versioned symbol aliases, and bitfields of fuse_file_info.
 * No logic lives here. */
#ifndef LAYERMOUNT_CFUSE_SHIM_H
#define LAYERMOUNT_CFUSE_SHIM_H

#define FUSE_USE_VERSION 312
#include <stddef.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <fuse_lowlevel.h>

/* FUSE_ARGS_INIT */
static inline struct fuse_args cfuse_args_init(int argc, char **argv) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    return args;
}

/* fuse_session_loop_mt is a macro selecting the 3.12 symbol. */
static inline int cfuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

/* Replies to a read with an fd-backed buffer (FUSE_BUFVEC_INIT), so data moves by splice
 * and never passes through Swift. */
static inline int cfuse_reply_fd_data(fuse_req_t req, int fd, size_t size, off_t offset) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd;
    buf.buf[0].pos = offset;
    return fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/* fuse_file_info bitfields. */
static inline void cfuse_fi_set_keep_cache(struct fuse_file_info *fi, int v) { fi->keep_cache = v ? 1 : 0; }
static inline void cfuse_fi_set_cache_readdir(struct fuse_file_info *fi, int v) { fi->cache_readdir = v ? 1 : 0; }
static inline void cfuse_fi_set_direct_io(struct fuse_file_info *fi, int v) { fi->direct_io = v ? 1 : 0; }
static inline void cfuse_fi_set_noflush(struct fuse_file_info *fi, int v) { fi->noflush = v ? 1 : 0; }
static inline int cfuse_fi_flags(const struct fuse_file_info *fi) { return fi->flags; }

/* fuse_conn_info capability bits, as plain functions. */
static inline unsigned cfuse_conn_capable(const struct fuse_conn_info *c) { return c->capable; }
static inline unsigned cfuse_conn_want(const struct fuse_conn_info *c) { return c->want; }
static inline void cfuse_conn_set_want(struct fuse_conn_info *c, unsigned want) { c->want = want; }

static const unsigned CFUSE_CAP_ASYNC_READ = FUSE_CAP_ASYNC_READ;
static const unsigned CFUSE_CAP_EXPORT_SUPPORT = FUSE_CAP_EXPORT_SUPPORT;
static const unsigned CFUSE_CAP_SPLICE_WRITE = FUSE_CAP_SPLICE_WRITE;
static const unsigned CFUSE_CAP_SPLICE_MOVE = FUSE_CAP_SPLICE_MOVE;
static const unsigned CFUSE_CAP_SPLICE_READ = FUSE_CAP_SPLICE_READ;
static const unsigned CFUSE_CAP_AUTO_INVAL_DATA = FUSE_CAP_AUTO_INVAL_DATA;
static const unsigned CFUSE_CAP_READDIRPLUS = FUSE_CAP_READDIRPLUS;
static const unsigned CFUSE_CAP_READDIRPLUS_AUTO = FUSE_CAP_READDIRPLUS_AUTO;
static const unsigned CFUSE_CAP_ASYNC_DIO = FUSE_CAP_ASYNC_DIO;
static const unsigned CFUSE_CAP_WRITEBACK_CACHE = FUSE_CAP_WRITEBACK_CACHE;
static const unsigned CFUSE_CAP_NO_OPEN_SUPPORT = FUSE_CAP_NO_OPEN_SUPPORT;
static const unsigned CFUSE_CAP_PARALLEL_DIROPS = FUSE_CAP_PARALLEL_DIROPS;
static const unsigned CFUSE_CAP_POSIX_ACL = FUSE_CAP_POSIX_ACL;
static const unsigned CFUSE_CAP_CACHE_SYMLINKS = FUSE_CAP_CACHE_SYMLINKS;
static const unsigned CFUSE_CAP_NO_OPENDIR_SUPPORT = FUSE_CAP_NO_OPENDIR_SUPPORT;
static const unsigned CFUSE_CAP_EXPLICIT_INVAL_DATA = FUSE_CAP_EXPLICIT_INVAL_DATA;

#endif
