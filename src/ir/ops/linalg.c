/* linalg.c - the linalg op group: its table, the helpers its files share, and MatMul and
 * Gemm (shape rules and reference kernels). Softmax-like ops and LayerNormalization live
 * in softmax.c, reductions, ArgMax/ArgMin, CumSum and TopK in reduce.c. */
#include <stdio.h>
#include <string.h>

#include "ir/ops/linalg_impl.h"

/* ---- shared helpers ---- */

void lin_split(const kiln_dims *d, int32_t axis, int64_t *outer, int64_t *n, int64_t *inner)
{
    int64_t o = 1, i = 1;
    for (int32_t k = 0; k < axis; k++) o *= d->d[k];
    for (int32_t k = axis + 1; k < d->rank; k++) i *= d->d[k];
    *outer = o;
    *n = d->d[axis];
    *inner = i;
}

int64_t lin_offset(int64_t lin, int32_t rank, const int64_t *size, const int64_t *stride)
{
    int64_t off = 0;
    for (int32_t i = rank - 1; i >= 0; i--) {
        off += (lin % size[i]) * stride[i];
        lin /= size[i];
    }
    return off;
}

kiln_status lin_check_dtype(const ir_infer *c, int32_t i, const char *what, const kiln_dtype *ok,
                            int32_t n_ok)
{
    kiln_dtype dt = c->in[i].dtype;
    for (int32_t k = 0; k < n_ok; k++)
        if (dt == ok[k]) return KILN_OK;
    char list[96] = "";
    for (int32_t k = 0; k < n_ok; k++) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%s",
                 k == 0          ? ""
                 : k == n_ok - 1 ? " or "
                                 : ", ",
                 kiln_dtype_name(ok[k]));
    }
    return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input '%s' has dtype %s, expected %s",
                         what, kiln_dtype_name(dt), list);
}

kiln_status lin_check_size(const ir_infer *c, const kiln_dims *d)
{
    int64_t n;
    char s[KILN_DIMS_STR_MAX];
    if (!kiln_dims_numel(d, &n))
        return ir_node_error(c->node, KILN_ERR_SHAPE, "output shape %s has too many elements",
                             kiln_dims_str(d, s, sizeof s));
    return KILN_OK;
}

kiln_status lin_const_ints(const ir_node *n, const ir_tensor *t, const char *what, int64_t *vals,
                           int64_t max, int64_t *count)
{
    char s[KILN_DIMS_STR_MAX];
    if (t->dtype != KILN_DTYPE_I64 && t->dtype != KILN_DTYPE_I32)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input '%s' must be i64, got %s", what,
                             kiln_dtype_name(t->dtype));
    if (t->shape.rank > 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "input '%s' must be 1-D, got shape %s", what,
                             kiln_dims_str(&t->shape, s, sizeof s));
    int64_t cnt = ir_tensor_count(t);
    /* An empty input is known from its shape alone (ReduceSum's default axes). */
    if (cnt == 0) {
        *count = 0;
        return KILN_OK;
    }
    if (!t->data)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "input '%s' must be a constant known at build time", what);
    if (cnt > max)
        return ir_node_error(n, KILN_ERR_SHAPE, "input '%s' has %lld values, expected at most %lld",
                             what, (long long)cnt, (long long)max);
    if (!ir_tensor_ints(t, vals, max, count))
        return ir_node_error(n, KILN_ERR_INTERNAL, "input '%s' could not be read", what);
    return KILN_OK;
}

kiln_status lin_axis(const ir_node *n, const char *what, int64_t axis, int32_t rank, int32_t *out)
{
    if (ir_axis(axis, rank, out)) return KILN_OK;
    if (rank == 0)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "%s %lld is invalid for a scalar input "
                             "(needs rank >= 1)",
                             what, (long long)axis);
    return ir_node_error(n, KILN_ERR_SHAPE,
                         "%s %lld is out of range for a rank-%d input "
                         "(expected %d..%d)",
                         what, (long long)axis, rank, -rank, rank - 1);
}

bool lin_unidirectional(const kiln_dims *small, const kiln_dims *big)
{
    if (small->rank > big->rank) return false;
    for (int32_t i = 0; i < small->rank; i++) {
        int64_t s = small->d[small->rank - 1 - i], b = big->d[big->rank - 1 - i];
        if (s != b && s != 1) return false;
    }
    return true;
}

/* ---- matrix product kernels ---- */

/* Tile sizes of the blocked i-k-j loop: a KB x JB tile of B (128 KiB) stays in L2 while
 * every row of A runs over it. Blocking keeps the accumulation order of each output
 * (k ascending), so results equal the plain loop bit for bit. */
enum { MM_JB = 256, MM_KB = 128, MM_DOT_JB = 64 };

/* C (m x n, row-major, overwritten) = A B with A's element (i, k) at a[i*ars + k*acs].
 * B is k x n row-major, or n x k (row-major) when `bt`. Sums accumulate in float, as
 * every mainstream runtime does; the tests bound the difference to a double reference. */
static void mm_f32(int64_t m, int64_t n, int64_t k, const float *a, int64_t ars, int64_t acs,
                   const float *b, bool bt, float *c)
{
    if (!bt) {
        /* i-k-j: the inner loop walks a row of B and a row of C contiguously. */
        memset(c, 0, sizeof(float) * (size_t)(m * n));
        for (int64_t j0 = 0; j0 < n; j0 += MM_JB) {
            int64_t jn = n - j0 < MM_JB ? n - j0 : MM_JB;
            for (int64_t k0 = 0; k0 < k; k0 += MM_KB) {
                int64_t k1 = k - k0 < MM_KB ? k : k0 + MM_KB;
                for (int64_t i = 0; i < m; i++) {
                    float *restrict cr = c + i * n + j0;
                    for (int64_t kk = k0; kk < k1; kk++) {
                        float av = a[i * ars + kk * acs];
                        const float *restrict br = b + kk * n + j0;
                        for (int64_t j = 0; j < jn; j++) cr[j] += av * br[j];
                    }
                }
            }
        }
        return;
    }
    /* B transposed (Gemm transB=1, the usual layout of linear layers): rows of A and B
     * are both contiguous in k, so each output is a dot product; a block of MM_DOT_JB
     * rows of B stays in cache across the rows of A. */
    for (int64_t j0 = 0; j0 < n; j0 += MM_DOT_JB) {
        int64_t j1 = n - j0 < MM_DOT_JB ? n : j0 + MM_DOT_JB;
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = j0; j < j1; j++) {
                const float *br = b + j * k;
                if (acs == 1) {
                    c[i * n + j] = ir_dot_f32(a + i * ars, br, k);
                } else {
                    float s = 0.0f;
                    for (int64_t kk = 0; kk < k; kk++) s += a[i * ars + kk * acs] * br[kk];
                    c[i * n + j] = s;
                }
            }
        }
    }
}

/* Integer products wrap modulo 2^64 / 2^32 (as ONNX Runtime's do), computed unsigned so
 * that overflow is defined. */
static void mm_i64(int64_t m, int64_t n, int64_t k, const int64_t *a, const int64_t *b, int64_t *c)
{
    for (int64_t i = 0; i < m; i++) {
        uint64_t *cr = (uint64_t *)(c + i * n);
        for (int64_t j = 0; j < n; j++) cr[j] = 0;
        for (int64_t kk = 0; kk < k; kk++) {
            uint64_t av = (uint64_t)a[i * k + kk];
            const int64_t *br = b + kk * n;
            for (int64_t j = 0; j < n; j++) cr[j] += av * (uint64_t)br[j];
        }
    }
}

static void mm_i32(int64_t m, int64_t n, int64_t k, const int32_t *a, const int32_t *b, int32_t *c)
{
    for (int64_t i = 0; i < m; i++) {
        uint32_t *cr = (uint32_t *)(c + i * n);
        for (int64_t j = 0; j < n; j++) cr[j] = 0;
        for (int64_t kk = 0; kk < k; kk++) {
            uint32_t av = (uint32_t)a[i * k + kk];
            const int32_t *br = b + kk * n;
            for (int64_t j = 0; j < n; j++) cr[j] += av * (uint32_t)br[j];
        }
    }
}

/* f16 and bf16 products accumulate in f32 and round once per output (as numpy's half
 * matmul does); a plain loop, since half-precision models are rare on this path. */
static void mm_half(int64_t m, int64_t n, int64_t k, const uint16_t *a, const uint16_t *b,
                    uint16_t *c, bool bf16)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t kk = 0; kk < k; kk++) {
                uint16_t av = a[i * k + kk], bv = b[kk * n + j];
                s += bf16 ? kiln_bf16_to_f32(av) * kiln_bf16_to_f32(bv)
                          : kiln_f16_to_f32(av) * kiln_f16_to_f32(bv);
            }
            c[i * n + j] = bf16 ? kiln_f32_to_bf16(s) : kiln_f32_to_f16(s);
        }
}

/* ---- MatMul ---- */

/* numpy matmul geometry: a 1-D A is a 1 x K row, a 1-D B a K x 1 column (the added dim
 * is dropped from the output); dims before the last two broadcast. */
typedef struct mm_geom {
    int64_t m, k, kb, n;
    kiln_dims ab, bb, ob; /* batch dims of A, B and the output */
} mm_geom;

static bool mm_geometry(const kiln_dims *a, const kiln_dims *b, mm_geom *g)
{
    memset(g, 0, sizeof *g);
    int32_t ra = a->rank, rb = b->rank;
    g->m = ra >= 2 ? a->d[ra - 2] : 1;
    g->k = a->d[ra - 1];
    g->kb = rb >= 2 ? b->d[rb - 2] : b->d[0];
    g->n = rb >= 2 ? b->d[rb - 1] : 1;
    g->ab = kiln_dims_make(ra >= 2 ? ra - 2 : 0, a->d);
    g->bb = kiln_dims_make(rb >= 2 ? rb - 2 : 0, b->d);
    return ir_broadcast(&g->ab, &g->bb, &g->ob);
}

kiln_status lin_infer_matmul(ir_infer *c)
{
    static const kiln_dtype ok[] = {KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_I64, KILN_DTYPE_F16,
                                    KILN_DTYPE_BF16};
    const ir_tensor *a = &c->in[0], *b = &c->in[1];
    char sa[KILN_DIMS_STR_MAX], sb[KILN_DIMS_STR_MAX];
    KILN_TRY(lin_check_dtype(c, 0, "A", ok, 5));
    if (b->dtype != a->dtype)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "A is %s but B is %s",
                             kiln_dtype_name(a->dtype), kiln_dtype_name(b->dtype));
    kiln_dims_str(&a->shape, sa, sizeof sa);
    kiln_dims_str(&b->shape, sb, sizeof sb);
    if (a->shape.rank < 1 || b->shape.rank < 1)
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "inputs must have rank >= 1, A is %s, B is %s", sa, sb);
    mm_geom g;
    bool bc = mm_geometry(&a->shape, &b->shape, &g);
    if (g.k != g.kb)
        return ir_node_error(c->node, KILN_ERR_SHAPE, "inner dimensions differ: A is %s, B is %s",
                             sa, sb);
    if (!bc)
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "batch dimensions do not broadcast: A is %s, B is %s", sa, sb);
    kiln_dims o = g.ob;
    if (a->shape.rank >= 2) o.d[o.rank++] = g.m;
    if (b->shape.rank >= 2) o.d[o.rank++] = g.n;
    KILN_TRY(lin_check_size(c, &o));
    c->out[0].dtype = a->dtype;
    c->out[0].shape = o;
    return KILN_OK;
}

kiln_status lin_eval_matmul(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    mm_geom g;
    mm_geometry(&in[0].shape, &in[1].shape, &g);
    int64_t as[KILN_MAX_RANK], bs[KILN_MAX_RANK];
    ir_broadcast_strides(&g.ab, &g.ob, as); /* in units of whole matrices */
    ir_broadcast_strides(&g.bb, &g.ob, bs);
    int64_t batches = kiln_dims_count(&g.ob);
    int64_t asz = g.m * g.k, bsz = g.k * g.n, csz = g.m * g.n;
    for (int64_t t = 0; t < batches; t++) {
        int64_t ao = lin_offset(t, g.ob.rank, g.ob.d, as) * asz;
        int64_t bo = lin_offset(t, g.ob.rank, g.ob.d, bs) * bsz;
        switch (in[0].dtype) {
        case KILN_DTYPE_F32:
            mm_f32(g.m, g.n, g.k, (const float *)in[0].data + ao, g.k, 1,
                   (const float *)in[1].data + bo, false, (float *)out[0].data + t * csz);
            break;
        case KILN_DTYPE_I64:
            mm_i64(g.m, g.n, g.k, (const int64_t *)in[0].data + ao,
                   (const int64_t *)in[1].data + bo, (int64_t *)out[0].data + t * csz);
            break;
        case KILN_DTYPE_I32:
            mm_i32(g.m, g.n, g.k, (const int32_t *)in[0].data + ao,
                   (const int32_t *)in[1].data + bo, (int32_t *)out[0].data + t * csz);
            break;
        case KILN_DTYPE_F16:
        case KILN_DTYPE_BF16:
            mm_half(g.m, g.n, g.k, (const uint16_t *)in[0].data + ao,
                    (const uint16_t *)in[1].data + bo, (uint16_t *)out[0].data + t * csz,
                    in[0].dtype == KILN_DTYPE_BF16);
            break;
        default:
            return ir_node_error(n, KILN_ERR_INTERNAL, "dtype %s reached eval",
                                 kiln_dtype_name(in[0].dtype));
        }
    }
    return KILN_OK;
}

/* ---- Gemm ---- */

kiln_status lin_infer_gemm(ir_infer *c)
{
    static const kiln_dtype ok[] = {KILN_DTYPE_F32};
    const ir_node *node = c->node;
    const ir_tensor *a = &c->in[0], *b = &c->in[1];
    bool has_c = c->n_in > 2 && ir_tensor_present(&c->in[2]);
    char sa[KILN_DIMS_STR_MAX], sb[KILN_DIMS_STR_MAX], sc[KILN_DIMS_STR_MAX];
    KILN_TRY(lin_check_dtype(c, 0, "A", ok, 1));
    KILN_TRY(lin_check_dtype(c, 1, "B", ok, 1));
    if (has_c) KILN_TRY(lin_check_dtype(c, 2, "C", ok, 1));
    kiln_dims_str(&a->shape, sa, sizeof sa);
    kiln_dims_str(&b->shape, sb, sizeof sb);
    if (a->shape.rank != 2 || b->shape.rank != 2)
        return ir_node_error(node, KILN_ERR_SHAPE, "A and B must be 2-D, A is %s, B is %s", sa, sb);
    bool ta = ir_attr_int(node, "transA") != 0, tb = ir_attr_int(node, "transB") != 0;
    int64_t m = a->shape.d[ta ? 1 : 0], k = a->shape.d[ta ? 0 : 1];
    int64_t kb = b->shape.d[tb ? 1 : 0], nn = b->shape.d[tb ? 0 : 1];
    if (k != kb)
        return ir_node_error(node, KILN_ERR_SHAPE,
                             "inner dimensions differ: A is %s (transA=%d), B is %s (transB=%d)",
                             sa, ta, sb, tb);
    kiln_dims o = {2, {m, nn}};
    if (has_c && !lin_unidirectional(&c->in[2].shape, &o))
        return ir_node_error(node, KILN_ERR_SHAPE, "C of shape %s does not broadcast to %lldx%lld",
                             kiln_dims_str(&c->in[2].shape, sc, sizeof sc), (long long)m,
                             (long long)nn);
    KILN_TRY(lin_check_size(c, &o));
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = o;
    return KILN_OK;
}

kiln_status lin_eval_gemm(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                          int32_t n_out)
{
    bool ta = ir_attr_int(n, "transA") != 0, tb = ir_attr_int(n, "transB") != 0;
    float alpha = ir_attr_float(n, "alpha"), beta = ir_attr_float(n, "beta");
    const kiln_dims *as = &in[0].shape;
    int64_t m = as->d[ta ? 1 : 0], k = as->d[ta ? 0 : 1], nn = out[0].shape.d[1];
    float *y = out[0].data;
    /* transA reads A down its columns: element (i, kk) sits at kk*m + i. */
    mm_f32(m, nn, k, in[0].data, ta ? 1 : k, ta ? m : 1, in[1].data, tb, y);
    bool has_c = n_in > 2 && ir_tensor_present(&in[2]);
    /* beta == 0 skips C entirely (so an inf or NaN in C does not leak in), like the
     * BLAS convention the op comes from. */
    if (has_c && beta != 0.0f) {
        int64_t cs[2];
        ir_broadcast_strides(&in[2].shape, &out[0].shape, cs);
        const float *cv = in[2].data;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < nn; j++)
                y[i * nn + j] = alpha * y[i * nn + j] + beta * cv[i * cs[0] + j * cs[1]];
    } else if (alpha != 1.0f) {
        int64_t cnt = m * nn;
        for (int64_t i = 0; i < cnt; i++) y[i] *= alpha;
    }
    return KILN_OK;
}

/* ---- the group table ---- */

static const ir_attr_def gemm_attrs[] = {
    {"alpha", KILN_ATTR_FLOAT, false, 0, 1.0f, NULL},
    {"beta", KILN_ATTR_FLOAT, false, 0, 1.0f, NULL},
    {"transA", KILN_ATTR_INT, false, 0, 0, NULL},
    {"transB", KILN_ATTR_INT, false, 0, 0, NULL},
};
static const ir_attr_def axis_last_attrs[] = {
    {"axis", KILN_ATTR_INT, false, -1, 0, NULL},
};
static const ir_attr_def layernorm_attrs[] = {
    {"axis", KILN_ATTR_INT, false, -1, 0, NULL},
    {"epsilon", KILN_ATTR_FLOAT, false, 0, 1e-5f, NULL},
    {"stash_type", KILN_ATTR_INT, false, 1, 0, NULL},
};
/* `axes` as an attribute is the form before opset 18 (13 for ReduceSum); a node gives
 * either it or the input, not both. */
static const ir_attr_def reduce_attrs[] = {
    {"keepdims", KILN_ATTR_INT, false, 1, 0, NULL},
    {"noop_with_empty_axes", KILN_ATTR_INT, false, 0, 0, NULL},
    {"axes", KILN_ATTR_INTS, false, 0, 0, NULL},
};
static const ir_attr_def arg_attrs[] = {
    {"axis", KILN_ATTR_INT, false, 0, 0, NULL},
    {"keepdims", KILN_ATTR_INT, false, 1, 0, NULL},
    {"select_last_index", KILN_ATTR_INT, false, 0, 0, NULL},
};
static const ir_attr_def cumsum_attrs[] = {
    {"exclusive", KILN_ATTR_INT, false, 0, 0, NULL},
    {"reverse", KILN_ATTR_INT, false, 0, 0, NULL},
};
static const ir_attr_def topk_attrs[] = {
    {"axis", KILN_ATTR_INT, false, -1, 0, NULL},
    {"largest", KILN_ATTR_INT, false, 1, 0, NULL},
    {"sorted", KILN_ATTR_INT, false, 1, 0, NULL},
};

#define ATTRS(a) a, (int32_t)(sizeof a / sizeof *a)
#define REDUCE(name, fn)                                                                           \
    {                                                                                              \
        name, 1, 2, 1, 1, ATTRS(reduce_attrs), lin_infer_##fn, lin_eval_##fn, 0                    \
    }

const ir_op ir_ops_linalg[] = {
    {"MatMul", 2, 2, 1, 1, NULL, 0, lin_infer_matmul, lin_eval_matmul, 0},
    {"Gemm", 2, 3, 1, 1, ATTRS(gemm_attrs), lin_infer_gemm, lin_eval_gemm, 0},
    {"Softmax", 1, 1, 1, 1, ATTRS(axis_last_attrs), lin_infer_softmax, lin_eval_softmax, 0},
    {"LogSoftmax", 1, 1, 1, 1, ATTRS(axis_last_attrs), lin_infer_logsoftmax, lin_eval_logsoftmax,
     0},
    {"Hardmax", 1, 1, 1, 1, ATTRS(axis_last_attrs), lin_infer_hardmax, lin_eval_hardmax, 0},
    {"LayerNormalization", 2, 3, 1, 3, ATTRS(layernorm_attrs), lin_infer_layernorm,
     lin_eval_layernorm, 0},
    REDUCE("ReduceSum", reduce_sum),
    REDUCE("ReduceMean", reduce_mean),
    REDUCE("ReduceMax", reduce_max),
    REDUCE("ReduceMin", reduce_min),
    REDUCE("ReduceProd", reduce_prod),
    REDUCE("ReduceL1", reduce_l1),
    REDUCE("ReduceL2", reduce_l2),
    REDUCE("ReduceSumSquare", reduce_sumsq),
    REDUCE("ReduceLogSum", reduce_logsum),
    REDUCE("ReduceLogSumExp", reduce_logsumexp),
    {"ArgMax", 1, 1, 1, 1, ATTRS(arg_attrs), lin_infer_argmax, lin_eval_argmax, 0},
    {"ArgMin", 1, 1, 1, 1, ATTRS(arg_attrs), lin_infer_argmin, lin_eval_argmin, 0},
    {"CumSum", 2, 2, 1, 1, ATTRS(cumsum_attrs), lin_infer_cumsum, lin_eval_cumsum, 0},
    {"TopK", 2, 2, 2, 2, ATTRS(topk_attrs), lin_infer_topk, lin_eval_topk, 0},
};
const int32_t ir_ops_linalg_count = sizeof ir_ops_linalg / sizeof *ir_ops_linalg;
