/* backend.h - the interface a backend offers the builder and the runtime: candidate
 * kernels ("tactics") for a layer, and lookup of a kernel by name when a plan loads. */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include "ir/ir.h"

/* What a kernel gets besides its tensors at run time. */
typedef struct backend_exec {
    int32_t threads;
} backend_exec;

typedef kiln_status (*backend_kernel_fn)(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                         ir_tensor *out, int32_t n_out, const backend_exec *x);

typedef struct backend_kernel {
    const char *name;  /* stored in plans: stable across versions */
    const char *op;    /* the op it computes; NULL: any op (the reference kernel) */
    uint64_t features; /* CPU features it needs */
    /* Whether it handles this layer (dtypes, attributes, shapes); NULL: always. */
    bool (*applies)(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                    int32_t n_out);
    backend_kernel_fn run;
} backend_kernel;

typedef struct kiln_backend {
    const char *name; /* "cpu" */
    /* Kernels that can run the layer, best guess first; returns how many (<= max). */
    int32_t (*candidates)(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                          int32_t n_out, const backend_kernel **list, int32_t max);
    /* The kernel of this name for this op, NULL if this kiln has none. */
    const backend_kernel *(*find)(const char *op, const char *kernel);
} kiln_backend;

const kiln_backend *backend_cpu(void);

#endif
