/* opt.h - graph optimization passes and the listed pipeline that runs them. */
#ifndef KILN_OPT_H
#define KILN_OPT_H

#include "ir/ir.h"

/* A pass rewrites the graph in place (shapes are known when passes run) and adds the
 * number of changes it made to *changes, logging each at VERBOSE. */
typedef kiln_status (*opt_pass_fn)(ir_graph *g, int32_t *changes);

typedef struct opt_pass {
    const char *name; /* what `--disable-pass` takes */
    const char *summary;
    opt_pass_fn run;
} opt_pass;

/* The pipeline in order; NULL past the end. */
const opt_pass *opt_pass_at(int32_t index);

/* Runs every pass not disabled, in order, until a round changes nothing (at most a
 * few rounds). `disabled(name, user)` says whether to skip a pass. */
kiln_status opt_run_pipeline(ir_graph *g, bool (*disabled)(const char *name, const void *user),
                             const void *user);

/* ---- rewriting helpers (rewrite.c) ---- */

/* For each value: how many live nodes read it (a node reading it twice counts twice).
 * `counts` has room for g->n_values. */
kiln_status opt_use_counts(const ir_graph *g, int32_t **counts);
/* The single live node reading value `v` and the input slot, or -1 if zero or several. */
int32_t opt_single_consumer(const ir_graph *g, int32_t v, int32_t *slot);
/* Makes every live node that reads `from` read `to` instead. Network outputs are not
 * touched (their names are bound by callers): check `is_output` first. */
void opt_replace_uses(ir_graph *g, int32_t from, int32_t to);
/* Removes a node whose output 0 equals its input 0 (Identity-like): readers of the
 * output read the input. When the output is a network output and the input is an
 * activation with no other reader, the input's producer writes the output directly.
 * Returns false (and changes nothing) when neither is possible. */
bool opt_bypass(ir_graph *g, int32_t node);
/* Whether values a and b have one dtype and shape at every input shape the build's
 * profiles allow: equal now, and in a dynamic graph with the same changing dimensions and
 * the same shapes at every probe (a value a pass made has no record: not provably equal
 * unless both are static). Passes compare shapes through this, never kiln_dims_equal. */
bool opt_same_shape(const ir_graph *g, int32_t a, int32_t b);
/* Whether value v's shape is the same at every input shape the profiles allow, so that
 * a pass may write it into a constant (a Reshape's target). */
bool opt_static_shape(const ir_graph *g, int32_t v);
/* Records that node `into` now also computes what node `from` did (for inspect). */
kiln_status opt_record_fusion(ir_graph *g, int32_t into, int32_t from);
/* Adds a node during a pass, with a name derived from `base` that is not in use;
 * outputs are new values (named `out_hint` + suffix when out_names is NULL). */
kiln_status opt_add_node(ir_graph *g, const char *op, const char *base, const int32_t *in,
                         int32_t n_in, int32_t n_out, const kiln_attr *attrs, int32_t n_attrs,
                         int32_t *node);
/* Infers the dtypes and shapes of a node's outputs from its inputs (after a rewrite). */
kiln_status opt_infer_node(ir_graph *g, int32_t node);
/* A new constant (copied into the graph's arena) with a fresh name derived from `base`. */
kiln_status opt_add_constant(ir_graph *g, const char *base, kiln_dtype dtype,
                             const kiln_dims *shape, const void *data, int32_t *value);
/* A new activation with a fresh name derived from `base`, no producer and no shape yet:
 * for a node that is rewired to write something new. */
kiln_status opt_add_value(ir_graph *g, const char *base, int32_t *value);
/* A Transpose's perm for an input of `rank` (without the attribute: the axes reversed). */
void opt_transpose_perm(const ir_node *n, int32_t rank, int32_t *perm);
/* Sets a Transpose's perm attribute (the array lives in the graph's arena). */
kiln_status opt_set_transpose_perm(ir_graph *g, ir_node *n, const int32_t *perm, int32_t rank);

/* Passes (one file each). */
kiln_status opt_dead_code(ir_graph *g, int32_t *changes);
kiln_status opt_constant_folding(ir_graph *g, int32_t *changes);
kiln_status opt_identity(ir_graph *g, int32_t *changes);
kiln_status opt_transpose_sinking(ir_graph *g, int32_t *changes);
kiln_status opt_reshape_transpose(ir_graph *g, int32_t *changes);
kiln_status opt_cse(ir_graph *g, int32_t *changes);
kiln_status opt_matmul_add_to_gemm(ir_graph *g, int32_t *changes);
kiln_status opt_attention(ir_graph *g, int32_t *changes);
/* Fusion passes (bn_fold.c, gelu.c, layernorm.c, act_fusion.c, elementwise_chain.c). */
kiln_status opt_batchnorm_fold(ir_graph *g, int32_t *changes);
kiln_status opt_gelu(ir_graph *g, int32_t *changes);
kiln_status opt_layernorm(ir_graph *g, int32_t *changes);
kiln_status opt_activation_fusion(ir_graph *g, int32_t *changes);
kiln_status opt_elementwise_chain(ir_graph *g, int32_t *changes);

#endif
