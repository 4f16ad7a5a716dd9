#ifndef LAYERMOUNT_CXXHASH_SHIM_H
#define LAYERMOUNT_CXXHASH_SHIM_H
#include <xxhash.h>
#endif
