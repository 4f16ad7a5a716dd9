/* libdeflate (Debian libdeflate-dev): whole-buffer gzip compression, used block by block on
 * several threads for gzip layer blobs. No logic lives here. */
#ifndef LAYERMOUNT_CDEFLATE_SHIM_H
#define LAYERMOUNT_CDEFLATE_SHIM_H
#include <stddef.h>
#include <libdeflate.h>
#endif
