/* OpenSSL's libcrypto (Debian libssl-dev): the EVP message-digest interface only, for the SHA-256
 * digests of OCI layers (diff_id, blob digest). No logic lives here. */
#ifndef LAYERMOUNT_CCRYPTO_SHIM_H
#define LAYERMOUNT_CCRYPTO_SHIM_H
#include <stddef.h>
#include <openssl/evp.h>
#endif
