#ifndef CSODIUM_SHIM_H
#define CSODIUM_SHIM_H
#include <sodium.h>

/* crypto_generichash_state is 64-byte aligned, which Swift does not import:
   these take an opaque pointer to crypto_generichash_statebytes() bytes aligned to 64. */
static inline int CSodium_generichash_init(void *state, size_t outlen) {
    return crypto_generichash_init((crypto_generichash_state *)state, NULL, 0, outlen);
}
static inline int CSodium_generichash_update(void *state, const unsigned char *in, unsigned long long len) {
    return crypto_generichash_update((crypto_generichash_state *)state, in, len);
}
static inline int CSodium_generichash_final(void *state, unsigned char *out, size_t outlen) {
    return crypto_generichash_final((crypto_generichash_state *)state, out, outlen);
}
#endif
