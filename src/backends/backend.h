/* backend.h - the interface a backend offers the builder and the runtime: candidate
 * kernels ("tactics") for a layer, and lookup of a kernel by name when a plan loads. */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include "ir/ir.h"

/* What a kernel gets besides its tensors at run time. */
typedef struct backend_exec {
    int32_t threads;
    const void *data;     /* the layer's prepared data (the kernel's `prepare`), NULL if none */
    uint64_t data_bytes;  /* 64-byte aligned in the plan */
    void *scratch;        /* the context's scratch: at least the kernel's `scratch` bytes for */
    size_t scratch_bytes; /* this layer and thread count, 64-byte aligned; NULL when 0 */
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
    /* Optional, at build time: data the kernel keeps in the plan for this layer, made from
     * its constant inputs (in[k].data is set for those), e.g. weights packed for the
     * micro-kernel; appended to `data`. The same layer gives the same bytes. */
    kiln_status (*prepare)(const ir_node *n, const ir_tensor *in, int32_t n_in,
                           const ir_tensor *out, int32_t n_out, kiln_buf *data);
    /* With `prepare`, at load time: whether `data` is what prepare makes for this layer's
     * shapes and attributes (its size and header; plans are untrusted). */
    bool (*data_ok)(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                    int32_t n_out, const void *data, uint64_t bytes);
    /* With `prepare`: the input slots (bit k) whose data run never reads, having the
     * prepared data instead (the weights it packed). A constant read only through such
     * slots is left out of the plan (its shape stays). */
    uint32_t prepared_inputs;
    /* Optional: scratch bytes a run of this layer needs with `threads` threads, for the
     * tensors' shapes given (a dynamic engine's largest). */
    size_t (*scratch)(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                      int32_t n_out, int32_t threads);
} backend_kernel;

/* The layouts a layer wants its tensors in (docs/ARCHITECTURE.md, "Layouts"). in[k].layout
 * is what input k holds when the layer runs: its producer's choice, made earlier in
 * execution order (network inputs and constants are plain). want_in and want_out arrive
 * filled with IR_LAYOUT_PLAIN. The builder then reorders activations that differ, stores
 * constants in the layout asked for (a constant of lower rank than output 0 first gets
 * leading 1s, as broadcasting reads it), and keeps network inputs and outputs plain.
 * Fails only on a bad setting (an unknown KILN_CPU_LAYOUT). */
typedef kiln_status (*backend_layout_fn)(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                         const ir_tensor *out, int32_t n_out, ir_layout *want_in,
                                         ir_layout *want_out);

typedef struct kiln_backend {
    const char *name; /* "cpu" */
    /* Kernels that can run the layer, best guess first; returns how many (<= max). The
     * tensors carry the layouts the layout step gave them. */
    int32_t (*candidates)(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                          int32_t n_out, const backend_kernel **list, int32_t max);
    /* The kernel of this name for this op, NULL if this kiln has none. */
    const backend_kernel *(*find)(const char *op, const char *kernel);
    backend_layout_fn layout;
} kiln_backend;

const kiln_backend *backend_cpu(void);

/* Test hook, not public API: the layouts the CPU backend asks for in builds that start
 * after the call. IR_LAYOUT_PLAIN (the default) asks for plain tensors everywhere (its
 * kernels are the reference kernels); a blocked layout asks for it wherever a blocked
 * reference kernel (ref_nchwc.c) or a layout-agnostic elementwise op can take it. -1
 * returns to the default: the environment variable KILN_CPU_LAYOUT (plain, nchw4c,
 * nchw8c or nchw16c) when set, else plain. Returns the previous setting. Not for use
 * while another thread builds. */
int32_t backend_cpu_set_layout_policy(int32_t layout);

#endif
