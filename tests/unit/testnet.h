/* testnet.h - shared helpers of the pass and fusion tests: networks built through the
 * public API, one pass run on the builder's view of a graph, and engines built with a
 * pass on and off, run on seeded inputs and compared. */
#ifndef KILN_TESTNET_H
#define KILN_TESTNET_H

#include "ir/ir.h"
#include "kiln.h"
#include "opt/opt.h"
#include "testutil.h"

#define NAMES(...) ((const char *const[]){__VA_ARGS__})
#define COUNT(...) ((int32_t)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))
#define IN(...)    NAMES(__VA_ARGS__), COUNT(__VA_ARGS__)
#define OUT(...)   NAMES(__VA_ARGS__), COUNT(__VA_ARGS__)
#define ATTRS(...)                                                                                 \
    ((const kiln_attr[]){__VA_ARGS__}),                                                            \
        ((int32_t)(sizeof((const kiln_attr[]){__VA_ARGS__}) / sizeof(kiln_attr)))
#define NO_ATTRS NULL, 0

/* ---- building networks (every call must succeed) ---- */

kiln_network *tn_net(void);
void tn_input(kiln_network *net, const char *name, int32_t rank, const int64_t *dims);
void tn_constant(kiln_network *net, const char *name, kiln_dtype dt, int32_t rank,
                 const int64_t *dims, const void *data);
void tn_ints(kiln_network *net, const char *name, int32_t n, const int64_t *v);
void tn_scalar(kiln_network *net, const char *name, float v);
/* A seeded f32 constant, uniform in [lo, hi). */
void tn_weights(kiln_network *net, const char *name, int32_t rank, const int64_t *dims,
                uint64_t seed, float lo, float hi);
void tn_layer(kiln_network *net, const char *op, const char *name, const char *const *in,
              int32_t n_in, const char *const *out, int32_t n_out, const kiln_attr *attrs,
              int32_t n_attrs);
void tn_output(kiln_network *net, const char *name);

/* ---- one pass on the builder's view of a network ---- */

/* The graph as the pipeline sees it: cloned, verified, shapes inferred. */
void tn_prepare(const kiln_network *net, ir_graph *g);
/* Runs `pass` once, then dead-code, and verifies; returns the pass's change count. */
int32_t tn_run_pass(ir_graph *g, opt_pass_fn pass);
const ir_node *tn_node(const ir_graph *g, const char *name);
bool tn_live(const ir_graph *g, const char *name);
int32_t tn_live_count(const ir_graph *g);
/* Name of the tensor input (output) k of layer `name` reads (writes). */
const char *tn_reads(const ir_graph *g, const char *name, int32_t k);
const char *tn_writes(const ir_graph *g, const char *name, int32_t k);
bool tn_is_constant(const ir_graph *g, const char *value);

/* ---- engines ---- */

/* Every pass on, or all but `off` (NULL: none off); one thread; no tactic timing (each
 * layer's first candidate, so two builds of a network give one plan). */
kiln_engine *tn_build(const kiln_network *net, const char *off);

/* Builds `net` with the default config at log level VERBOSE and every message captured;
 * *log gets the text, one message a line (valid until the next call). */
kiln_engine *tn_build_logged(const kiln_network *net, const char **log);
/* Fails the test, printing `log`, unless it holds `want`. */
void tn_expect_log(const char *log, const char *want);

/* Input and output buffers of one run. */
typedef struct tn_io {
    int32_t n;
    const char *names[16];
    void *data[16];
    size_t bytes[16];
    kiln_dtype dtype[16];
    bool is_input[16];
} tn_io;

/* Binds seeded f32 inputs in [-2, 2) (the same for every engine of a network) and fresh
 * outputs, and runs once. */
void tn_run(kiln_engine *e, tn_io *b);
void tn_io_free(tn_io *b);
/* The engine with every pass gives the numbers of the one without `pass`: bit for bit
 * when tol is 0, else within rel-L2 tol per output. */
void tn_same_numbers(const kiln_network *net, const char *pass, double tol);

/* Layers of `e` running `op`. */
int tn_count_op(const kiln_engine *e, const char *op);
/* The index of the layer named `name` (fails the test if none). */
int32_t tn_find_layer(const kiln_engine *e, const char *name);
/* Layer `name` runs `op` with `n_in` inputs (-1: any) and stands for exactly the network
 * layers `fused` ("a,b,c"). */
void tn_expect_layer(const kiln_engine *e, const char *name, const char *op, int32_t n_in,
                     const char *fused);

#endif
