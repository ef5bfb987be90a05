/* fusion_match.h - what the fusion passes (bn_fold.c, act_fusion.c, gelu.c, layernorm.c)
 * share: an index of each value's readers, small pattern predicates, rewriting a node in
 * place into another op, and the GELU matcher two passes use. Private to src/opt. */
#ifndef KILN_FUSION_MATCH_H
#define KILN_FUSION_MATCH_H

#include "opt/opt.h"

/* Readers of every value: live nodes and input slots, start[v] .. start[v + 1] - 1. Built
 * once and rebuilt after each rewrite (a rewrite changes who reads what). */
typedef struct fm_readers {
    int32_t n_values;
    int32_t *start;
    int32_t *node;
    int32_t *slot;
} fm_readers;

kiln_status fm_readers_build(const ir_graph *g, fm_readers *r);
void fm_readers_free(fm_readers *r);

static inline int32_t fm_count(const fm_readers *r, int32_t v)
{
    return v >= 0 && v < r->n_values ? r->start[v + 1] - r->start[v] : 0;
}

/* The one node reading `v` (once), or -1. */
int32_t fm_only_reader(const fm_readers *r, int32_t v);
/* `v` is an f32 activation that is no network output and is read exactly `uses` times:
 * an intermediate a fusion may swallow. */
bool fm_private(const ir_graph *g, const fm_readers *r, int32_t v, int32_t uses);
/* Whether live node `node` runs op `op` (false for -1). */
bool fm_is(const ir_graph *g, int32_t node, const char *op);
/* The live node producing `v`, or -1. */
int32_t fm_producer(const ir_graph *g, int32_t v);
/* For a two-input node that reads `v` once: its other input; -1 otherwise. */
int32_t fm_other(const ir_node *n, int32_t v);
/* `v` is an f32 constant with one element; *out gets it. */
bool fm_scalar(const ir_graph *g, int32_t v, float *out);
/* `v` is an f32 constant with one element within `tol` of `want`. */
bool fm_scalar_near(const ir_graph *g, int32_t v, double want, double tol);
/* Values `a` and `b` have the same dtype and shape. */
bool fm_same_shape(const ir_graph *g, int32_t a, int32_t b);
/* Constant `v` (f32) broadcast against `shape` varies at most along `axis`: fills `vec`
 * (shape->d[axis] values) and returns true. */
bool fm_channel_vector(const ir_graph *g, int32_t v, const kiln_dims *shape, int32_t axis,
                       float *vec);

/* Rewrites live node `node` in place into op `op` reading `in` and writing value `out`
 * (which it now produces; its old output no longer has a producer). Attributes: `extra`,
 * then those of the node's old ones the new op has, then the schema's defaults. The
 * node keeps its name and fusion record. The new node's shape inference must give
 * `out`'s known dtype and shape; when it does not, nothing changes and *done is false. */
kiln_status fm_rewrite(ir_graph *g, int32_t node, const char *op, const int32_t *in, int32_t n_in,
                       int32_t out, const kiln_attr *extra, int32_t n_extra, bool *done);

/* Marks nodes dead after node `into` took their work over, recording the fusion. */
kiln_status fm_absorb(ir_graph *g, int32_t into, const int32_t *nodes, int32_t n);

/* A GELU written out of elementwise ops on input x (gelu.c):
 *   erf form:  0.5 * x * (1 + Erf(x / sqrt 2))         (x / sqrt 2 also as x * 1/sqrt 2)
 *   tanh form: 0.5 * x * (1 + Tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))
 * with x^3 as Pow(x, 3) or x * x * x, and the final products in any of the orders
 * exporters write ((x * a) * 0.5, (x * 0.5) * a, x * (a * 0.5)), either operand order of
 * each Add and Mul. Constants match within 1e-6; every intermediate must be private. */
enum { FM_GELU_MAX_NODES = 12 };
typedef struct fm_gelu {
    int32_t nodes[FM_GELU_MAX_NODES]; /* the pattern's nodes, the Erf or Tanh first */
    int32_t n;
    int32_t y;      /* the value the pattern computes */
    bool tanh;      /* the tanh approximation */
    int32_t x_uses; /* how many times the pattern reads x */
} fm_gelu;

bool fm_gelu_match(const ir_graph *g, const fm_readers *r, int32_t x, fm_gelu *m);

#endif /* KILN_FUSION_MATCH_H */
