/* extra_einsum.c - Einsum: the equation parser (explicit and implicit output, '...'
 * broadcasting, subscripts repeated in one operand as diagonals), a general kernel that
 * walks output and summed subscripts with a stride per operand (f32, f16, bf16, i32, i64),
 * and two f32 fast forms. */
#include <stdio.h>
#include <string.h>

#include "ir/ops/extra_impl.h"

/* Subscript ids: 'A'..'Z' are 0..25 and 'a'..'z' 26..51, so ascending ids are the ASCII
 * order numpy's implicit output uses; the dims an ellipsis stands for are 52 on. */
#define EIN_LETTERS    52
#define EIN_MAX_LABELS (EIN_LETTERS + KILN_MAX_RANK)
#define EIN_MAX_OPS    127
/* Longer than any valid equation of EIN_MAX_OPS operands of rank KILN_MAX_RANK. */
#define EIN_MAX_CHARS 4096
#define EIN_UNSET     (-2)

typedef struct ein_eq {
    int32_t n_ops;
    int32_t ell;                              /* dims the ellipsis stands for */
    int8_t rank[EIN_MAX_OPS];                 /* of each operand */
    int8_t label[EIN_MAX_OPS][KILN_MAX_RANK]; /* the subscript of each of its dims */
    int32_t out_rank;
    int8_t out_label[KILN_MAX_RANK];
    int64_t size[EIN_MAX_LABELS]; /* EIN_UNSET where no operand uses the subscript */
    int32_t size_from[EIN_MAX_LABELS];
} ein_eq;

static int32_t letter_id(char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return 26 + (ch - 'a');
    return -1;
}

/* "'i'" for a letter, "'...' dim 1" for an ellipsis dim. */
static const char *label_name(int32_t id, char *buf, size_t n)
{
    if (id < 26)
        snprintf(buf, n, "'%c'", (char)('A' + id));
    else if (id < EIN_LETTERS)
        snprintf(buf, n, "'%c'", (char)('a' + id - 26));
    else
        snprintf(buf, n, "'...' dim %d", (int)(id - EIN_LETTERS));
    return buf;
}

/* One term: letters and at most one "...". Fills `ids` with the letters' ids and
 * `ell_at` with the count of letters before the ellipsis (-1: none). */
static kiln_status parse_term(const ir_node *n, const char *s, int32_t len, const char *what,
                              int8_t *ids, int32_t *n_ids, int32_t *ell_at)
{
    *n_ids = 0;
    *ell_at = -1;
    for (int32_t i = 0; i < len; i++) {
        char ch = s[i];
        int32_t id = letter_id(ch);
        if (id >= 0) {
            if (*n_ids == KILN_MAX_RANK)
                return ir_node_error(n, KILN_ERR_SHAPE,
                                     "equation: %s has more than %d subscripts, kiln's largest "
                                     "rank",
                                     what, KILN_MAX_RANK);
            ids[(*n_ids)++] = (int8_t)id;
            continue;
        }
        if (ch == '.') {
            if (i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.')
                return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                     "equation: %s has a '.' outside '...', expected letters "
                                     "and at most one '...'",
                                     what);
            if (*ell_at >= 0)
                return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                     "equation: %s has two '...', expected at most one", what);
            *ell_at = *n_ids;
            i += 2;
            continue;
        }
        if (ch > 0x20 && ch < 0x7f)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "equation: %s has character '%c', expected letters a-z, A-Z "
                                 "or '...'",
                                 what, ch);
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "equation: %s has byte 0x%02x, expected letters a-z, A-Z or '...'",
                             what, (unsigned)(unsigned char)ch);
    }
    return KILN_OK;
}

/* The size of subscript `id` so far combined with an operand's dim `d`: equal, or one
 * of them 1 (broadcast, as numpy and onnxruntime allow); -1 (unknown) yields to a
 * known size. */
static kiln_status merge_size(const ir_node *n, ein_eq *q, int32_t id, int64_t d, int32_t k)
{
    int64_t *s = &q->size[id];
    if (*s == EIN_UNSET || *s == 1 || (*s == -1 && d != 1)) {
        if (*s != d) q->size_from[id] = k;
        *s = d;
        return KILN_OK;
    }
    if (*s == d || d == 1 || d == -1) return KILN_OK;
    char nm[32];
    return ir_node_error(n, KILN_ERR_SHAPE,
                         "subscript %s has size %lld in input %d and %lld in input %d, expected "
                         "equal sizes or 1",
                         label_name(id, nm, sizeof nm), (long long)*s, (int)q->size_from[id],
                         (long long)d, (int)k);
}

/* The input terms: each operand's subscripts with its ellipsis expanded, and every
 * subscript's size. `lhs` holds `len` characters without spaces. */
static kiln_status parse_inputs(const ir_node *n, const ir_tensor *in, const char *lhs, int32_t len,
                                ein_eq *q)
{
    int32_t ell_at[EIN_MAX_OPS], n_letters[EIN_MAX_OPS];
    int32_t k = 0, start = 0;
    for (int32_t i = 0; i <= len; i++) {
        if (i < len && lhs[i] != ',') continue;
        char what[32];
        snprintf(what, sizeof what, "term %d", (int)k);
        KILN_TRY(
            parse_term(n, lhs + start, i - start, what, q->label[k], &n_letters[k], &ell_at[k]));
        int32_t rank = in[k].shape.rank;
        if ((ell_at[k] < 0 && n_letters[k] != rank) || n_letters[k] > rank)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "equation: term %d '%.*s' has %d subscripts%s, input %d has rank "
                                 "%d",
                                 (int)k, (int)(i - start), lhs + start, (int)n_letters[k],
                                 ell_at[k] >= 0 ? " and '...'" : "", (int)k, (int)rank);
        if (rank - n_letters[k] > q->ell) q->ell = rank - n_letters[k];
        q->rank[k] = (int8_t)rank;
        k++;
        start = i + 1;
    }
    /* Expand each ellipsis into the trailing dims of the broadcast ellipsis shape. */
    for (k = 0; k < q->n_ops; k++) {
        if (ell_at[k] < 0) continue;
        int8_t letters[KILN_MAX_RANK];
        memcpy(letters, q->label[k], sizeof letters);
        int32_t e = q->rank[k] - n_letters[k], at = ell_at[k], r = 0;
        for (int32_t j = 0; j < at; j++) q->label[k][r++] = letters[j];
        for (int32_t t = 0; t < e; t++) q->label[k][r++] = (int8_t)(EIN_LETTERS + q->ell - e + t);
        for (int32_t j = at; j < n_letters[k]; j++) q->label[k][r++] = letters[j];
    }
    for (k = 0; k < q->n_ops; k++) {
        for (int32_t d = 0; d < q->rank[k]; d++) {
            int32_t id = q->label[k][d];
            int64_t sd = in[k].shape.d[d];
            for (int32_t e = 0; e < d; e++) {
                int64_t se = in[k].shape.d[e];
                if (q->label[k][e] == id && se != sd && se != -1 && sd != -1) {
                    char nm[32];
                    return ir_node_error(n, KILN_ERR_SHAPE,
                                         "input %d repeats subscript %s over dims %d and %d of "
                                         "sizes %lld and %lld, a diagonal needs equal sizes",
                                         (int)k, label_name(id, nm, sizeof nm), (int)e, (int)d,
                                         (long long)se, (long long)sd);
                }
            }
            KILN_TRY(merge_size(n, q, id, sd, k));
        }
    }
    return KILN_OK;
}

/* The output subscripts: the explicit right-hand side, or numpy's implicit rule (the
 * ellipsis dims, then letters used exactly once, in ASCII order). */
static kiln_status parse_output(const ir_node *n, const char *rhs, int32_t len, bool explicit_out,
                                ein_eq *q)
{
    char nm[32];
    if (!explicit_out) {
        int32_t count[EIN_LETTERS] = {0};
        for (int32_t k = 0; k < q->n_ops; k++)
            for (int32_t d = 0; d < q->rank[k]; d++)
                if (q->label[k][d] < EIN_LETTERS) count[q->label[k][d]]++;
        int32_t r = q->ell;
        for (int32_t id = 0; id < EIN_LETTERS; id++) r += count[id] == 1;
        if (r > KILN_MAX_RANK)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "the implicit output has rank %d, kiln's largest is %d", (int)r,
                                 KILN_MAX_RANK);
        q->out_rank = 0;
        for (int32_t t = 0; t < q->ell; t++)
            q->out_label[q->out_rank++] = (int8_t)(EIN_LETTERS + t);
        for (int32_t id = 0; id < EIN_LETTERS; id++)
            if (count[id] == 1) q->out_label[q->out_rank++] = (int8_t)id;
        return KILN_OK;
    }
    int8_t ids[KILN_MAX_RANK];
    int32_t n_ids = 0, ell_at = -1;
    KILN_TRY(parse_term(n, rhs, len, "the output", ids, &n_ids, &ell_at));
    for (int32_t j = 0; j < n_ids; j++) {
        if (q->size[ids[j]] == EIN_UNSET)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "equation: output subscript %s appears in no input term",
                                 label_name(ids[j], nm, sizeof nm));
        for (int32_t i = 0; i < j; i++)
            if (ids[i] == ids[j])
                return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                     "equation: the output repeats subscript %s, expected each "
                                     "at most once",
                                     label_name(ids[j], nm, sizeof nm));
    }
    if (q->ell > 0 && ell_at < 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "equation: the inputs' '...' stands for %d dims, so the output "
                             "needs '...' too",
                             (int)q->ell);
    int32_t e = ell_at >= 0 ? q->ell : 0;
    if (n_ids + e > KILN_MAX_RANK)
        return ir_node_error(n, KILN_ERR_SHAPE, "the output has rank %d, kiln's largest is %d",
                             (int)(n_ids + e), KILN_MAX_RANK);
    q->out_rank = 0;
    for (int32_t j = 0; j <= n_ids; j++) {
        if (j == ell_at)
            for (int32_t t = 0; t < e; t++) q->out_label[q->out_rank++] = (int8_t)(EIN_LETTERS + t);
        if (j < n_ids) q->out_label[q->out_rank++] = ids[j];
    }
    return KILN_OK;
}

/* Parses and checks the equation against the inputs' dtypes and shapes. */
static kiln_status ein_parse(const ir_node *n, const ir_tensor *in, int32_t n_in, ein_eq *q)
{
    memset(q, 0, sizeof *q);
    for (int32_t i = 0; i < EIN_MAX_LABELS; i++) q->size[i] = EIN_UNSET;
    if (n_in < 1 || n_in > EIN_MAX_OPS)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "takes 1 to %d inputs, got %d", EIN_MAX_OPS,
                             (int)n_in);
    for (int32_t k = 0; k < n_in; k++) {
        kiln_dtype t = in[k].dtype;
        if (t != KILN_DTYPE_F32 && t != KILN_DTYPE_F16 && t != KILN_DTYPE_BF16 &&
            t != KILN_DTYPE_I32 && t != KILN_DTYPE_I64)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                                 "input %d has dtype %s, expected f32, f16, bf16, i32 or i64",
                                 (int)k, kiln_dtype_name(t));
        if (t != in[0].dtype)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "input %d has dtype %s, expected %s like input 0", (int)k,
                                 kiln_dtype_name(t), kiln_dtype_name(in[0].dtype));
    }
    /* Spaces are ignored, as numpy and ONNX's shape inference do. */
    char buf[EIN_MAX_CHARS + 1];
    int32_t len = 0;
    for (const char *p = ir_attr_string(n, "equation"); *p; p++) {
        if (*p == ' ') continue;
        if (len == EIN_MAX_CHARS)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "equation is longer than %d characters",
                                 EIN_MAX_CHARS);
        buf[len++] = *p;
    }
    buf[len] = '\0';
    const char *arrow = strstr(buf, "->");
    int32_t lhs_len = arrow ? (int32_t)(arrow - buf) : len;
    if (arrow && strstr(arrow + 2, "->"))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "equation '%s' has two '->', expected at most one", buf);
    int32_t terms = 1;
    for (int32_t i = 0; i < lhs_len; i++) terms += buf[i] == ',';
    if (terms != n_in)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "equation '%s' has %d input terms, the node has %d inputs", buf,
                             (int)terms, (int)n_in);
    q->n_ops = n_in;
    KILN_TRY(parse_inputs(n, in, buf, lhs_len, q));
    const char *rhs = arrow ? arrow + 2 : "";
    KILN_TRY(parse_output(n, rhs, (int32_t)strlen(rhs), arrow != NULL, q));

    /* Every step of the loops is one product; refuse counts that overflow. */
    int64_t steps = 1;
    for (int32_t id = 0; id < EIN_MAX_LABELS; id++)
        if (q->size[id] > 0 && !kiln_mul_ok(steps, q->size[id], &steps))
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "equation '%s' needs more than 2^63 multiply-adds", buf);
    return KILN_OK;
}

kiln_status ex_infer_einsum(ir_infer *c)
{
    ein_eq q;
    KILN_TRY(ein_parse(c->node, c->in, c->n_in, &q));
    kiln_dims o;
    memset(&o, 0, sizeof o);
    o.rank = q.out_rank;
    bool known = true;
    for (int32_t j = 0; j < q.out_rank; j++) {
        o.d[j] = q.size[q.out_label[j]];
        if (o.d[j] < 0) known = false;
    }
    int64_t cnt;
    char s[KILN_DIMS_STR_MAX];
    if (known && !kiln_dims_numel(&o, &cnt))
        return ir_node_error(c->node, KILN_ERR_SHAPE, "output shape %s has too many elements",
                             kiln_dims_str(&o, s, sizeof s));
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = o;
    return KILN_OK;
}

/* ---- evaluation ---- */

/* The loops: output subscripts first (in output order, so the output is written in
 * order), then the summed ones; st[k * n_loops + j] is operand k's element stride
 * along loop j (0 where the operand lacks the subscript or broadcasts it). */
typedef struct ein_loops {
    int32_t n_ops, n_loops, n_out;
    int64_t size[EIN_MAX_LABELS];
    int64_t *st;
    int64_t out_count;
} ein_loops;

/* One kernel per dtype: CVT turns an element into the accumulator type ACC, STORE an
 * accumulator into an element. f32 accumulates in double; f16 and bf16 in f32 (where a
 * product of two is exact), rounded once on store, as ONNX's reference computes them;
 * integers in unsigned 64-bit arithmetic, so that products and sums wrap (defined), and
 * the low 32 bits are the wrapped i32 result too. */
#define EIN_KERNEL(NAME, T, ACC, ONE, CVT, STORE)                                                  \
    static void NAME(const ein_loops *lp, const ir_tensor *in, T *y)                               \
    {                                                                                              \
        const int32_t nk = lp->n_ops, nl = lp->n_loops, no = lp->n_out, last = nl - 1;             \
        const int64_t *st = lp->st, *sz = lp->size;                                                \
        const T *x[EIN_MAX_OPS];                                                                   \
        int64_t base[EIN_MAX_OPS], off[EIN_MAX_OPS], idx[EIN_MAX_LABELS];                          \
        for (int32_t k = 0; k < nk; k++) {                                                         \
            x[k] = in[k].data;                                                                     \
            base[k] = 0;                                                                           \
        }                                                                                          \
        memset(idx, 0, sizeof idx);                                                                \
        for (int64_t o = 0; o < lp->out_count; o++) {                                              \
            ACC acc = 0;                                                                           \
            if (nl == no) {                                                                        \
                ACC p = ONE;                                                                       \
                for (int32_t k = 0; k < nk; k++) p *= CVT(x[k][base[k]]);                          \
                acc = p;                                                                           \
            } else {                                                                               \
                for (int32_t k = 0; k < nk; k++) off[k] = base[k];                                 \
                for (;;) {                                                                         \
                    const int64_t tn = sz[last];                                                   \
                    if (nk == 1) {                                                                 \
                        const T *a = x[0] + off[0];                                                \
                        const int64_t sa = st[last];                                               \
                        for (int64_t t = 0; t < tn; t++) acc += CVT(a[t * sa]);                    \
                    } else if (nk == 2) {                                                          \
                        const T *a = x[0] + off[0], *b = x[1] + off[1];                            \
                        const int64_t sa = st[last], sb = st[nl + last];                           \
                        for (int64_t t = 0; t < tn; t++) acc += CVT(a[t * sa]) * CVT(b[t * sb]);   \
                    } else {                                                                       \
                        for (int64_t t = 0; t < tn; t++) {                                         \
                            ACC p = ONE;                                                           \
                            for (int32_t k = 0; k < nk; k++)                                       \
                                p *= CVT(x[k][off[k] + t * st[k * nl + last]]);                    \
                            acc += p;                                                              \
                        }                                                                          \
                    }                                                                              \
                    int32_t j = last - 1;                                                          \
                    for (; j >= no; j--) {                                                         \
                        for (int32_t k = 0; k < nk; k++) off[k] += st[k * nl + j];                 \
                        if (++idx[j] < sz[j]) break;                                               \
                        for (int32_t k = 0; k < nk; k++) off[k] -= sz[j] * st[k * nl + j];         \
                        idx[j] = 0;                                                                \
                    }                                                                              \
                    if (j < no) break;                                                             \
                }                                                                                  \
            }                                                                                      \
            y[o] = STORE(acc);                                                                     \
            for (int32_t j = no - 1; j >= 0; j--) {                                                \
                for (int32_t k = 0; k < nk; k++) base[k] += st[k * nl + j];                        \
                if (++idx[j] < sz[j]) break;                                                       \
                for (int32_t k = 0; k < nk; k++) base[k] -= sz[j] * st[k * nl + j];                \
                idx[j] = 0;                                                                        \
            }                                                                                      \
        }                                                                                          \
    }

#define CVT_F(v)    ((double)(v))
#define CVT_F16(v)  kiln_f16_to_f32(v)
#define CVT_BF16(v) kiln_bf16_to_f32(v)
#define CVT_I(v)    ((uint64_t)(int64_t)(v))
#define STORE_F(a)  ((float)(a))
#define STORE_32(a) ((int32_t)(uint32_t)(a))
#define STORE_64(a) ((int64_t)(a))

EIN_KERNEL(ein_f32, float, double, 1.0, CVT_F, STORE_F)
EIN_KERNEL(ein_f16, uint16_t, float, 1.0f, CVT_F16, kiln_f32_to_f16)
EIN_KERNEL(ein_bf16, uint16_t, float, 1.0f, CVT_BF16, kiln_f32_to_bf16)
EIN_KERNEL(ein_i32, int32_t, uint64_t, 1u, CVT_I, STORE_32)
EIN_KERNEL(ein_i64, int64_t, uint64_t, 1u, CVT_I, STORE_64)

/* ---- two f32 operands: the forms of attention and matmul ---- */

/* Steps loops [lo, hi) of a multi-index, keeping both operands' offsets in step; false
 * once they wrap. */
static bool pair_next(const ein_loops *lp, int64_t *idx, int32_t lo, int32_t hi, int64_t *off)
{
    const int64_t *st = lp->st, *sz = lp->size;
    const int32_t nl = lp->n_loops;
    for (int32_t j = hi - 1; j >= lo; j--) {
        off[0] += st[j];
        off[1] += st[nl + j];
        if (++idx[j] < sz[j]) return true;
        off[0] -= sz[j] * st[j];
        off[1] -= sz[j] * st[nl + j];
        idx[j] = 0;
    }
    return false;
}

/* The last loop is summed and contiguous in both operands ("bhid,bhjd->bhij"): one dot
 * product per step of the other summed loops. */
static void pair_dot(const ein_loops *lp, const float *a, const float *b, float *y)
{
    const int32_t nl = lp->n_loops, no = lp->n_out, last = nl - 1;
    int64_t idx[EIN_MAX_LABELS] = {0}, base[2] = {0, 0};
    for (int64_t o = 0; o < lp->out_count; o++) {
        int64_t off[2] = {base[0], base[1]};
        double acc = 0.0;
        do acc += ir_dot_f32(a + off[0], b + off[1], lp->size[last]);
        while (pair_next(lp, idx, no, last, off));
        y[o] = (float)acc;
        pair_next(lp, idx, 0, no, base);
    }
}

/* The output's last subscript is contiguous in an operand ("bhij,bhjd->bhid"): each
 * output row accumulates a scaled row per summed step, in float as MatMul does. */
static void pair_axpy(const ein_loops *lp, const float *a, const float *b, float *y)
{
    const int32_t nl = lp->n_loops, no = lp->n_out, r = no - 1;
    const int64_t n = lp->size[r], sa = lp->st[r], sb = lp->st[nl + r];
    int64_t idx[EIN_MAX_LABELS] = {0}, base[2] = {0, 0};
    for (int64_t row = 0; row < lp->out_count / n; row++) {
        float *restrict yr = y + row * n;
        for (int64_t t = 0; t < n; t++) yr[t] = 0.0f;
        int64_t off[2] = {base[0], base[1]};
        do {
            const float *ar = a + off[0], *br = b + off[1];
            if (sa == 0) {
                const float av = *ar;
                for (int64_t t = 0; t < n; t++) yr[t] += av * br[t * sb];
            } else if (sb == 0) {
                const float bv = *br;
                for (int64_t t = 0; t < n; t++) yr[t] += ar[t * sa] * bv;
            } else {
                for (int64_t t = 0; t < n; t++) yr[t] += ar[t * sa] * br[t * sb];
            }
        } while (pair_next(lp, idx, no, nl, off));
        pair_next(lp, idx, 0, r, base);
    }
}

/* Picks a fast form for two f32 operands with a sum, reordering the summed loops (their
 * order is free); false leaves the equation to the general kernel. */
static bool pair_f32(ein_loops *lp, const ir_tensor *in, float *y)
{
    const int32_t nl = lp->n_loops, no = lp->n_out, last = nl - 1;
    if (lp->n_ops != 2 || in[0].dtype != KILN_DTYPE_F32 || nl == no) return false;
    int64_t *st = lp->st;
    for (int32_t j = no; j < nl; j++) {
        if (st[j] != 1 || st[nl + j] != 1) continue;
        int64_t t = lp->size[j];
        lp->size[j] = lp->size[last];
        lp->size[last] = t;
        for (int32_t k = 0; k < 2; k++) {
            t = st[k * nl + j];
            st[k * nl + j] = st[k * nl + last];
            st[k * nl + last] = t;
        }
        pair_dot(lp, in[0].data, in[1].data, y);
        return true;
    }
    if (no > 0 && (st[no - 1] == 1 || st[nl + no - 1] == 1)) {
        pair_axpy(lp, in[0].data, in[1].data, y);
        return true;
    }
    return false;
}

kiln_status ex_eval_einsum(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out)
{
    ein_eq q;
    KILN_TRY(ein_parse(n, in, n_in, &q));
    ein_loops lp;
    memset(&lp, 0, sizeof lp);
    int32_t pos[EIN_MAX_LABELS];
    for (int32_t id = 0; id < EIN_MAX_LABELS; id++) pos[id] = -1;
    for (int32_t j = 0; j < q.out_rank; j++) {
        pos[q.out_label[j]] = lp.n_loops;
        lp.size[lp.n_loops++] = q.size[q.out_label[j]];
    }
    lp.n_out = lp.n_loops;
    bool empty_sum = false;
    for (int32_t id = 0; id < EIN_MAX_LABELS; id++) {
        if (q.size[id] == EIN_UNSET || pos[id] >= 0) continue;
        pos[id] = lp.n_loops;
        lp.size[lp.n_loops++] = q.size[id];
        if (q.size[id] == 0) empty_sum = true;
    }
    for (int32_t j = 0; j < lp.n_loops; j++)
        if (lp.size[j] < 0)
            return ir_node_error(n, KILN_ERR_INTERNAL, "a subscript has unknown size when running");
    kiln_dims want = {q.out_rank, {0}};
    for (int32_t j = 0; j < q.out_rank; j++) want.d[j] = lp.size[j];
    if (!kiln_dims_equal(&want, &out[0].shape))
        return ir_node_error(n, KILN_ERR_SHAPE, "the output does not have the inferred shape");
    lp.n_ops = n_in;
    lp.out_count = ir_tensor_count(&out[0]);
    if (lp.out_count == 0) return KILN_OK;
    size_t out_bytes = (size_t)lp.out_count * kiln_dtype_size(out[0].dtype);
    if (empty_sum) { /* a sum over nothing */
        memset(out[0].data, 0, out_bytes);
        return KILN_OK;
    }
    /* Real equations have a few operands and subscripts (attention: 2 x 5 strides); the
     * rare larger table comes from the heap. */
    int64_t local[256];
    size_t n_st = (size_t)n_in * (size_t)lp.n_loops;
    lp.st = local;
    if (n_st > sizeof local / sizeof *local) {
        lp.st = kiln_malloc(n_st * sizeof(int64_t));
        if (!lp.st)
            return ir_node_error(n, KILN_ERR_OUT_OF_MEMORY, "no memory for %zu strides", n_st);
    }
    memset(lp.st, 0, n_st * sizeof(int64_t));
    for (int32_t k = 0; k < n_in; k++) {
        int64_t stride = 1;
        for (int32_t d = q.rank[k] - 1; d >= 0; d--) {
            int64_t dim = in[k].shape.d[d];
            /* size 1: the index stays 0, whether broadcast or not */
            if (dim != 1)
                lp.st[(size_t)k * (size_t)lp.n_loops + (size_t)pos[q.label[k][d]]] += stride;
            stride *= dim;
        }
    }
    switch (out[0].dtype) {
    case KILN_DTYPE_F32:
        if (!pair_f32(&lp, in, out[0].data)) ein_f32(&lp, in, out[0].data);
        break;
    case KILN_DTYPE_F16: ein_f16(&lp, in, out[0].data); break;
    case KILN_DTYPE_BF16: ein_bf16(&lp, in, out[0].data); break;
    case KILN_DTYPE_I32: ein_i32(&lp, in, out[0].data); break;
    default: ein_i64(&lp, in, out[0].data); break;
    }
    if (lp.st != local) kiln_free(lp.st);
    return KILN_OK;
}
