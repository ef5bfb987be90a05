/* shape.c - the shape op group's table, its shared checks, and the ops that regroup or
 * describe dimensions: Reshape, Flatten, Squeeze, Unsqueeze, Shape, Size, Concat, Split,
 * Expand, Tile, ConstantOfShape, Range, EyeLike. */
#include <math.h>
#include <string.h>

#include "ir/ops/shape_impl.h"

/* ---- shared checks ---- */

kiln_status shape_const_ints(const ir_node *n, const ir_tensor *in, int32_t i, const char *name,
                             int64_t *vals, int64_t max, int64_t *count)
{
    const ir_tensor *t = &in[i];
    char buf[KILN_DIMS_STR_MAX];
    if (t->shape.rank > 1)
        return ir_node_error(n, KILN_ERR_SHAPE, "input '%s' must be 1-D, got %d-D (%s)", name,
                             t->shape.rank, kiln_dims_str(&t->shape, buf, sizeof buf));
    int64_t cnt = t->shape.rank == 0 ? 1 : t->shape.d[0];
    if (!t->data && cnt > 0)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "input '%s' must be a constant known at build time", name);
    if (t->dtype != KILN_DTYPE_I64 && t->dtype != KILN_DTYPE_I32)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input '%s' must be i64 or i32, got %s",
                             name, kiln_dtype_name(t->dtype));
    if (cnt > max)
        return ir_node_error(n, KILN_ERR_SHAPE, "input '%s' has %lld values, expected at most %lld",
                             name, (long long)cnt, (long long)max);
    if (cnt == 0) {
        *count = 0;
        return KILN_OK;
    }
    if (!ir_tensor_ints(t, vals, max, count))
        return ir_node_error(n, KILN_ERR_INTERNAL, "input '%s' could not be read", name);
    return KILN_OK;
}

kiln_status shape_axes(const ir_node *n, const int64_t *axes, int64_t count, int32_t rank,
                       const char *what, int32_t *out)
{
    for (int64_t i = 0; i < count; i++) {
        if (!ir_axis(axes[i], rank, &out[i]))
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "%s value %lld is out of range, expected [%d, %d] for rank %d",
                                 what, (long long)axes[i], -rank, rank - 1, rank);
        for (int64_t j = 0; j < i; j++)
            if (out[j] == out[i])
                return ir_node_error(n, KILN_ERR_SHAPE, "%s names axis %d twice", what, out[i]);
    }
    return KILN_OK;
}

kiln_status shape_set_output(const ir_node *n, ir_tensor *out, kiln_dtype dtype, const kiln_dims *d)
{
    char buf[KILN_DIMS_STR_MAX];
    int64_t cnt;
    if (d->rank < 0 || d->rank > KILN_MAX_RANK)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "output would be %d-D, expected at most %d dimensions", d->rank,
                             KILN_MAX_RANK);
    for (int32_t i = 0; i < d->rank; i++)
        if (d->d[i] < 0 || d->d[i] > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "output dimension %d would be %lld", i,
                                 (long long)d->d[i]);
    if (!kiln_dims_numel(d, &cnt))
        return ir_node_error(n, KILN_ERR_SHAPE, "output shape %s has more than %lld elements",
                             kiln_dims_str(d, buf, sizeof buf), (long long)KILN_MAX_ELEMENTS);
    memset(&out->shape, 0, sizeof out->shape);
    out->dtype = dtype;
    out->shape.rank = d->rank;
    for (int32_t i = 0; i < d->rank; i++) out->shape.d[i] = d->d[i];
    return KILN_OK;
}

kiln_status shape_check_output(const ir_node *n, const ir_tensor *out, const kiln_dims *want)
{
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    if (!kiln_dims_equal(&out->shape, want))
        return ir_node_error(n, KILN_ERR_INTERNAL, "output buffer is %s, the inputs give %s",
                             kiln_dims_str(&out->shape, a, sizeof a),
                             kiln_dims_str(want, b, sizeof b));
    if (!out->data && kiln_dims_count(want) > 0)
        return ir_node_error(n, KILN_ERR_INTERNAL, "output buffer is missing");
    return KILN_OK;
}

kiln_status shape_check_index_dtype(const ir_node *n, const ir_tensor *t, const char *name)
{
    if (t->dtype != KILN_DTYPE_I64 && t->dtype != KILN_DTYPE_I32)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input '%s' must be i64 or i32, got %s",
                             name, kiln_dtype_name(t->dtype));
    return KILN_OK;
}

kiln_status shape_eval_guard(const ir_node *n, const ir_tensor *in, int32_t n_in,
                             const ir_tensor *out, int32_t n_out)
{
    ir_tensor want[128];
    if (n_out < 1 || n_out > 128)
        return ir_node_error(n, KILN_ERR_INTERNAL, "eval got %d outputs", n_out);
    memset(want, 0, sizeof(ir_tensor) * (size_t)n_out);
    ir_infer c = {.node = n, .n_in = n_in, .n_out = n_out, .in = in, .out = want};
    KILN_TRY(n->op->infer(&c));
    for (int32_t i = 0; i < n_out; i++) {
        if (want[i].dtype != out[i].dtype)
            return ir_node_error(n, KILN_ERR_INTERNAL, "output %d buffer is %s, the inputs give %s",
                                 i, kiln_dtype_name(out[i].dtype), kiln_dtype_name(want[i].dtype));
        KILN_TRY(shape_check_output(n, &out[i], &want[i].shape));
    }
    /* Inputs that hold data fit KILN_MAX_ELEMENTS, so products over their dimensions
     * cannot overflow once they hold an element. */
    bool shape_only = (n->op->flags & IR_OP_SHAPE_ONLY) != 0;
    for (int32_t i = 0; i < n_in && !shape_only; i++) {
        int64_t cnt;
        if (!ir_tensor_present(&in[i])) continue;
        if (!kiln_dims_numel(&in[i].shape, &cnt))
            return ir_node_error(n, KILN_ERR_SHAPE, "input %d has more than %lld elements", i,
                                 (long long)KILN_MAX_ELEMENTS);
        if (!in[i].data && cnt > 0)
            return ir_node_error(n, KILN_ERR_INTERNAL, "input %d has no data", i);
    }
    return KILN_OK;
}

void shape_strided_copy(void *dst, const void *src, size_t es, const kiln_dims *out,
                        const int64_t *st, int64_t base)
{
    int64_t total = kiln_dims_count(out);
    int32_t r = out->rank;
    if (total == 0) return;
    if (r == 0) {
        shape_copy_elem(dst, 0, src, base, es);
        return;
    }
    int64_t idx[KILN_MAX_RANK] = {0};
    int64_t row = out->d[r - 1], rs = st[r - 1];
    for (int64_t j = 0; j < total; j += row) {
        int64_t off = base;
        for (int32_t k = 0; k < r - 1; k++) off += idx[k] * st[k];
        if (rs == 1)
            memcpy((char *)dst + j * (int64_t)es, (const char *)src + off * (int64_t)es,
                   (size_t)row * es);
        else
            for (int64_t i = 0; i < row; i++) shape_copy_elem(dst, j + i, src, off + i * rs, es);
        shape_index_next(idx, out->d, r - 1);
    }
}

/* ---- ops whose output is input 0's bytes: Reshape, Flatten, Squeeze, Unsqueeze ---- */

static kiln_status eval_alias(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    size_t bytes = (size_t)ir_tensor_count(&out[0]) * kiln_dtype_size(in[0].dtype);
    if (bytes && out[0].data != in[0].data) memmove(out[0].data, in[0].data, bytes);
    return KILN_OK;
}

/* ---- Reshape ---- */

static kiln_status infer_reshape(ir_infer *c)
{
    const ir_node *n = c->node;
    const kiln_dims *src = &c->in[0].shape;
    int64_t want[KILN_MAX_RANK], cnt = 0;
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    KILN_TRY(shape_const_ints(n, c->in, 1, "shape", want, KILN_MAX_RANK, &cnt));
    bool allowzero = ir_attr_int(n, "allowzero") != 0;
    kiln_dims asked = kiln_dims_make((int32_t)cnt, want), d = asked;
    int32_t free_at = -1;
    bool has_zero = false;
    int64_t known = 1;
    for (int32_t i = 0; i < d.rank; i++) {
        int64_t v = want[i];
        if (v == -1) {
            if (free_at >= 0)
                return ir_node_error(n, KILN_ERR_SHAPE,
                                     "shape %s has -1 at %d and %d, expected at most one",
                                     kiln_dims_str(&asked, a, sizeof a), free_at, i);
            free_at = i;
            continue;
        }
        if (v < -1)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "shape %s has %lld at %d, expected a size, 0 or -1",
                                 kiln_dims_str(&asked, a, sizeof a), (long long)v, i);
        if (v == 0) {
            has_zero = true;
            if (!allowzero) {
                if (i >= src->rank)
                    return ir_node_error(n, KILN_ERR_SHAPE,
                                         "shape %s copies dimension %d with 0, but the input %s "
                                         "has only %d",
                                         kiln_dims_str(&asked, a, sizeof a), i,
                                         kiln_dims_str(src, b, sizeof b), src->rank);
                v = src->d[i];
            }
        }
        d.d[i] = v;
        if (!kiln_mul_ok(known, v, &known) || known > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "shape %s for input %s has more than %lld elements",
                                 kiln_dims_str(&asked, a, sizeof a),
                                 kiln_dims_str(src, b, sizeof b), (long long)KILN_MAX_ELEMENTS);
    }
    if (allowzero && has_zero && free_at >= 0)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "shape %s has both 0 and -1, which allowzero=1 forbids",
                             kiln_dims_str(&asked, a, sizeof a));
    int64_t total;
    if (!kiln_dims_numel(src, &total))
        return ir_node_error(n, KILN_ERR_SHAPE, "input %s has too many elements",
                             kiln_dims_str(src, a, sizeof a));
    if (free_at >= 0) {
        if (known == 0 || total % known != 0)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "cannot reshape %s (%lld elements) to %s: no size for -1 "
                                 "fits",
                                 kiln_dims_str(src, a, sizeof a), (long long)total,
                                 kiln_dims_str(&asked, b, sizeof b));
        d.d[free_at] = total / known;
    } else if (known != total) {
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "cannot reshape %s (%lld elements) to %s (%lld elements)",
                             kiln_dims_str(src, a, sizeof a), (long long)total,
                             kiln_dims_str(&d, b, sizeof b), (long long)known);
    }
    return shape_set_output(n, &c->out[0], c->in[0].dtype, &d);
}

/* ---- Flatten ---- */

static kiln_status infer_flatten(ir_infer *c)
{
    const kiln_dims *s = &c->in[0].shape;
    int64_t axis = ir_attr_int(c->node, "axis");
    if (axis < -(int64_t)s->rank || axis > s->rank)
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "axis %lld is out of range, expected [%d, %d] for a %d-D input",
                             (long long)axis, -s->rank, s->rank, s->rank);
    if (axis < 0) axis += s->rank;
    kiln_dims d = {
        2, {shape_prod_sat(s, 0, (int32_t)axis), shape_prod_sat(s, (int32_t)axis, s->rank)}};
    if (d.d[0] == INT64_MAX || d.d[1] == INT64_MAX) {
        char buf[KILN_DIMS_STR_MAX];
        return ir_node_error(c->node, KILN_ERR_SHAPE, "input %s is too large to flatten",
                             kiln_dims_str(s, buf, sizeof buf));
    }
    return shape_set_output(c->node, &c->out[0], c->in[0].dtype, &d);
}

/* ---- Squeeze ---- */

static kiln_status infer_squeeze(ir_infer *c)
{
    const ir_node *n = c->node;
    const kiln_dims *s = &c->in[0].shape;
    char buf[KILN_DIMS_STR_MAX];
    bool drop[KILN_MAX_RANK] = {false};
    int64_t axes[KILN_MAX_RANK], cnt = 0;
    int32_t ax[KILN_MAX_RANK];
    if (shape_has(c->in, c->n_in, 1))
        KILN_TRY(shape_const_ints(n, c->in, 1, "axes", axes, KILN_MAX_RANK, &cnt));
    /* An empty axes list squeezes every 1, as an absent one does (what exporters mean). */
    if (cnt == 0) {
        for (int32_t i = 0; i < s->rank; i++) drop[i] = s->d[i] == 1;
    } else {
        KILN_TRY(shape_axes(n, axes, cnt, s->rank, "axes", ax));
        for (int64_t i = 0; i < cnt; i++) {
            if (s->d[ax[i]] != 1)
                return ir_node_error(
                    n, KILN_ERR_SHAPE, "cannot squeeze axis %d of %s: its size is %lld, expected 1",
                    ax[i], kiln_dims_str(s, buf, sizeof buf), (long long)s->d[ax[i]]);
            drop[ax[i]] = true;
        }
    }
    kiln_dims d;
    memset(&d, 0, sizeof d);
    for (int32_t i = 0; i < s->rank; i++)
        if (!drop[i]) d.d[d.rank++] = s->d[i];
    return shape_set_output(n, &c->out[0], c->in[0].dtype, &d);
}

/* ---- Unsqueeze ---- */

static kiln_status infer_unsqueeze(ir_infer *c)
{
    const ir_node *n = c->node;
    const kiln_dims *s = &c->in[0].shape;
    int64_t axes[KILN_MAX_RANK], cnt = 0;
    int32_t ax[KILN_MAX_RANK];
    KILN_TRY(shape_const_ints(n, c->in, 1, "axes", axes, KILN_MAX_RANK, &cnt));
    int64_t r = s->rank + cnt;
    if (r > KILN_MAX_RANK)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "%d-D input plus %lld axes would be %lld-D, expected at most %d",
                             s->rank, (long long)cnt, (long long)r, KILN_MAX_RANK);
    KILN_TRY(shape_axes(n, axes, cnt, (int32_t)r, "axes", ax));
    bool added[KILN_MAX_RANK] = {false};
    for (int64_t i = 0; i < cnt; i++) added[ax[i]] = true;
    kiln_dims d;
    memset(&d, 0, sizeof d);
    d.rank = (int32_t)r;
    for (int32_t i = 0, j = 0; i < d.rank; i++) d.d[i] = added[i] ? 1 : s->d[j++];
    return shape_set_output(n, &c->out[0], c->in[0].dtype, &d);
}

/* ---- Shape, Size: read only input 0's shape (IR_OP_SHAPE_ONLY) ---- */

static void shape_range(const ir_node *n, int32_t rank, int64_t *start, int64_t *end)
{
    /* Opset 15: negative ends count from the back, then both clamp to [0, rank]. */
    int64_t s = ir_attr_int(n, "start"), e = ir_attr_int(n, "end");
    if (s < 0) s += rank;
    if (e < 0) e += rank;
    *start = s < 0 ? 0 : s > rank ? rank : s;
    *end = e < 0 ? 0 : e > rank ? rank : e;
    if (*end < *start) *end = *start;
}

static kiln_status infer_shape(ir_infer *c)
{
    int64_t s, e;
    shape_range(c->node, c->in[0].shape.rank, &s, &e);
    kiln_dims d = {1, {e - s}};
    return shape_set_output(c->node, &c->out[0], KILN_DTYPE_I64, &d);
}

static kiln_status eval_shape(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    int64_t s, e;
    shape_range(n, in[0].shape.rank, &s, &e);
    for (int64_t i = s; i < e; i++) ((int64_t *)out[0].data)[i - s] = in[0].shape.d[i];
    return KILN_OK;
}

static kiln_status infer_size(ir_infer *c)
{
    kiln_dims d = {0, {0}};
    int64_t cnt;
    if (!kiln_dims_numel(&c->in[0].shape, &cnt))
        return ir_node_error(c->node, KILN_ERR_SHAPE, "input has more than %lld elements",
                             (long long)KILN_MAX_ELEMENTS);
    return shape_set_output(c->node, &c->out[0], KILN_DTYPE_I64, &d);
}

static kiln_status eval_size(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    int64_t cnt = 0;
    kiln_dims_numel(&in[0].shape, &cnt);
    *(int64_t *)out[0].data = cnt;
    return KILN_OK;
}

/* ---- Concat ---- */

static kiln_status infer_concat(ir_infer *c)
{
    const ir_node *n = c->node;
    const ir_tensor *in = c->in;
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    for (int32_t i = 0; i < c->n_in; i++)
        if (!ir_tensor_present(&in[i]))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input %d is absent, expected a tensor",
                                 i);
    int32_t r = in[0].shape.rank, axis;
    if (r == 0) return ir_node_error(n, KILN_ERR_SHAPE, "cannot concatenate 0-D tensors");
    if (!ir_axis(ir_attr_int(n, "axis"), r, &axis))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "axis %lld is out of range, expected [%d, %d] for %d-D inputs",
                             (long long)ir_attr_int(n, "axis"), -r, r - 1, r);
    kiln_dims d = in[0].shape;
    d.d[axis] = 0;
    for (int32_t i = 0; i < c->n_in; i++) {
        const kiln_dims *s = &in[i].shape;
        if (in[i].dtype != in[0].dtype)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "input %d is %s, expected %s like input 0", i,
                                 kiln_dtype_name(in[i].dtype), kiln_dtype_name(in[0].dtype));
        bool ok = s->rank == r;
        for (int32_t k = 0; k < r && ok; k++)
            if (k != axis && s->d[k] != in[0].shape.d[k]) ok = false;
        if (!ok)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "input %d is %s, expected %s (input 0) in every dimension but "
                                 "axis %d",
                                 i, kiln_dims_str(s, a, sizeof a),
                                 kiln_dims_str(&in[0].shape, b, sizeof b), axis);
        if (s->d[axis] > KILN_MAX_ELEMENTS - d.d[axis])
            return ir_node_error(n, KILN_ERR_SHAPE, "concatenated axis %d is too long", axis);
        d.d[axis] += s->d[axis];
    }
    return shape_set_output(n, &c->out[0], in[0].dtype, &d);
}

static kiln_status eval_concat(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                               int32_t n_out)
{
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    int32_t r = out[0].shape.rank, axis = 0;
    ir_axis(ir_attr_int(n, "axis"), r, &axis);
    int64_t es = (int64_t)kiln_dtype_size(out[0].dtype);
    int64_t outer = shape_prod(&out[0].shape, 0, axis);
    int64_t inner = shape_prod(&out[0].shape, axis + 1, r) * es;
    char *dst = out[0].data;
    for (int64_t o = 0; o < outer; o++)
        for (int32_t i = 0; i < n_in; i++) {
            int64_t bytes = in[i].shape.d[axis] * inner;
            if (bytes) memcpy(dst, (const char *)in[i].data + o * bytes, (size_t)bytes);
            dst += bytes;
        }
    return KILN_OK;
}

/* ---- Split ---- */

static kiln_status split_plan(const ir_node *n, const ir_tensor *in, int32_t n_in, int32_t n_out,
                              int32_t *axis, int64_t *sizes)
{
    const kiln_dims *s = &in[0].shape;
    int64_t a = ir_attr_int(n, "axis"), parts = ir_attr_int(n, "num_outputs");
    if (!ir_axis(a, s->rank, axis))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "axis %lld is out of range, expected [%d, %d] for a %d-D input",
                             (long long)a, -s->rank, s->rank - 1, s->rank);
    int64_t dim = s->d[*axis];
    if (dim > KILN_MAX_ELEMENTS)
        return ir_node_error(n, KILN_ERR_SHAPE, "axis %d of size %lld is too long", *axis,
                             (long long)dim);
    if (shape_has(in, n_in, 1)) {
        int64_t cnt = 0, sum = 0;
        if (parts != 0)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "both input 'split' and attribute 'num_outputs' are given, "
                                 "expected one");
        KILN_TRY(shape_const_ints(n, in, 1, "split", sizes, 128, &cnt));
        if (cnt != n_out)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "split has %lld sizes, expected %d (one per output)",
                                 (long long)cnt, n_out);
        for (int32_t i = 0; i < n_out; i++) {
            if (sizes[i] < 0 || sizes[i] > dim - sum)
                return ir_node_error(n, KILN_ERR_SHAPE,
                                     "split sizes do not add up to %lld (axis %d): size %d is %lld",
                                     (long long)dim, *axis, i, (long long)sizes[i]);
            sum += sizes[i];
        }
        if (sum != dim)
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "split sizes add up to %lld, expected %lld (axis %d)",
                                 (long long)sum, (long long)dim, *axis);
        return KILN_OK;
    }
    if (parts < 0 || (parts != 0 && parts != n_out))
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "num_outputs is %lld, expected %d (the outputs)", (long long)parts,
                             n_out);
    /* num_outputs (opset 18) rounds the chunk up and leaves the rest to the last output;
     * with neither input nor attribute, older opsets demand equal parts. */
    int64_t chunk = (dim + n_out - 1) / n_out;
    if (parts == 0 && dim % n_out != 0)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "cannot split axis %d of size %lld into %d equal parts", *axis,
                             (long long)dim, n_out);
    for (int32_t i = 0; i < n_out; i++) sizes[i] = chunk;
    sizes[n_out - 1] = dim - chunk * (n_out - 1);
    if (sizes[n_out - 1] < 0)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "cannot split axis %d of size %lld into %d outputs of %lld (the "
                             "last would get %lld)",
                             *axis, (long long)dim, n_out, (long long)chunk,
                             (long long)sizes[n_out - 1]);
    return KILN_OK;
}

static kiln_status infer_split(ir_infer *c)
{
    int64_t sizes[128];
    int32_t axis;
    if (c->in[0].shape.rank == 0)
        return ir_node_error(c->node, KILN_ERR_SHAPE, "cannot split a 0-D tensor");
    KILN_TRY(split_plan(c->node, c->in, c->n_in, c->n_out, &axis, sizes));
    for (int32_t i = 0; i < c->n_out; i++) {
        kiln_dims d = c->in[0].shape;
        d.d[axis] = sizes[i];
        KILN_TRY(shape_set_output(c->node, &c->out[i], c->in[0].dtype, &d));
    }
    return KILN_OK;
}

static kiln_status eval_split(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    int64_t sizes[128];
    int32_t axis;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(split_plan(n, in, n_in, n_out, &axis, sizes));
    const kiln_dims *s = &in[0].shape;
    if (ir_tensor_count(&in[0]) == 0) return KILN_OK;
    int64_t inner = shape_prod(s, axis + 1, s->rank) * (int64_t)kiln_dtype_size(in[0].dtype);
    int64_t outer = shape_prod(s, 0, axis);
    const char *src = in[0].data;
    for (int64_t o = 0; o < outer; o++)
        for (int32_t i = 0; i < n_out; i++) {
            int64_t bytes = sizes[i] * inner;
            if (bytes) memcpy((char *)out[i].data + o * bytes, src, (size_t)bytes);
            src += bytes;
        }
    return KILN_OK;
}

/* ---- Expand ---- */

static kiln_status infer_expand(ir_infer *c)
{
    const ir_node *n = c->node;
    int64_t v[KILN_MAX_RANK], cnt = 0;
    char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
    KILN_TRY(shape_const_ints(n, c->in, 1, "shape", v, KILN_MAX_RANK, &cnt));
    kiln_dims want = kiln_dims_make((int32_t)cnt, v), d;
    for (int32_t i = 0; i < want.rank; i++)
        if (want.d[i] < 0)
            return ir_node_error(n, KILN_ERR_SHAPE, "shape %s has a negative size",
                                 kiln_dims_str(&want, a, sizeof a));
    if (!ir_broadcast(&c->in[0].shape, &want, &d))
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "cannot expand %s to %s: aligned from the right, each pair of sizes "
                             "must be equal or one of them 1",
                             kiln_dims_str(&c->in[0].shape, a, sizeof a),
                             kiln_dims_str(&want, b, sizeof b));
    return shape_set_output(n, &c->out[0], c->in[0].dtype, &d);
}

static kiln_status eval_expand(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                               int32_t n_out)
{
    int64_t st[KILN_MAX_RANK];
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    ir_broadcast_strides(&in[0].shape, &out[0].shape, st);
    shape_strided_copy(out[0].data, in[0].data, kiln_dtype_size(in[0].dtype), &out[0].shape, st, 0);
    return KILN_OK;
}

/* ---- Tile ---- */

static kiln_status infer_tile(ir_infer *c)
{
    const ir_node *n = c->node;
    const kiln_dims *s = &c->in[0].shape;
    int64_t rep[KILN_MAX_RANK], cnt = 0;
    KILN_TRY(shape_const_ints(n, c->in, 1, "repeats", rep, KILN_MAX_RANK, &cnt));
    if (cnt != s->rank)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "repeats has %lld values, expected %d (the input rank)",
                             (long long)cnt, s->rank);
    kiln_dims d = *s;
    for (int32_t i = 0; i < s->rank; i++) {
        if (rep[i] < 0)
            return ir_node_error(n, KILN_ERR_SHAPE, "repeats[%d] is %lld, expected >= 0", i,
                                 (long long)rep[i]);
        if (!kiln_mul_ok(s->d[i], rep[i], &d.d[i]) || d.d[i] > KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "tiling axis %d (%lld) %lld times is too large",
                                 i, (long long)s->d[i], (long long)rep[i]);
    }
    return shape_set_output(n, &c->out[0], c->in[0].dtype, &d);
}

static kiln_status eval_tile(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    const kiln_dims *s = &in[0].shape, *o = &out[0].shape;
    int32_t r = s->rank;
    size_t es = kiln_dtype_size(in[0].dtype);
    int64_t total = kiln_dims_count(o), st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0};
    if (total == 0) return KILN_OK;
    if (r == 0) {
        memcpy(out[0].data, in[0].data, es);
        return KILN_OK;
    }
    kiln_dims_strides(s, st);
    int64_t row = o->d[r - 1], in_row = s->d[r - 1];
    for (int64_t j = 0; j < total; j += row) {
        int64_t off = 0;
        for (int32_t k = 0; k < r - 1; k++) off += (idx[k] % s->d[k]) * st[k];
        for (int64_t i = 0; i < row; i += in_row)
            memcpy((char *)out[0].data + (j + i) * (int64_t)es,
                   (const char *)in[0].data + off * (int64_t)es, (size_t)in_row * es);
        shape_index_next(idx, o->d, r - 1);
    }
    return KILN_OK;
}

/* ---- ConstantOfShape ---- */

/* ONNX gives the fill value as a one-element tensor attribute; kiln's attributes are
 * scalars, so the layer takes `value` (float) and `dtype` (an ONNX dtype number, f32 by
 * default) and the ONNX importer converts. */
static kiln_status infer_constant_of_shape(ir_infer *c)
{
    const ir_node *n = c->node;
    int64_t v[KILN_MAX_RANK], cnt = 0, dt = ir_attr_int(n, "dtype");
    char a[KILN_DIMS_STR_MAX];
    KILN_TRY(shape_const_ints(n, c->in, 0, "input", v, KILN_MAX_RANK, &cnt));
    kiln_dims d = kiln_dims_make((int32_t)cnt, v);
    for (int32_t i = 0; i < d.rank; i++)
        if (d.d[i] < 0)
            return ir_node_error(n, KILN_ERR_SHAPE, "shape %s has a negative size",
                                 kiln_dims_str(&d, a, sizeof a));
    if (dt <= 0 || dt > 255 || kiln_dtype_size((kiln_dtype)dt) == 0)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED, "dtype %lld is not a kiln dtype",
                             (long long)dt);
    return shape_set_output(n, &c->out[0], (kiln_dtype)dt, &d);
}

static kiln_status eval_constant_of_shape(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                          ir_tensor *out, int32_t n_out)
{
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    double v = ir_attr_float(n, "value");
    int64_t cnt = ir_tensor_count(&out[0]);
    size_t es = kiln_dtype_size(out[0].dtype);
    if (cnt == 0) return KILN_OK;
    ir_tensor_set(&out[0], 0, v);
    for (int64_t i = 1; i < cnt; i++) shape_copy_elem(out[0].data, i, out[0].data, 0, es);
    return KILN_OK;
}

/* ---- Range ---- */

typedef struct range_args {
    kiln_dtype dtype;
    int64_t start, delta; /* integer dtypes */
    float fstart, fdelta; /* f32, f16, bf16 */
    int64_t count;
} range_args;

/* The one value of a f32, f16 or bf16 scalar. */
static float range_float(const ir_tensor *t)
{
    uint16_t h = t->dtype == KILN_DTYPE_F32 ? 0 : ((const uint16_t *)t->data)[0];
    switch (t->dtype) {
    case KILN_DTYPE_F16: return kiln_f16_to_f32(h);
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(h);
    default: return ((const float *)t->data)[0];
    }
}

static kiln_status range_plan(const ir_node *n, const ir_tensor *in, range_args *r)
{
    static const char *const names[3] = {"start", "limit", "delta"};
    kiln_dtype dt = in[0].dtype;
    bool is_float = dt == KILN_DTYPE_F32 || dt == KILN_DTYPE_F16 || dt == KILN_DTYPE_BF16;
    if (!is_float && dt != KILN_DTYPE_I64 && dt != KILN_DTYPE_I32)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                             "input 'start' is %s, expected f32, f16, bf16, i64 or i32",
                             kiln_dtype_name(dt));
    for (int32_t i = 0; i < 3; i++) {
        if (in[i].dtype != dt)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "input '%s' is %s, expected %s like 'start'", names[i],
                                 kiln_dtype_name(in[i].dtype), kiln_dtype_name(dt));
        if (in[i].shape.rank > 1 || ir_tensor_count(&in[i]) != 1)
            return ir_node_error(n, KILN_ERR_SHAPE, "input '%s' must be a scalar", names[i]);
        if (!in[i].data)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED,
                                 "input '%s' must be a constant known at build time", names[i]);
    }
    r->dtype = dt;
    if (is_float) {
        float s = range_float(&in[0]), l = range_float(&in[1]), d = range_float(&in[2]);
        double cnt = ceil(((double)l - (double)s) / (double)d);
        if (!isfinite(s) || !isfinite(l) || !isfinite(d) || d == 0.0f)
            return ir_node_error(
                n, KILN_ERR_INVALID_GRAPH,
                "start %g, limit %g, delta %g: expected finite values and delta != 0", (double)s,
                (double)l, (double)d);
        if (cnt > (double)KILN_MAX_ELEMENTS)
            return ir_node_error(n, KILN_ERR_SHAPE, "range of %g elements is too long", cnt);
        r->fstart = s;
        r->fdelta = d;
        r->count = cnt > 0 ? (int64_t)cnt : 0;
        return KILN_OK;
    }
    int64_t s = shape_index_at(&in[0], 0), l = shape_index_at(&in[1], 0),
            d = shape_index_at(&in[2], 0);
    if (d == 0) return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "delta is 0, expected non-zero");
    /* Unsigned differences: limit - start may not fit in int64. */
    uint64_t span, step;
    if (d > 0) {
        span = l > s ? (uint64_t)l - (uint64_t)s : 0;
        step = (uint64_t)d;
    } else {
        span = s > l ? (uint64_t)s - (uint64_t)l : 0;
        step = (uint64_t)0 - (uint64_t)d;
    }
    uint64_t cnt = span / step + (span % step != 0);
    if (cnt > (uint64_t)KILN_MAX_ELEMENTS)
        return ir_node_error(n, KILN_ERR_SHAPE, "range of %llu elements is too long",
                             (unsigned long long)cnt);
    r->start = s;
    r->delta = d;
    r->count = (int64_t)cnt;
    return KILN_OK;
}

static kiln_status infer_range(ir_infer *c)
{
    range_args r;
    KILN_TRY(range_plan(c->node, c->in, &r));
    kiln_dims d = {1, {r.count}};
    return shape_set_output(c->node, &c->out[0], r.dtype, &d);
}

static kiln_status eval_range(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                              int32_t n_out)
{
    range_args r;
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    KILN_TRY(range_plan(n, in, &r));
    for (int64_t i = 0; i < r.count; i++) {
        if (r.dtype == KILN_DTYPE_F32) {
            /* ONNX defines element i as start + i * delta in the input type. */
            ((float *)out[0].data)[i] = r.fstart + (float)i * r.fdelta;
        } else if (r.dtype == KILN_DTYPE_F16 || r.dtype == KILN_DTYPE_BF16) {
            /* Half types: computed wider and rounded once, as the ONNX reference's
             * np.arange(...).astype(half) does. */
            float v = (float)((double)r.fstart + (double)i * (double)r.fdelta);
            ((uint16_t *)out[0].data)[i] =
                r.dtype == KILN_DTYPE_F16 ? kiln_f32_to_f16(v) : kiln_f32_to_bf16(v);
        } else {
            /* Stays between start and limit, so the wrapped sum is the true value. */
            int64_t v = (int64_t)((uint64_t)r.start + (uint64_t)i * (uint64_t)r.delta);
            if (r.dtype == KILN_DTYPE_I64)
                ((int64_t *)out[0].data)[i] = v;
            else
                ((int32_t *)out[0].data)[i] = (int32_t)v;
        }
    }
    return KILN_OK;
}

/* ---- EyeLike: depends only on the input's shape ---- */

static kiln_status infer_eye_like(ir_infer *c)
{
    const ir_node *n = c->node;
    int64_t dt = ir_attr_int(n, "dtype");
    if (c->in[0].shape.rank != 2)
        return ir_node_error(n, KILN_ERR_SHAPE, "input is %d-D, expected 2-D", c->in[0].shape.rank);
    if (dt == 0) dt = c->in[0].dtype;
    if (dt < 0 || dt > 255 || kiln_dtype_size((kiln_dtype)dt) == 0)
        return ir_node_error(n, KILN_ERR_UNSUPPORTED, "dtype %lld is not a kiln dtype",
                             (long long)dt);
    return shape_set_output(n, &c->out[0], (kiln_dtype)dt, &c->in[0].shape);
}

static kiln_status eval_eye_like(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out)
{
    KILN_TRY(shape_eval_guard(n, in, n_in, out, n_out));
    int64_t rows = out[0].shape.d[0], cols = out[0].shape.d[1], k = ir_attr_int(n, "k");
    memset(out[0].data, 0, (size_t)(rows * cols) * kiln_dtype_size(out[0].dtype));
    if (k >= cols || k <= -rows) return KILN_OK;
    for (int64_t i = 0; i < rows; i++)
        if (i + k >= 0 && i + k < cols) ir_tensor_set(&out[0], i * cols + i + k, 1.0);
    return KILN_OK;
}

/* ---- the group table ---- */

static const ir_attr_def concat_attrs[] = {
    {.name = "axis", .type = KILN_ATTR_INT, .required = true}};
static const ir_attr_def split_attrs[] = {
    {.name = "axis", .type = KILN_ATTR_INT, .i = 0},
    {.name = "num_outputs", .type = KILN_ATTR_INT, .i = 0},
};
static const ir_attr_def reshape_attrs[] = {{.name = "allowzero", .type = KILN_ATTR_INT, .i = 0}};
static const ir_attr_def flatten_attrs[] = {{.name = "axis", .type = KILN_ATTR_INT, .i = 1}};
static const ir_attr_def shape_attrs[] = {
    {.name = "start", .type = KILN_ATTR_INT, .i = 0},
    {.name = "end", .type = KILN_ATTR_INT, .i = INT64_MAX}, /* absent: up to the last axis */
};
static const ir_attr_def const_of_shape_attrs[] = {
    {.name = "value", .type = KILN_ATTR_FLOAT, .f = 0.0f},
    {.name = "dtype", .type = KILN_ATTR_INT, .i = KILN_DTYPE_F32},
};
static const ir_attr_def eye_like_attrs[] = {
    {.name = "dtype", .type = KILN_ATTR_INT, .i = 0}, /* 0: the input's dtype */
    {.name = "k", .type = KILN_ATTR_INT, .i = 0},
};
static const ir_attr_def transpose_attrs[] = {{.name = "perm", .type = KILN_ATTR_INTS}};
static const ir_attr_def pad_attrs[] = {
    {.name = "mode", .type = KILN_ATTR_STRING, .s = "constant"}};
static const ir_attr_def gather_attrs[] = {{.name = "axis", .type = KILN_ATTR_INT, .i = 0}};
static const ir_attr_def gather_nd_attrs[] = {
    {.name = "batch_dims", .type = KILN_ATTR_INT, .i = 0}};
static const ir_attr_def scatter_nd_attrs[] = {
    {.name = "reduction", .type = KILN_ATTR_STRING, .s = "none"},
};
static const ir_attr_def scatter_elements_attrs[] = {
    {.name = "axis", .type = KILN_ATTR_INT, .i = 0},
    {.name = "reduction", .type = KILN_ATTR_STRING, .s = "none"},
};
static const ir_attr_def trilu_attrs[] = {{.name = "upper", .type = KILN_ATTR_INT, .i = 1}};
static const ir_attr_def onehot_attrs[] = {{.name = "axis", .type = KILN_ATTR_INT, .i = -1}};
static const ir_attr_def resize_attrs[] = {
    {.name = "antialias", .type = KILN_ATTR_INT, .i = 0},
    {.name = "axes", .type = KILN_ATTR_INTS},
    {.name = "coordinate_transformation_mode", .type = KILN_ATTR_STRING, .s = "half_pixel"},
    {.name = "cubic_coeff_a", .type = KILN_ATTR_FLOAT, .f = -0.75f},
    {.name = "exclude_outside", .type = KILN_ATTR_INT, .i = 0},
    {.name = "extrapolation_value", .type = KILN_ATTR_FLOAT, .f = 0.0f},
    {.name = "keep_aspect_ratio_policy", .type = KILN_ATTR_STRING, .s = "stretch"},
    {.name = "mode", .type = KILN_ATTR_STRING, .s = "nearest"},
    {.name = "nearest_mode", .type = KILN_ATTR_STRING, .s = "round_prefer_floor"},
};

#define ATTRS(a) a, (int32_t)(sizeof a / sizeof *a)

const ir_op ir_ops_shape[] = {
    {"Reshape", 2, 2, 1, 1, ATTRS(reshape_attrs), infer_reshape, eval_alias, IR_OP_ALIAS},
    {"Flatten", 1, 1, 1, 1, ATTRS(flatten_attrs), infer_flatten, eval_alias, IR_OP_ALIAS},
    {"Squeeze", 1, 2, 1, 1, NULL, 0, infer_squeeze, eval_alias, IR_OP_ALIAS},
    {"Unsqueeze", 2, 2, 1, 1, NULL, 0, infer_unsqueeze, eval_alias, IR_OP_ALIAS},
    {"Shape", 1, 1, 1, 1, ATTRS(shape_attrs), infer_shape, eval_shape, IR_OP_SHAPE_ONLY},
    {"Size", 1, 1, 1, 1, NULL, 0, infer_size, eval_size, IR_OP_SHAPE_ONLY},
    {"Concat", 1, 127, 1, 1, ATTRS(concat_attrs), infer_concat, eval_concat, 0},
    {"Split", 1, 2, 1, 127, ATTRS(split_attrs), infer_split, eval_split, 0},
    {"Expand", 2, 2, 1, 1, NULL, 0, infer_expand, eval_expand, 0},
    {"Tile", 2, 2, 1, 1, NULL, 0, infer_tile, eval_tile, 0},
    {"ConstantOfShape", 1, 1, 1, 1, ATTRS(const_of_shape_attrs), infer_constant_of_shape,
     eval_constant_of_shape, 0},
    {"Range", 3, 3, 1, 1, NULL, 0, infer_range, eval_range, 0},
    {"EyeLike", 1, 1, 1, 1, ATTRS(eye_like_attrs), infer_eye_like, eval_eye_like, IR_OP_SHAPE_ONLY},
    {"Slice", 3, 5, 1, 1, NULL, 0, shape_infer_slice, shape_eval_slice, 0},
    {"Transpose", 1, 1, 1, 1, ATTRS(transpose_attrs), shape_infer_transpose, shape_eval_transpose,
     0},
    {"Pad", 2, 4, 1, 1, ATTRS(pad_attrs), shape_infer_pad, shape_eval_pad, 0},
    {"Gather", 2, 2, 1, 1, ATTRS(gather_attrs), shape_infer_gather, shape_eval_gather, 0},
    {"GatherElements", 2, 2, 1, 1, ATTRS(gather_attrs), shape_infer_gather_elements,
     shape_eval_gather_elements, 0},
    {"GatherND", 2, 2, 1, 1, ATTRS(gather_nd_attrs), shape_infer_gather_nd, shape_eval_gather_nd,
     0},
    {"ScatterND", 3, 3, 1, 1, ATTRS(scatter_nd_attrs), shape_infer_scatter_nd,
     shape_eval_scatter_nd, 0},
    {"ScatterElements", 3, 3, 1, 1, ATTRS(scatter_elements_attrs), shape_infer_scatter_elements,
     shape_eval_scatter_elements, 0},
    {"Trilu", 1, 2, 1, 1, ATTRS(trilu_attrs), shape_infer_trilu, shape_eval_trilu, 0},
    {"OneHot", 3, 3, 1, 1, ATTRS(onehot_attrs), shape_infer_onehot, shape_eval_onehot, 0},
    {"Resize", 1, 4, 1, 1, ATTRS(resize_attrs), shape_infer_resize, shape_eval_resize, 0},
};
const int32_t ir_ops_shape_count = sizeof ir_ops_shape / sizeof *ir_ops_shape;
