#ifndef LAYERMOUNT_CCOMPRESS_SHIM_H
#define LAYERMOUNT_CCOMPRESS_SHIM_H
/* zlib and libzstd for reading layer tarballs with their checksums verified (libarchive does
 * not check the gzip CRC-32 and stops before the end of the stream). */
#include <zlib.h>
#include <zstd.h>

/* inflateInit2 is a macro. */
static inline int cc_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 15 + 16);
}
#endif
