/* movement.c - ops that move elements by computed index: Slice, Transpose, Pad, Gather,
 * GatherElements, GatherND, ScatterND, ScatterElements, Trilu, OneHot. Index values
 * read at run time are bounds-checked in eval; a bad one is an error, never a read. */
#include <math.h>
#include <string.h>

#include "ir/ops/shape_impl.h"

/* A run-time index checked against its axis; negative counts from the back. */
static kiln_status fix_index(const ir_node *n, int64_t v, int64_t dim, int32_t axis, int64_t pos,
                             int64_t *out)
{
    if (v < -dim || v >= dim)
        return ir_node_error(n, KILN_ERR_INVALID_ARGUMENT,
                             "index %lld (at position %lld of the indices) is out of range for "
                             "axis %d of size %lld, expected [%lld, %lld]",
                             (long long)v, (long long)pos, axis, (long long)dim, (long long)-dim,
                             (long long)dim - 1);
    *out = v < 0 ? v + dim : v;
    return KILN_OK;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- Slice ---- */

typedef struct slice_plan {
    kiln_dims out;
    int64_t start[KILN_MAX_RANK], step[KILN_MAX_RANK];
} slice_plan;

static kiln_status slice_make(const ir_node *n, const ir_tensor *in, int32_t n_in, slice_plan *p)
{
    const kiln_dims *s = &in[0].shape;
    int32_t r = s->rank, ax[KILN_MAX_RANK];
    int64_t starts[KILN_MAX_RANK], ends[KILN_MAX_RANK], axes[KILN_MAX_RANK], steps[KILN_MAX_RANK];
    int64_t ns = 0, ne = 0, cnt = 0;
    KILN_TRY(shape_const_ints(n, in, 1, "starts", starts, KILN_MAX_RANK, &ns));
    KILN_TRY(shape_const_ints(n, in, 2, "ends", ends, KILN_MAX_RANK, &ne));
    if (ne != ns)
        return ir_node_error(n, KILN_ERR_SHAPE, "ends has %lld values, expected %lld like starts",
                             (long long)ne, (long long)ns);
    if (shape_has(in, n_in, 3)) {
        KILN_TRY(shape_const_ints(n, in, 3, "axes", axes, KILN_MAX_RANK, &cnt));
        if (cnt != ns)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "axes has %lld values, expected %lld like starts", (long long)cnt,
                                 (long long)ns);
    } else {
        if (ns > r)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "starts has %lld values, expected at most %d (the input rank)",
                                 (long long)ns, r);
        for (int64_t i = 0; i < ns; i++) axes[i] = i;
    }
    KILN_TRY(shape_axes(n, axes, ns, r, "axes", ax));
    if (shape_has(in, n_in, 4)) {
        KILN_TRY(shape_const_ints(n, in, 4, "steps", steps, KILN_MAX_RANK, &cnt));
        if (cnt != ns)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "steps has %lld values, expected %lld like starts", (long long)cnt,
                                 (long long)ns);
    } else {
        for (int64_t i = 0; i < ns; i++) steps[i] = 1;
    }
    p->out = *s;
    for (int32_t k = 0; k < r; k++) {
        p->start[k] = 0;
        p->step[k] = 1;
    }
    for (int64_t i = 0; i < ns; i++) {
        int32_t k = ax[i];
        int64_t dim = s->d[k], b = starts[i], e = ends[i], t = steps[i], count = 0;
        if (t == 0)
            return ir_node_error(n, KILN_ERR_SHAPE, "steps[%lld] is 0, expected non-zero",
                                 (long long)i);
        if (dim == 0) {
            b = 0;
            t = 1;
        } else {
            /* The spec's clamping: after adding dim to negatives, starts clamp to [0, dim]
             * forward and [0, dim-1] backward, ends to [0, dim] and [-1, dim-1]. A step
             * longer than the axis takes one element, so it is shortened to stay in range
             * (INT64_MIN cannot be negated). */
            if (b < 0) b += dim;
            if (e < 0) e += dim;
            if (t > 0) {
                b = clamp64(b, 0, dim);
                e = clamp64(e, 0, dim);
                if (t > dim) t = dim;
                count = e > b ? (e - b - 1) / t + 1 : 0;
            } else {
                b = clamp64(b, 0, dim - 1);
                e = clamp64(e, -1, dim - 1);
                if (t < -dim) t = -dim;
                count = b > e ? (b - e - 1) / -t + 1 : 0;
            }
        }
        p->out.d[k] = count;
        p->start[k] = b;
        p->step[k] = t;
    }
    return KILN_OK;
}

kiln_status shape_infer_slice(ir_infer *c)
{
    slice_plan p;
    KILN_TRY(slice_make(c->node, c->in, c->n_in, &p));
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &p.out);
}

kiln_status shape_eval_slice(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    slice_plan p;
    int64_t st[KILN_MAX_RANK], base = 0;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    KILN_TRY(slice_make(n, in, n_in, &p));
    kiln_dims_strides(&in[0].shape, st);
    for (int32_t k = 0; k < in[0].shape.rank; k++) {
        base += p.start[k] * st[k];
        st[k] *= p.step[k];
    }
    shape_strided_copy(out[0].data, in[0].data, kiln_dtype_size(in[0].dtype), &out[0].shape, st,
                       base);
    return KILN_OK;
}

/* ---- Transpose ---- */

static kiln_status transpose_perm(const ir_node *n, int32_t r, int32_t *perm)
{
    int32_t cnt = 0;
    const int64_t *p = ir_attr_ints(n, "perm", &cnt);
    bool seen[KILN_MAX_RANK] = {false};
    if (!p) {
        for (int32_t i = 0; i < r; i++) perm[i] = r - 1 - i;
        return KILN_OK;
    }
    if (cnt != r)
        return ir_node_error(n, KILN_ERR_SHAPE, "perm has %d entries, expected %d (the input rank)",
                             cnt, r);
    for (int32_t i = 0; i < r; i++) {
        if (p[i] < 0 || p[i] >= r || seen[p[i]])
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "perm[%d] is %lld, expected a permutation of 0..%d", i,
                                 (long long)p[i], r - 1);
        seen[p[i]] = true;
        perm[i] = (int32_t)p[i];
    }
    return KILN_OK;
}

kiln_status shape_infer_transpose(ir_infer *c)
{
    const kiln_dims *s = &c->in[0].shape;
    int32_t perm[KILN_MAX_RANK];
    KILN_TRY(transpose_perm(c->node, s->rank, perm));
    kiln_dims d = *s;
    for (int32_t i = 0; i < s->rank; i++) d.d[i] = s->d[perm[i]];
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &d);
}

kiln_status shape_eval_transpose(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    int32_t perm[KILN_MAX_RANK];
    int64_t st[KILN_MAX_RANK], pst[KILN_MAX_RANK];
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    KILN_TRY(transpose_perm(n, in[0].shape.rank, perm));
    kiln_dims_strides(&in[0].shape, st);
    for (int32_t i = 0; i < in[0].shape.rank; i++) pst[i] = st[perm[i]];
    shape_strided_copy(out[0].data, in[0].data, kiln_dtype_size(in[0].dtype), &out[0].shape, pst,
                       0);
    return KILN_OK;
}

/* ---- Pad ---- */

enum { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP };
static const char *const pad_modes[] = {"constant", "reflect", "edge", "wrap"};

/* Negative pads crop first and positive pads then extend the cropped axis (what
 * onnxruntime does), so reflect, edge and wrap read only kept elements. Per axis:
 * output x reads cropped element x - lead, i.e. input element that + skip. */
typedef struct pad_plan {
    kiln_dims out;
    int mode;
    int64_t lead[KILN_MAX_RANK], skip[KILN_MAX_RANK], len[KILN_MAX_RANK];
} pad_plan;

static kiln_status pad_make(const ir_node *n, const ir_tensor *in, int32_t n_in, pad_plan *p)
{
    const kiln_dims *s = &in[0].shape;
    const char *mode = ir_attr_string(n, "mode");
    int32_t r = s->rank, ax[KILN_MAX_RANK];
    int64_t pads[SHAPE_MAX_LIST], axes[KILN_MAX_RANK], np = 0, na = r;
    p->mode = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(mode, pad_modes[i]) == 0) p->mode = i;
    if (p->mode < 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "mode '%s' is unknown, expected constant, reflect, edge or wrap",
                             mode);
    KILN_TRY(shape_const_ints(n, in, 1, "pads", pads, SHAPE_MAX_LIST, &np));
    if (shape_has(in, n_in, 3)) {
        KILN_TRY(shape_const_ints(n, in, 3, "axes", axes, KILN_MAX_RANK, &na));
    } else {
        for (int32_t i = 0; i < r; i++) axes[i] = i;
    }
    KILN_TRY(shape_axes(n, axes, na, r, "axes", ax));
    if (np != 2 * na)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "pads has %lld values, expected %lld (a begin and an end for each "
                             "of %lld axes)",
                             (long long)np, (long long)(2 * na), (long long)na);
    if (shape_has(in, n_in, 2)) {
        const ir_tensor *v = &in[2];
        if (v->dtype != in[0].dtype)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "constant_value is %s, expected %s like the data",
                                 kiln_dtype_name(v->dtype), kiln_dtype_name(in[0].dtype));
        if (v->shape.rank > 1 || shape_count(v) != 1)
            return ir_node_error(n, KILN_ERR_SHAPE, "constant_value has %lld elements, expected 1",
                                 (long long)shape_count(v));
    }
    p->out = *s;
    for (int32_t k = 0; k < r; k++) {
        p->lead[k] = 0;
        p->skip[k] = 0;
        p->len[k] = s->d[k];
    }
    for (int64_t i = 0; i < na; i++) {
        int32_t k = ax[i];
        int64_t b = pads[i], e = pads[na + i], dim = s->d[k];
        if (dim > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "axis %d of size %lld is too long to pad", k,
                                 (long long)dim);
        if (b < -KILN_MAX_ELEMENTS || b > KILN_MAX_ELEMENTS || e < -KILN_MAX_ELEMENTS ||
            e > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "pads %lld and %lld for axis %d are too large",
                                 (long long)b, (long long)e, k);
        int64_t kept = dim + (b < 0 ? b : 0) + (e < 0 ? e : 0);
        if (kept < 0)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "pads %lld and %lld crop %lld elements from axis %d, which has "
                                 "only %lld",
                                 (long long)b, (long long)e, (long long)(dim - kept), k,
                                 (long long)dim);
        p->lead[k] = b > 0 ? b : 0;
        p->skip[k] = b < 0 ? -b : 0;
        p->len[k] = kept;
        p->out.d[k] = kept + p->lead[k] + (e > 0 ? e : 0);
        if (p->mode != PAD_CONSTANT && kept == 0 && p->out.d[k] > 0)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "mode '%s' cannot pad axis %d: no elements are left to copy from",
                                 mode, k);
    }
    return KILN_OK;
}

kiln_status shape_infer_pad(ir_infer *c)
{
    pad_plan p;
    KILN_TRY(pad_make(c->node, c->in, c->n_in, &p));
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &p.out);
}

/* Maps x, outside [0, len), into it; len > 0. Reflect and wrap repeat with period
 * 2(len-1) and len, as numpy.pad does for pads longer than the axis. */
static int64_t pad_map(int mode, int64_t x, int64_t len)
{
    if (mode == PAD_EDGE) return x < 0 ? 0 : len - 1;
    if (mode == PAD_WRAP) return ((x % len) + len) % len;
    if (len == 1) return 0;
    int64_t period = 2 * (len - 1), t = ((x % period) + period) % period;
    return t < len ? t : period - t;
}

kiln_status shape_eval_pad(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out)
{
    static const uint8_t zero[16] = {0};
    pad_plan p;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(pad_make(n, in, n_in, &p));
    const void *value = shape_has(in, n_in, 2) ? in[2].data : zero;
    size_t es = kiln_dtype_size(in[0].dtype);
    int32_t r = in[0].shape.rank;
    int64_t st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, total = kiln_dims_count(&p.out);
    if (ir_tensor_count(&in[0]) == 0) {
        /* Only constant mode gets here with output: every element is the value. */
        for (int64_t j = 0; j < total; j++) shape_copy_elem(out[0].data, j, value, 0, es);
        return KILN_OK;
    }
    kiln_dims_strides(&in[0].shape, st);
    for (int64_t j = 0; j < total; j++) {
        int64_t off = 0;
        bool inside = true;
        for (int32_t k = 0; k < r && inside; k++) {
            int64_t x = idx[k] - p.lead[k];
            if (x < 0 || x >= p.len[k]) {
                if (p.mode == PAD_CONSTANT)
                    inside = false;
                else
                    x = pad_map(p.mode, x, p.len[k]);
            }
            off += (x + p.skip[k]) * st[k];
        }
        if (inside)
            shape_copy_elem(out[0].data, j, in[0].data, off, es);
        else
            shape_copy_elem(out[0].data, j, value, 0, es);
        shape_index_next(idx, p.out.d, r);
    }
    return KILN_OK;
}

/* ---- Gather ---- */

static kiln_status gather_shape(const ir_node *n, const ir_tensor *in, int32_t *axis, kiln_dims *d)
{
    const kiln_dims *s = &in[0].shape, *q = &in[1].shape;
    int64_t a = ir_attr_int(n, "axis");
    if (s->rank == 0) return ir_node_error(n, KILN_ERR_SHAPE, "data is 0-D, expected at least 1-D");
    KILN_TRY(shape_check_index_dtype(n, &in[1], "indices"));
    if (!ir_axis(a, s->rank, axis))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "axis %lld is out of range, expected [%d, %d] for %d-D data",
                             (long long)a, -s->rank, s->rank - 1, s->rank);
    if (s->rank - 1 + q->rank > KILN_MAX_RANK)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "%d-D data and %d-D indices give a %d-D output, expected at most %d",
                             s->rank, q->rank, s->rank - 1 + q->rank, KILN_MAX_RANK);
    memset(d, 0, sizeof *d);
    for (int32_t i = 0; i < *axis; i++) d->d[d->rank++] = s->d[i];
    for (int32_t i = 0; i < q->rank; i++) d->d[d->rank++] = q->d[i];
    for (int32_t i = *axis + 1; i < s->rank; i++) d->d[d->rank++] = s->d[i];
    return KILN_OK;
}

kiln_status shape_infer_gather(ir_infer *c)
{
    int32_t axis = 0;
    kiln_dims d;
    KILN_TRY(gather_shape(c->node, c->in, &axis, &d));
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &d);
}

kiln_status shape_eval_gather(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    int32_t axis = 0;
    kiln_dims d;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(gather_shape(n, in, &axis, &d));
    const kiln_dims *s = &in[0].shape;
    int64_t dim = s->d[axis], ni = ir_tensor_count(&in[1]), v = 0;
    for (int64_t j = 0; j < ni; j++)
        KILN_TRY(fix_index(n, shape_index_at(&in[1], j), dim, axis, j, &v));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    int64_t outer = shape_prod(s, 0, axis);
    int64_t blk = shape_prod(s, axis + 1, s->rank) * (int64_t)kiln_dtype_size(in[0].dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            fix_index(n, shape_index_at(&in[1], j), dim, axis, j, &v);
            memcpy((char *)out[0].data + (o * ni + j) * blk,
                   (const char *)in[0].data + (o * dim + v) * blk, (size_t)blk);
        }
    return KILN_OK;
}

/* ---- GatherElements ---- */

static kiln_status elements_shape(const ir_node *n, const ir_tensor *data, const ir_tensor *ind,
                                  int32_t *axis)
{
    const kiln_dims *s = &data->shape, *q = &ind->shape;
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    int64_t ax = ir_attr_int(n, "axis");
    if (s->rank == 0) return ir_node_error(n, KILN_ERR_SHAPE, "data is 0-D, expected at least 1-D");
    KILN_TRY(shape_check_index_dtype(n, ind, "indices"));
    if (!ir_axis(ax, s->rank, axis))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "axis %lld is out of range, expected [%d, %d] for %d-D data",
                             (long long)ax, -s->rank, s->rank - 1, s->rank);
    bool ok = q->rank == s->rank;
    for (int32_t k = 0; k < s->rank && ok; k++)
        if (k != *axis && q->d[k] > s->d[k]) ok = false;
    if (!ok)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "indices are %s, expected the rank of data (%s) and no larger size "
                             "outside axis %d",
                             kiln_dims_str(q, a, sizeof a), kiln_dims_str(s, b, sizeof b), *axis);
    return KILN_OK;
}

kiln_status shape_infer_gather_elements(ir_infer *c)
{
    int32_t axis = 0;
    KILN_TRY(elements_shape(c->node, &c->in[0], &c->in[1], &axis));
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &c->in[1].shape);
}

/* Offsets into data for every element of indices along `axis` (GatherElements and
 * ScatterElements share it): validates all indices before anything is written. */
static kiln_status elements_check(const ir_node *n, const ir_tensor *data, const ir_tensor *ind,
                                  int32_t axis)
{
    int64_t total = ir_tensor_count(ind), v = 0;
    for (int64_t j = 0; j < total; j++)
        KILN_TRY(fix_index(n, shape_index_at(ind, j), data->shape.d[axis], axis, j, &v));
    return KILN_OK;
}

static int64_t elements_offset(const ir_tensor *data, const ir_tensor *ind, int32_t axis,
                               const int64_t *idx, const int64_t *st, int64_t j)
{
    int64_t v = shape_index_at(ind, j), dim = data->shape.d[axis], off = 0;
    if (v < 0) v += dim;
    for (int32_t k = 0; k < data->shape.rank; k++) off += (k == axis ? v : idx[k]) * st[k];
    return off;
}

kiln_status shape_eval_gather_elements(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                       ir_tensor *out, int32_t n_out)
{
    int32_t axis = 0;
    int64_t st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(elements_shape(n, &in[0], &in[1], &axis));
    KILN_TRY(elements_check(n, &in[0], &in[1], axis));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    kiln_dims_strides(&in[0].shape, st);
    size_t es = kiln_dtype_size(in[0].dtype);
    int64_t total = ir_tensor_count(&in[1]);
    for (int64_t j = 0; j < total; j++) {
        shape_copy_elem(out[0].data, j, in[0].data,
                        elements_offset(&in[0], &in[1], axis, idx, st, j), es);
        shape_index_next(idx, in[1].shape.d, in[1].shape.rank);
    }
    return KILN_OK;
}

/* ---- GatherND ---- */

static kiln_status gather_nd_shape(const ir_node *n, const ir_tensor *in, int32_t *bd, int32_t *k,
                                   kiln_dims *d)
{
    const kiln_dims *s = &in[0].shape, *q = &in[1].shape;
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    int64_t batch = ir_attr_int(n, "batch_dims");
    KILN_TRY(shape_check_index_dtype(n, &in[1], "indices"));
    if (s->rank < 1 || q->rank < 1)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "data is %d-D and indices %d-D, expected both >= 1-D", s->rank,
                             q->rank);
    if (batch < 0 || batch >= s->rank || batch >= q->rank)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "batch_dims is %lld, expected [0, %d) for %d-D data and %d-D indices",
                             (long long)batch, s->rank < q->rank ? s->rank : q->rank, s->rank,
                             q->rank);
    *bd = (int32_t)batch;
    int64_t last = q->d[q->rank - 1];
    if (last < 1 || last > s->rank - *bd)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "indices end in %lld, expected 1..%d (data rank minus batch_dims)",
                             (long long)last, s->rank - *bd);
    *k = (int32_t)last;
    for (int32_t i = 0; i < *bd; i++)
        if (q->d[i] != s->d[i])
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "indices %s and data %s differ in batch dimension %d",
                                 kiln_dims_str(q, a, sizeof a), kiln_dims_str(s, b, sizeof b), i);
    int32_t r = q->rank - 1 + s->rank - *k - *bd;
    if (r > KILN_MAX_RANK)
        return ir_node_error(n, KILN_ERR_SHAPE, "output would be %d-D, expected at most %d", r,
                             KILN_MAX_RANK);
    memset(d, 0, sizeof *d);
    for (int32_t i = 0; i < q->rank - 1; i++) d->d[d->rank++] = q->d[i];
    for (int32_t i = *bd + *k; i < s->rank; i++) d->d[d->rank++] = s->d[i];
    return KILN_OK;
}

kiln_status shape_infer_gather_nd(ir_infer *c)
{
    int32_t bd = 0, k = 0;
    kiln_dims d;
    KILN_TRY(gather_nd_shape(c->node, c->in, &bd, &k, &d));
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &d);
}

/* Element offset into data of index tuple t (k values starting at data axis `first`);
 * with st NULL it only checks the tuple. */
static kiln_status tuple_offset(const ir_node *n, const ir_tensor *data, const ir_tensor *ind,
                                int32_t first, int32_t k, const int64_t *st, int64_t t,
                                int64_t *off)
{
    int64_t o = 0, v = 0;
    for (int32_t j = 0; j < k; j++) {
        KILN_TRY(fix_index(n, shape_index_at(ind, t * k + j), data->shape.d[first + j], first + j,
                           t * k + j, &v));
        if (st) o += v * st[first + j];
    }
    *off = o;
    return KILN_OK;
}

kiln_status shape_eval_gather_nd(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    int32_t bd = 0, k = 0;
    kiln_dims d;
    int64_t st[KILN_MAX_RANK], off = 0;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(gather_nd_shape(n, in, &bd, &k, &d));
    const kiln_dims *s = &in[0].shape, *q = &in[1].shape;
    int64_t tuples = ir_tensor_count(&in[1]) / k;
    for (int64_t t = 0; t < tuples; t++)
        KILN_TRY(tuple_offset(n, &in[0], &in[1], bd, k, NULL, t, &off));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    kiln_dims_strides(s, st);
    int64_t es = (int64_t)kiln_dtype_size(in[0].dtype);
    int64_t batches = shape_prod(s, 0, bd), per = shape_prod(q, bd, q->rank - 1);
    int64_t slice = shape_prod(s, bd + k, s->rank), batch_size = shape_prod(s, bd, s->rank);
    for (int64_t t = 0; t < batches * per; t++) {
        tuple_offset(n, &in[0], &in[1], bd, k, st, t, &off);
        off += (t / per) * batch_size;
        memcpy((char *)out[0].data + t * slice * es, (const char *)in[0].data + off * es,
               (size_t)(slice * es));
    }
    return KILN_OK;
}

/* ---- reductions of ScatterND and ScatterElements ---- */

enum { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN };

static kiln_status parse_reduction(const ir_node *n, int *red)
{
    static const char *const names[] = {"none", "add", "mul", "max", "min"};
    const char *s = ir_attr_string(n, "reduction");
    for (int i = 0; i < 5; i++)
        if (strcmp(s, names[i]) == 0) {
            *red = i;
            return KILN_OK;
        }
    return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                         "reduction '%s' is unknown, expected none, add, mul, max or min", s);
}

static float reduce_f(int red, float a, float b)
{
    switch (red) {
    case RED_ADD: return a + b;
    case RED_MUL: return a * b;
    case RED_MAX: return a > b ? a : b;
    case RED_MIN: return a < b ? a : b;
    default: return b;
    }
}

/* Integer add and mul wrap (through uint64) rather than overflow. */
static int64_t reduce_i(int red, int64_t a, int64_t b)
{
    switch (red) {
    case RED_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case RED_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case RED_MAX: return a > b ? a : b;
    case RED_MIN: return a < b ? a : b;
    default: return b;
    }
}

static void reduce_into(kiln_dtype dt, int red, void *dst, int64_t di, const void *src, int64_t si)
{
    if (red == RED_NONE) {
        shape_copy_elem(dst, di, src, si, kiln_dtype_size(dt));
        return;
    }
    switch (dt) {
    case KILN_DTYPE_F32: {
        float *a = (float *)dst + di;
        *a = reduce_f(red, *a, ((const float *)src)[si]);
        break;
    }
    case KILN_DTYPE_F16: {
        uint16_t *a = (uint16_t *)dst + di;
        *a = kiln_f32_to_f16(
            reduce_f(red, kiln_f16_to_f32(*a), kiln_f16_to_f32(((const uint16_t *)src)[si])));
        break;
    }
    case KILN_DTYPE_BF16: {
        uint16_t *a = (uint16_t *)dst + di;
        *a = kiln_f32_to_bf16(
            reduce_f(red, kiln_bf16_to_f32(*a), kiln_bf16_to_f32(((const uint16_t *)src)[si])));
        break;
    }
    case KILN_DTYPE_I64: {
        int64_t *a = (int64_t *)dst + di;
        *a = reduce_i(red, *a, ((const int64_t *)src)[si]);
        break;
    }
    case KILN_DTYPE_I32: {
        int32_t *a = (int32_t *)dst + di;
        *a = (int32_t)reduce_i(red, *a, ((const int32_t *)src)[si]);
        break;
    }
    case KILN_DTYPE_I8: {
        int8_t *a = (int8_t *)dst + di;
        *a = (int8_t)reduce_i(red, *a, ((const int8_t *)src)[si]);
        break;
    }
    case KILN_DTYPE_U8: {
        uint8_t *a = (uint8_t *)dst + di;
        *a = (uint8_t)reduce_i(red, *a, ((const uint8_t *)src)[si]);
        break;
    }
    case KILN_DTYPE_BOOL: {
        /* add and max are "or", mul and min are "and". */
        uint8_t *a = (uint8_t *)dst + di, b = ((const uint8_t *)src)[si] != 0;
        *a = (red == RED_ADD || red == RED_MAX) ? (uint8_t)(*a || b) : (uint8_t)(*a && b);
        break;
    }
    default: break;
    }
}

static void copy_data(const ir_tensor *in, ir_tensor *out)
{
    size_t bytes = (size_t)ir_tensor_count(in) * kiln_dtype_size(in->dtype);
    if (bytes && out->data != in->data) memmove(out->data, in->data, bytes);
}

/* ---- ScatterND ---- */

static kiln_status scatter_nd_shape(const ir_node *n, const ir_tensor *in, int32_t *k)
{
    const kiln_dims *s = &in[0].shape, *q = &in[1].shape, *u = &in[2].shape;
    char a[KILN_DIMS_STR_MAX];
    int red = RED_NONE;
    KILN_TRY(parse_reduction(n, &red));
    KILN_TRY(shape_check_index_dtype(n, &in[1], "indices"));
    if (s->rank < 1 || q->rank < 1)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "data is %d-D and indices %d-D, expected both >= 1-D", s->rank,
                             q->rank);
    int64_t last = q->d[q->rank - 1];
    if (last < 1 || last > s->rank)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "indices end in %lld, expected 1..%d (the data rank)", (long long)last,
                             s->rank);
    *k = (int32_t)last;
    if (in[2].dtype != in[0].dtype)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "updates are %s, expected %s like the data",
                             kiln_dtype_name(in[2].dtype), kiln_dtype_name(in[0].dtype));
    int32_t ur = q->rank - 1 + s->rank - *k;
    bool ok = u->rank == ur;
    for (int32_t i = 0; i < q->rank - 1 && ok; i++) ok = u->d[i] == q->d[i];
    for (int32_t i = *k; i < s->rank && ok; i++) ok = u->d[q->rank - 1 + i - *k] == s->d[i];
    if (!ok) {
        kiln_dims want;
        memset(&want, 0, sizeof want);
        for (int32_t i = 0; i < q->rank - 1; i++) want.d[want.rank++] = q->d[i];
        for (int32_t i = *k; i < s->rank && want.rank < KILN_MAX_RANK; i++)
            want.d[want.rank++] = s->d[i];
        char b[KILN_DIMS_STR_MAX];
        return ir_node_error(n, KILN_ERR_SHAPE, "updates are %s, expected %s",
                             kiln_dims_str(u, a, sizeof a), kiln_dims_str(&want, b, sizeof b));
    }
    return KILN_OK;
}

kiln_status shape_infer_scatter_nd(ir_infer *c)
{
    int32_t k = 0;
    KILN_TRY(scatter_nd_shape(c->node, c->in, &k));
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &c->in[0].shape);
}

kiln_status shape_eval_scatter_nd(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                  ir_tensor *out, int32_t n_out)
{
    int32_t k = 0;
    int red = RED_NONE;
    int64_t st[KILN_MAX_RANK], off = 0;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(scatter_nd_shape(n, in, &k));
    KILN_TRY(parse_reduction(n, &red));
    const kiln_dims *s = &in[0].shape;
    int64_t tuples = ir_tensor_count(&in[1]) / k;
    for (int64_t t = 0; t < tuples; t++)
        KILN_TRY(tuple_offset(n, &in[0], &in[1], 0, k, NULL, t, &off));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    kiln_dims_strides(s, st);
    int64_t slice = shape_prod(s, k, s->rank);
    copy_data(&in[0], &out[0]);
    for (int64_t t = 0; t < tuples; t++) {
        tuple_offset(n, &in[0], &in[1], 0, k, st, t, &off);
        for (int64_t e = 0; e < slice; e++)
            reduce_into(in[0].dtype, red, out[0].data, off + e, in[2].data, t * slice + e);
    }
    return KILN_OK;
}

/* ---- ScatterElements ---- */

static kiln_status scatter_elements_shape(const ir_node *n, const ir_tensor *in, int32_t *axis)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    int red = RED_NONE;
    KILN_TRY(parse_reduction(n, &red));
    KILN_TRY(elements_shape(n, &in[0], &in[1], axis));
    if (in[2].dtype != in[0].dtype)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "updates are %s, expected %s like the data",
                             kiln_dtype_name(in[2].dtype), kiln_dtype_name(in[0].dtype));
    if (!kiln_dims_equal(&in[2].shape, &in[1].shape))
        return ir_node_error(n, KILN_ERR_SHAPE, "updates are %s, expected %s like the indices",
                             kiln_dims_str(&in[2].shape, a, sizeof a),
                             kiln_dims_str(&in[1].shape, b, sizeof b));
    return KILN_OK;
}

kiln_status shape_infer_scatter_elements(ir_infer *c)
{
    int32_t axis = 0;
    KILN_TRY(scatter_elements_shape(c->node, c->in, &axis));
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &c->in[0].shape);
}

kiln_status shape_eval_scatter_elements(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                        ir_tensor *out, int32_t n_out)
{
    int32_t axis = 0;
    int red = RED_NONE;
    int64_t st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(scatter_elements_shape(n, in, &axis));
    KILN_TRY(parse_reduction(n, &red));
    KILN_TRY(elements_check(n, &in[0], &in[1], axis));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    copy_data(&in[0], &out[0]);
    kiln_dims_strides(&in[0].shape, st);
    int64_t total = ir_tensor_count(&in[1]);
    for (int64_t j = 0; j < total; j++) {
        reduce_into(in[0].dtype, red, out[0].data,
                    elements_offset(&in[0], &in[1], axis, idx, st, j), in[2].data, j);
        shape_index_next(idx, in[1].shape.d, in[1].shape.rank);
    }
    return KILN_OK;
}

/* ---- Trilu ---- */

kiln_status shape_infer_trilu(ir_infer *c)
{
    const ir_node *n = c->node;
    if (c->in[0].shape.rank < 2)
        return ir_node_error(n, KILN_ERR_SHAPE, "input is %d-D, expected at least 2-D",
                             c->in[0].shape.rank);
    /* k may be a run-time value: the shape does not depend on it. */
    if (shape_has(c->in, c->n_in, 1)) {
        KILN_TRY(shape_check_index_dtype(n, &c->in[1], "k"));
        if (c->in[1].shape.rank > 1 || shape_count(&c->in[1]) != 1)
            return ir_node_error(n, KILN_ERR_SHAPE, "k has %lld elements, expected 1",
                                 (long long)shape_count(&c->in[1]));
    }
    return shape_set_output(n, &c->out[0], c->in[0].dtype, &c->in[0].shape);
}

kiln_status shape_eval_trilu(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    static const uint8_t zero[16] = {0};
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    const kiln_dims *s = &in[0].shape;
    int64_t k = shape_has(in, n_in, 1) ? shape_index_at(&in[1], 0) : 0;
    bool upper = ir_attr_int(n, "upper") != 0;
    int64_t rows = s->d[s->rank - 2], cols = s->d[s->rank - 1];
    int64_t mats = shape_prod(s, 0, s->rank - 2);
    size_t es = kiln_dtype_size(in[0].dtype);
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                int64_t e = (m * rows + i) * cols + j;
                /* j - i is small, so comparing with any k cannot overflow. */
                bool keep = upper ? j - i >= k : j - i <= k;
                if (keep)
                    shape_copy_elem(out[0].data, e, in[0].data, e, es);
                else
                    shape_copy_elem(out[0].data, e, zero, 0, es);
            }
    return KILN_OK;
}

/* ---- OneHot ---- */

static kiln_status onehot_shape(const ir_node *n, const ir_tensor *in, int32_t *axis,
                                int64_t *depth, kiln_dims *d)
{
    const kiln_dims *s = &in[0].shape;
    int64_t ax = ir_attr_int(n, "axis");
    if (s->rank + 1 > KILN_MAX_RANK)
        return ir_node_error(n, KILN_ERR_SHAPE, "indices are %d-D, expected at most %d-D", s->rank,
                             KILN_MAX_RANK - 1);
    if (!ir_axis(ax, s->rank + 1, axis))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "axis %lld is out of range, expected [%d, %d] for %d-D indices",
                             (long long)ax, -s->rank - 1, s->rank, s->rank);
    if (in[1].shape.rank > 1 || shape_count(&in[1]) != 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "depth has %lld elements, expected 1",
                             (long long)shape_count(&in[1]));
    if (!in[1].data)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "input 'depth' must be a constant known at build time");
    /* A non-integer depth is cast to int64, as the spec says. */
    double dv = ir_tensor_get(&in[1], 0);
    if (!(dv >= 1.0 && dv <= (double)KILN_MAX_ELEMENTS))
        return ir_node_error(n, KILN_ERR_SHAPE, "depth is %g, expected 1..%lld", dv,
                             (long long)KILN_MAX_ELEMENTS);
    *depth = (int64_t)dv;
    if (in[2].shape.rank != 1 || in[2].shape.d[0] != 2) {
        char buf[KILN_DIMS_STR_MAX];
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "values are %s, expected 2 elements ([off, on]) in 1-D",
                             kiln_dims_str(&in[2].shape, buf, sizeof buf));
    }
    memset(d, 0, sizeof *d);
    d->rank = s->rank + 1;
    for (int32_t i = 0, j = 0; i < d->rank; i++) d->d[i] = i == *axis ? *depth : s->d[j++];
    return KILN_OK;
}

kiln_status shape_infer_onehot(ir_infer *c)
{
    int32_t axis = 0;
    int64_t depth = 0;
    kiln_dims d;
    KILN_TRY(onehot_shape(c->node, c->in, &axis, &depth, &d));
    return shape_set_output(c->node, &c->out[0], c->in[2].dtype, &d);
}

kiln_status shape_eval_onehot(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    int32_t axis = 0;
    int64_t depth = 0;
    kiln_dims d;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(onehot_shape(n, in, &axis, &depth, &d));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    size_t es = kiln_dtype_size(out[0].dtype);
    int64_t total = kiln_dims_count(&d), count = ir_tensor_count(&in[0]);
    int64_t inner = shape_prod(&in[0].shape, axis, in[0].shape.rank);
    for (int64_t j = 0; j < total; j++) shape_copy_elem(out[0].data, j, in[2].data, 0, es);
    for (int64_t p = 0; p < count; p++) {
        /* Indices of any type are cast to int64; outside [-depth, depth) the row stays off. */
        double v = trunc(ir_tensor_get(&in[0], p));
        if (!(v >= -(double)depth && v < (double)depth)) continue;
        int64_t h = (int64_t)v;
        if (h < 0) h += depth;
        int64_t o = p / inner, i = p % inner;
        shape_copy_elem(out[0].data, (o * depth + h) * inner + i, in[2].data, 1, es);
    }
    return KILN_OK;
}
