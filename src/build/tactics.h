/* tactics.h - tactic selection: timing a layer's candidate kernels, and the timing cache
 * (tactics.c). */
#ifndef KILN_BUILD_TACTICS_H
#define KILN_BUILD_TACTICS_H

#include "backends/backend.h"

typedef struct tactic_entry {
    uint64_t key; /* tactic_key of the layer */
    char *kernel; /* the kernel chosen */
    uint64_t ns;  /* its median time when timed */
} tactic_entry;

typedef struct tactic_cache {
    char *path; /* NULL: no file */
    tactic_entry *e;
    int32_t n, cap;
    bool dirty; /* entries added since loading */
} tactic_cache;

/* A signature of what a kernel's speed depends on: op, attributes, every tensor's dtype,
 * shape, layout and constness, and the thread count. */
uint64_t tactic_key(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                    int32_t n_out, int32_t threads);

void tactic_cache_init(tactic_cache *c);
void tactic_cache_free(tactic_cache *c);
/* Reads `path` when it exists. A file for another CPU or kiln, or a damaged one, gives an
 * empty cache (and a warning); it is replaced when the build saves. */
kiln_status tactic_cache_load(tactic_cache *c, const char *path);
const char *tactic_cache_find(const tactic_cache *c, uint64_t key);
kiln_status tactic_cache_put(tactic_cache *c, uint64_t key, const char *kernel, uint64_t ns);
/* Writes the file (sorted by key, through a temporary file) when entries were added. */
kiln_status tactic_cache_save(tactic_cache *c);

/* Median time of `k` running the layer on seeded data, prepared data and scratch of its
 * own; a candidate whose warm-up run already takes over 3x `best_ns` gets that time. */
kiln_status tactic_time(const backend_kernel *k, const ir_node *n, const ir_tensor *in,
                        int32_t n_in, const ir_tensor *out, int32_t n_out, int32_t threads,
                        uint64_t best_ns, uint64_t *ns);

#endif
