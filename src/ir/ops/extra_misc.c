/* extra_misc.c - MeanVarianceNormalization, ReverseSequence and Det (batched
 * determinant by LU decomposition). */
#include <math.h>
#include <string.h>

#include "ir/ops/extra_impl.h"

/* Steps a multi-index over `n` dims (sizes `sz`, strides `st`, last fastest) and keeps
 * the offset `*off` in step; false once it wraps to the start. */
static bool odo_next(int64_t *idx, const int64_t *sz, const int64_t *st, int32_t n, int64_t *off)
{
    for (int32_t d = n - 1; d >= 0; d--) {
        *off += st[d];
        if (++idx[d] < sz[d]) return true;
        *off -= sz[d] * st[d];
        idx[d] = 0;
    }
    return false;
}

/* ---- MeanVarianceNormalization ---- */

/* Which dims the mean and variance run over: `axes` (default [0, 2, 3]; an empty list
 * means all, as ReduceMean in ONNX's function body for this op). */
static kiln_status mvn_axes(const ir_node *n, int32_t rank, bool *reduce)
{
    static const int64_t def[] = {0, 2, 3};
    int32_t cnt = 0;
    const int64_t *ax = ir_attr_ints(n, "axes", &cnt);
    if (!ax) {
        ax = def;
        cnt = 3;
    }
    for (int32_t d = 0; d < rank; d++) reduce[d] = cnt == 0;
    for (int32_t i = 0; i < cnt; i++) {
        int32_t a;
        if (!ir_axis(ax[i], rank, &a))
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "axes[%d] is %lld, out of range for a rank-%d input (expected "
                                 "%d..%d)",
                                 (int)i, (long long)ax[i], (int)rank, (int)-rank, (int)rank - 1);
        if (reduce[a])
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "axes names dim %d twice", (int)a);
        reduce[a] = true;
    }
    return KILN_OK;
}

kiln_status ex_infer_mvn(ir_infer *c)
{
    bool reduce[KILN_MAX_RANK];
    if (c->in[0].dtype != KILN_DTYPE_F32)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input has dtype %s, expected f32",
                             kiln_dtype_name(c->in[0].dtype));
    KILN_TRY(mvn_axes(c->node, c->in[0].shape.rank, reduce));
    return ir_infer_same_as_input(c);
}

/* y = (x - mean) / (sqrt(var) + 1e-9), the epsilon and its place as in ONNX's function
 * body; the variance is the mean of squared deviations (equal to its E[x^2] - E[x]^2,
 * without that form's cancellation), in double. */
kiln_status ex_eval_mvn(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                        int32_t n_out)
{
    bool reduce[KILN_MAX_RANK];
    const kiln_dims *s = &in[0].shape;
    KILN_TRY(mvn_axes(n, s->rank, reduce));
    if (ir_tensor_count(&in[0]) == 0) return KILN_OK;
    int64_t st[KILN_MAX_RANK], ksz[KILN_MAX_RANK], kst[KILN_MAX_RANK], rsz[KILN_MAX_RANK],
        rst[KILN_MAX_RANK];
    int32_t nk = 0, nr = 0;
    kiln_dims_strides(s, st);
    int64_t m = 1;
    for (int32_t d = 0; d < s->rank; d++) {
        if (reduce[d]) {
            rsz[nr] = s->d[d];
            rst[nr++] = st[d];
            m *= s->d[d];
        } else {
            ksz[nk] = s->d[d];
            kst[nk++] = st[d];
        }
    }
    const float *x = in[0].data;
    float *y = out[0].data;
    int64_t kidx[KILN_MAX_RANK] = {0}, kbase = 0;
    do {
        int64_t ridx[KILN_MAX_RANK] = {0}, off = kbase;
        double sum = 0.0;
        do sum += x[off];
        while (odo_next(ridx, rsz, rst, nr, &off));
        const double mean = sum / (double)m;
        double sq = 0.0;
        off = kbase;
        do sq += (x[off] - mean) * (x[off] - mean);
        while (odo_next(ridx, rsz, rst, nr, &off));
        const double den = sqrt(sq / (double)m) + 1e-9;
        off = kbase;
        do y[off] = (float)((x[off] - mean) / den);
        while (odo_next(ridx, rsz, rst, nr, &off));
    } while (odo_next(kidx, ksz, kst, nk, &kbase));
    return KILN_OK;
}

/* ---- ReverseSequence ---- */

static kiln_status rs_axes(const ir_node *n, int32_t *batch, int32_t *time)
{
    int64_t b = ir_attr_int(n, "batch_axis"), t = ir_attr_int(n, "time_axis");
    if ((b != 0 && b != 1) || (t != 0 && t != 1) || b == t)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "batch_axis %lld and time_axis %lld must be 0 and 1 in some order",
                             (long long)b, (long long)t);
    *batch = (int32_t)b;
    *time = (int32_t)t;
    return KILN_OK;
}

/* Length `i` of sequence_lens; false unless it is in [0, steps]. */
static bool rs_len(const ir_tensor *lens, int64_t i, int64_t steps, int64_t *out)
{
    int64_t v = lens->dtype == KILN_DTYPE_I64 ? ((const int64_t *)lens->data)[i]
                                              : ((const int32_t *)lens->data)[i];
    *out = v;
    return v >= 0 && v <= steps;
}

kiln_status ex_infer_reverse_sequence(ir_infer *c)
{
    int32_t ba = 1, ta = 0;
    char s[KILN_DIMS_STR_MAX];
    const ir_tensor *x = &c->in[0], *lens = &c->in[1];
    KILN_TRY(rs_axes(c->node, &ba, &ta));
    if (kiln_dtype_size(x->dtype) == 0)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input has unsupported dtype %s",
                             kiln_dtype_name(x->dtype));
    if (x->shape.rank < 2)
        return ir_node_error(c->node, KILN_ERR_SHAPE, "input must have rank 2 or more, got %s",
                             kiln_dims_str(&x->shape, s, sizeof s));
    if (lens->dtype != KILN_DTYPE_I64 && lens->dtype != KILN_DTYPE_I32)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                             "sequence_lens has dtype %s, expected i64",
                             kiln_dtype_name(lens->dtype));
    int64_t batch = x->shape.d[ba], steps = x->shape.d[ta];
    if (lens->shape.rank != 1 || (lens->shape.d[0] != batch && lens->shape.d[0] >= 0 && batch >= 0))
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "sequence_lens has shape %s, expected [%lld] (the batch dim %d)",
                             kiln_dims_str(&lens->shape, s, sizeof s), (long long)batch, (int)ba);
    if (lens->data && steps >= 0) {
        for (int64_t i = 0; i < ir_tensor_count(lens); i++) {
            int64_t v;
            if (!rs_len(lens, i, steps, &v))
                return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                                     "sequence_lens[%lld] is %lld, expected 0 to %lld (the time "
                                     "dim)",
                                     (long long)i, (long long)v, (long long)steps);
        }
    }
    return ir_infer_same_as_input(c);
}

kiln_status ex_eval_reverse_sequence(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                     ir_tensor *out, int32_t n_out)
{
    int32_t ba = 1, ta = 0;
    KILN_TRY(rs_axes(n, &ba, &ta));
    const kiln_dims *s = &in[0].shape;
    int64_t batch = s->d[ba], steps = s->d[ta], inner = 1;
    for (int32_t d = 2; d < s->rank; d++) inner *= s->d[d];
    if (in[1].shape.rank != 1 || in[1].shape.d[0] != batch)
        return ir_node_error(n, KILN_ERR_SHAPE, "sequence_lens has %lld values, expected %lld",
                             (long long)(in[1].shape.rank == 1 ? in[1].shape.d[0] : -1),
                             (long long)batch);
    const size_t es = kiln_dtype_size(in[0].dtype), row = (size_t)inner * es;
    const char *x = in[0].data;
    char *y = out[0].data;
    /* (b, t) -> its row of `inner` elements */
    const int64_t sb = ta == 0 ? inner : steps * inner, stt = ta == 0 ? batch * inner : inner;
    for (int64_t b = 0; b < batch; b++) {
        int64_t len;
        if (!rs_len(&in[1], b, steps, &len))
            return ir_node_error(n, KILN_ERR_INVALID_ARGUMENT,
                                 "sequence_lens[%lld] is %lld, expected 0 to %lld (the time dim)",
                                 (long long)b, (long long)len, (long long)steps);
        for (int64_t t = 0; t < steps; t++) {
            int64_t from = t < len ? len - 1 - t : t;
            if (row)
                memcpy(y + (size_t)(b * sb + t * stt) * es, x + (size_t)(b * sb + from * stt) * es,
                       row);
        }
    }
    return KILN_OK;
}

/* ---- Det ---- */

kiln_status ex_infer_det(ir_infer *c)
{
    const ir_tensor *x = &c->in[0];
    char s[KILN_DIMS_STR_MAX];
    if (x->dtype != KILN_DTYPE_F32)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input has dtype %s, expected f32",
                             kiln_dtype_name(x->dtype));
    int32_t r = x->shape.rank;
    if (r < 2 || (x->shape.d[r - 1] != x->shape.d[r - 2] && x->shape.d[r - 1] >= 0 &&
                  x->shape.d[r - 2] >= 0))
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "input must be [..., M, M] (square matrices), got %s",
                             kiln_dims_str(&x->shape, s, sizeof s));
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = kiln_dims_make(r - 2, x->shape.d);
    return KILN_OK;
}

/* LU with partial pivoting in double: the determinant is the product of the pivots,
 * negated once per row swap. A 0 x 0 matrix has determinant 1 (as numpy). */
static double det_lu(double *a, int64_t m)
{
    double det = 1.0;
    for (int64_t k = 0; k < m; k++) {
        int64_t piv = k;
        for (int64_t i = k + 1; i < m; i++)
            if (fabs(a[i * m + k]) > fabs(a[piv * m + k])) piv = i;
        if (a[piv * m + k] == 0.0) return 0.0;
        if (piv != k) {
            for (int64_t j = 0; j < m; j++) {
                double t = a[k * m + j];
                a[k * m + j] = a[piv * m + j];
                a[piv * m + j] = t;
            }
            det = -det;
        }
        double p = a[k * m + k];
        det *= p;
        for (int64_t i = k + 1; i < m; i++) {
            double f = a[i * m + k] / p;
            if (f == 0.0) continue;
            for (int64_t j = k + 1; j < m; j++) a[i * m + j] -= f * a[k * m + j];
        }
    }
    return det;
}

kiln_status ex_eval_det(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                        int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    if (s->rank < 2 || s->d[s->rank - 1] != s->d[s->rank - 2] ||
        ir_tensor_count(&out[0]) * s->d[s->rank - 1] * s->d[s->rank - 1] != ir_tensor_count(&in[0]))
        return ir_node_error(n, KILN_ERR_SHAPE, "input is not a stack of square matrices");
    int64_t m = s->d[s->rank - 1], batch = ir_tensor_count(&out[0]), mm = m * m;
    const float *x = in[0].data;
    float *y = out[0].data;
    /* The factorization overwrites its matrix: small ones on the stack, others on the
     * heap (unavoidable). */
    double local[16 * 16], *a = local;
    if (mm > 16 * 16 && batch > 0) {
        a = kiln_malloc((size_t)mm * sizeof(double));
        if (!a)
            return ir_node_error(n, KILN_ERR_OUT_OF_MEMORY, "no memory for a %lld x %lld matrix",
                                 (long long)m, (long long)m);
    }
    for (int64_t b = 0; b < batch; b++) {
        for (int64_t i = 0; i < mm; i++) a[i] = x[b * mm + i];
        y[b] = (float)det_lu(a, m);
    }
    if (a != local) kiln_free(a);
    return KILN_OK;
}
