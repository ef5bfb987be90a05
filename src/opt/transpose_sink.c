/* transpose_sink.c - the `transpose-sinking` pass: a Transpose moves below a layer that does
 * not care about the order of the axes (elementwise ops, Concat, Reduce*, ArgMax/ArgMin,
 * Softmax-like ops: axes mapped through the perm) when the walk leads somewhere: to another
 * Transpose (reshape-transpose then merges the two), joined with the other Transposes the
 * layer reads, or to where it moves only size-1 axes. A Transpose also moves up past
 * elementwise layers onto its inverse when that one has other readers: both vanish there. */
#include <string.h>

#include "opt/opt.h"

/* How many layers a walk looks along (a bound, not a tuning knob), and the most inputs of a
 * layer the pass handles (Concat and the variadic ops take up to 127). */
enum { MAX_WALK = 64, MAX_SLOTS = 128 };

typedef enum ts_kind {
    K_NONE,
    K_UNARY,     /* y[i] = f(x[i]); further inputs are scalars (Clip's bounds) */
    K_BROADCAST, /* elementwise ops with numpy broadcasting */
    K_CONCAT,    /* axis mapped */
    K_REDUCE,    /* Reduce*: axes (input or attribute) mapped, keepdims 0 drops axes */
    K_ARG,       /* ArgMax/ArgMin: axis mapped, keepdims 0 drops it */
    K_AXIS       /* Softmax, LogSoftmax, Hardmax: axis mapped */
} ts_kind;

/* Each of these computes output element i from input element i alone (after broadcasting),
 * so it gives the same numbers in any order of the axes. Every IR_OP_INPLACE op is among the
 * unary ones (test_transpose_sink.c checks the op table against that). */
/* clang-format off */
static const char *const k_unary[] = {
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish", "Gelu", "Erf",
    "Elu", "Selu", "Softplus", "Softsign", "Mish", "ThresholdedRelu", "Sqrt", "Exp", "Log",
    "Neg", "Abs", "Sign", "Reciprocal", "Floor", "Ceil", "Round", "Sin", "Cos", "Not", "IsNaN",
    "IsInf", "Cast", "Acos", "Asin", "Atan", "Acosh", "Asinh", "Atanh", "Sinh", "Cosh", "Tan",
    "Celu", "Shrink"};
static const char *const k_broadcast[] = {
    "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "PRelu", "Where",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "BitShift"};
static const char *const k_reduce[] = {
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"};
static const char *const k_axis[] = {"Softmax", "LogSoftmax", "Hardmax"};
/* clang-format on */

#define N_OF(a) (sizeof a / sizeof *a)

/* What each input of the layer becomes when the Transpose moves below it. */
enum {
    R_MOVED,    /* the Transpose's output: the layer reads its input instead */
    R_JOINED,   /* another Transpose with the same perm: its input, and it goes */
    R_KEPT,     /* absent, or all dims 1: broadcasts the same in any order */
    R_PERMUTED, /* a constant: a new one with its axes in the inverse order */
    R_AXES      /* a Reduce's axes input: new axes when they change */
};

/* One move of a Transpose (perm_in over rank_in) below layer `node`. */
typedef struct ts_step {
    int32_t node;
    ts_kind kind;
    int32_t rank_in, perm_in[KILN_MAX_RANK];
    int32_t rank, perm[KILN_MAX_RANK]; /* the Transpose below the layer */
    int8_t role[MAX_SLOTS];
    int32_t n_joined, joined[MAX_SLOTS];
    int64_t axis;  /* the new axis (Concat, ArgMax/ArgMin, Softmax-like) */
    bool new_axes; /* a Reduce's axes change */
    int64_t axes[KILN_MAX_RANK];
    int32_t n_axes;
} ts_step;

/* Elementwise layers a Transpose moves up past, bottom first, onto Transpose `top`. */
typedef struct ts_chain {
    int32_t n, nodes[MAX_WALK], chain_in[MAX_WALK];
    int32_t top;
} ts_chain;

static bool is_op(const ir_node *n, const char *name) { return strcmp(n->op->name, name) == 0; }

static bool listed(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, list[i]) == 0) return true;
    return false;
}

static ts_kind kind_of(const ir_node *n)
{
    const char *op = n->op->name;
    if (listed(op, k_unary, N_OF(k_unary))) return K_UNARY;
    if (listed(op, k_broadcast, N_OF(k_broadcast))) return K_BROADCAST;
    if (listed(op, k_reduce, N_OF(k_reduce))) return K_REDUCE;
    if (listed(op, k_axis, N_OF(k_axis))) return K_AXIS;
    if (strcmp(op, "Concat") == 0) return K_CONCAT;
    if (strcmp(op, "ArgMax") == 0 || strcmp(op, "ArgMin") == 0) return K_ARG;
    return K_NONE;
}

/* The one live node reading `v` (in one slot or several), or -1. */
static int32_t only_reader(const ir_graph *g, int32_t v)
{
    int32_t found = -1;
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        for (int32_t k = 0; k < n->n_in; k++) {
            if (n->in[k] != v) continue;
            if (found >= 0 && found != i) return -1;
            found = i;
        }
    }
    return found;
}

/* An activation no network output names, from a live layer: its layout is ours to change. */
static bool is_private(const ir_graph *g, int32_t v)
{
    if (v < 0) return false;
    const ir_value *val = &g->values[v];
    return val->kind == IR_VALUE_ACTIVATION && !val->is_output && val->shape_known &&
           val->producer >= 0 && !g->nodes[val->producer].dead;
}

static bool all_ones(const ir_value *v, int32_t rank)
{
    if (!v->shape_known || v->shape.rank > rank) return false;
    for (int32_t i = 0; i < v->shape.rank; i++)
        if (v->shape.d[i] != 1) return false;
    return true;
}

/* Live Transpose `id`: its perm over its input's rank `r`. */
static bool transpose_of(const ir_graph *g, int32_t id, int32_t *p, int32_t *r)
{
    if (id < 0) return false;
    const ir_node *n = &g->nodes[id];
    if (n->dead || !is_op(n, "Transpose") || n->n_in < 1 || n->in[0] < 0) return false;
    const ir_value *x = &g->values[n->in[0]];
    if (!x->shape_known || x->shape.rank < 1) return false;
    *r = x->shape.rank;
    opt_transpose_perm(n, *r, p);
    return true;
}

static bool same_perm(const int32_t *a, const int32_t *b, int32_t r)
{
    return memcmp(a, b, sizeof(int32_t) * (size_t)r) == 0;
}

static bool is_identity(const int32_t *p, int32_t r)
{
    for (int32_t i = 0; i < r; i++)
        if (p[i] != i) return false;
    return true;
}

/* A Transpose with perm p writing shape y moves only size-1 axes (or none): reshape-transpose
 * turns it into a Reshape, which copies nothing. */
static bool is_free(const int32_t *p, const kiln_dims *y)
{
    int32_t last = -1;
    for (int32_t i = 0; i < y->rank; i++) {
        if (y->d[i] == 1) continue;
        if (p[i] < last) return false;
        last = p[i];
    }
    return true;
}

static void inverse(const int32_t *p, int32_t r, int32_t *q)
{
    for (int32_t i = 0; i < r; i++) q[p[i]] = i;
}

/* The shape a Transpose with perm p reads to write shape y. */
static kiln_dims shape_before(const kiln_dims *y, const int32_t *p)
{
    kiln_dims x = *y;
    for (int32_t i = 0; i < y->rank; i++) x.d[p[i]] = y->d[i];
    return x;
}

/* Shape s with 1s in front up to rank r (numpy broadcasting), then its axes in order q. */
static kiln_dims padded(const kiln_dims *s, int32_t r)
{
    kiln_dims d = {r, {0}};
    int32_t off = r - s->rank;
    for (int32_t i = 0; i < r; i++) d.d[i] = i < off ? 1 : s->d[i - off];
    return d;
}

static kiln_dims permuted(const kiln_dims *s, const int32_t *q)
{
    kiln_dims d = *s;
    for (int32_t i = 0; i < s->rank; i++) d.d[i] = s->d[q[i]];
    return d;
}

/* dst = Transpose(src, perm q), elements of `es` bytes, src of shape s. */
static void transpose_bytes(const unsigned char *src, unsigned char *dst, size_t es,
                            const kiln_dims *s, const int32_t *q)
{
    int32_t r = s->rank;
    int64_t st[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, count = kiln_dims_count(s);
    kiln_dims_strides(s, st);
    for (int64_t o = 0; o < count; o++) {
        int64_t off = 0;
        for (int32_t i = 0; i < r; i++) off += idx[i] * st[q[i]];
        memcpy(dst + (size_t)o * es, src + (size_t)off * es, es);
        for (int32_t i = r - 1; i >= 0; i--) {
            if (++idx[i] < s->d[q[i]]) break;
            idx[i] = 0;
        }
    }
}

/* A new constant: constant `c` seen at rank r, transposed with perm q. */
static kiln_status permute_constant(ir_graph *g, int32_t c, int32_t r, const int32_t *q,
                                    int32_t *out)
{
    const ir_value *v = &g->values[c];
    kiln_dims src = padded(&v->shape, r), dst = permuted(&src, q);
    size_t es = kiln_dtype_size(v->dtype);
    int64_t count = kiln_dims_count(&src);
    const char *name = v->name; /* in the graph's arena: outlives a move of g->values */
    kiln_dtype dtype = v->dtype;
    unsigned char *buf = NULL;
    KILN_TRY(kiln_alloc_checked((void **)&buf, (size_t)(count ? count : 1), es ? es : 1,
                                "transpose-sinking"));
    transpose_bytes(v->data, buf, es, &src, q);
    kiln_status st = opt_add_constant(g, name, dtype, &dst, buf, out);
    kiln_free(buf);
    return st;
}

/* The constant integer values of input `k` (at most `max`); false when not a constant. */
static bool const_ints(const ir_graph *g, const ir_node *n, int32_t k, int64_t *vals, int64_t max,
                       int64_t *count)
{
    if (k >= n->n_in || n->in[k] < 0) return false;
    const ir_value *v = &g->values[n->in[k]];
    if (v->kind != IR_VALUE_CONSTANT || !v->data || v->shape.rank > 1) return false;
    ir_tensor t = {v->dtype, v->shape, (void *)v->data, IR_LAYOUT_PLAIN};
    return ir_tensor_ints(&t, vals, max, count);
}

/* Which axes (of its input, rank r) Reduce node n folds: false when it cannot tell. Sets
 * *listed when the axes are written out (and so change with the order of the axes). */
static bool reduce_axes(const ir_graph *g, const ir_node *n, int32_t r, bool *red, bool *listed)
{
    int64_t axes[KILN_MAX_RANK], count = 0;
    int32_t n_attr = 0;
    const int64_t *attr = ir_attr_ints(n, "axes", &n_attr);
    if (n->n_in > 1 && n->in[1] >= 0) {
        if (attr || !const_ints(g, n, 1, axes, KILN_MAX_RANK, &count)) return false;
    } else if (attr) {
        if (n_attr > KILN_MAX_RANK) return false;
        count = n_attr;
        memcpy(axes, attr, sizeof(int64_t) * (size_t)count);
    }
    bool all = count == 0 && ir_attr_int(n, "noop_with_empty_axes") == 0;
    for (int32_t i = 0; i < r; i++) red[i] = all;
    for (int64_t i = 0; i < count; i++) {
        int32_t a;
        if (!ir_axis(axes[i], r, &a) || red[a]) return false;
        red[a] = true;
    }
    *listed = count > 0;
    return true;
}

/* The perm left when the axes `red` of a Transpose's output (perm p, rank r) are dropped,
 * and the same axes of its input with them. */
static void drop_axes(const int32_t *p, int32_t r, const bool *red, int32_t *out, int32_t *n)
{
    bool gone[KILN_MAX_RANK] = {false};
    int32_t below[KILN_MAX_RANK], kept = 0;
    for (int32_t i = 0; i < r; i++) gone[p[i]] = red[i];
    for (int32_t j = 0; j < r; j++) {
        below[j] = kept;
        kept += !gone[j];
    }
    *n = 0;
    for (int32_t i = 0; i < r; i++)
        if (!red[i]) out[(*n)++] = below[p[i]];
}

/* Sets an INT attribute of node n (present: the schema's defaults are filled). */
static void set_int_attr(ir_node *n, const char *name, int64_t v)
{
    kiln_attr *a = (kiln_attr *)ir_attr_find(n, name);
    if (a) a->i = v;
}

/* Runs the layer's shape inference as it would be after step s (on a copy): it must give
 * the shape and dtype the layer then writes (y before the new Transpose). `x_shape` is what
 * the moving Transpose reads. */
static bool trial_infer(const ir_graph *g, const ir_node *n, const ts_step *s,
                        const kiln_dims *x_shape, kiln_dtype x_dtype)
{
    ir_tensor in[MAX_SLOTS], out[1];
    kiln_attr attrs[16];
    int32_t q[KILN_MAX_RANK];
    if (n->n_attrs > 16) return false;
    inverse(s->perm_in, s->rank_in, q);
    ir_node t = *n;
    memcpy(attrs, n->attrs, sizeof(kiln_attr) * (size_t)n->n_attrs);
    t.attrs = attrs;
    for (int32_t k = 0; k < n->n_attrs; k++) {
        bool axis_kind = s->kind == K_CONCAT || s->kind == K_ARG || s->kind == K_AXIS;
        if (axis_kind && strcmp(attrs[k].name, "axis") == 0) attrs[k].i = s->axis;
        if (s->new_axes && attrs[k].type == KILN_ATTR_INTS && strcmp(attrs[k].name, "axes") == 0) {
            attrs[k].ints = s->axes;
            attrs[k].count = s->n_axes;
        }
    }
    for (int32_t k = 0; k < n->n_in; k++) {
        memset(&in[k], 0, sizeof in[k]);
        int32_t v = n->in[k];
        const ir_value *val = v >= 0 ? &g->values[v] : NULL;
        switch (s->role[k]) {
        case R_MOVED: in[k] = (ir_tensor){x_dtype, *x_shape, NULL, IR_LAYOUT_PLAIN}; break;
        case R_JOINED: {
            const ir_value *b = &g->values[g->nodes[val->producer].in[0]];
            in[k] = (ir_tensor){b->dtype, b->shape, (void *)b->data, IR_LAYOUT_PLAIN};
            break;
        }
        case R_PERMUTED: {
            kiln_dims p = padded(&val->shape, s->rank_in);
            in[k] = (ir_tensor){val->dtype, permuted(&p, q), NULL, IR_LAYOUT_PLAIN};
            break;
        }
        case R_AXES:
            if (s->new_axes)
                in[k] =
                    (ir_tensor){KILN_DTYPE_I64, {1, {s->n_axes}}, (void *)s->axes, IR_LAYOUT_PLAIN};
            else
                in[k] = (ir_tensor){val->dtype, val->shape, (void *)val->data, IR_LAYOUT_PLAIN};
            break;
        default:
            if (val)
                in[k] = (ir_tensor){val->dtype, val->shape, (void *)val->data, IR_LAYOUT_PLAIN};
            break;
        }
    }
    memset(out, 0, sizeof out);
    ir_infer c = {.node = &t, .n_in = n->n_in, .n_out = 1, .in = in, .out = out};
    if (n->op->infer(&c) != KILN_OK) return false;
    const ir_value *y = &g->values[n->out[0]];
    kiln_dims want = shape_before(&y->shape, s->perm);
    return out[0].dtype == y->dtype && kiln_dims_equal(&out[0].shape, &want);
}

/* The roles of the inputs of layer n when the Transpose writing t (perm p, rank r) moves
 * below it; false when one input cannot follow. */
static bool plan_inputs(const ir_graph *g, int32_t id, int32_t t, const int32_t *p, int32_t r,
                        ts_step *s)
{
    const ir_node *n = &g->nodes[id];
    bool one_data = s->kind != K_BROADCAST && s->kind != K_CONCAT;
    if (one_data && n->in[0] != t) return false;
    for (int32_t k = 0; k < n->n_in; k++) {
        int32_t v = n->in[k], pp[KILN_MAX_RANK], pr;
        if (v == t) {
            if (one_data && k > 0) return false;
            s->role[k] = R_MOVED;
            continue;
        }
        if (v < 0) {
            s->role[k] = R_KEPT;
            continue;
        }
        const ir_value *val = &g->values[v];
        if (s->kind == K_REDUCE && k == 1) {
            s->role[k] = R_AXES;
            continue;
        }
        if (one_data) {
            if (!all_ones(val, r)) return false;
            s->role[k] = R_KEPT;
            continue;
        }
        if (is_private(g, v) && transpose_of(g, val->producer, pp, &pr) && pr == r &&
            same_perm(pp, p, r) && only_reader(g, v) == id) {
            s->role[k] = R_JOINED;
            bool seen = false;
            for (int32_t j = 0; j < s->n_joined; j++) seen |= s->joined[j] == val->producer;
            if (!seen) s->joined[s->n_joined++] = val->producer;
            continue;
        }
        if (s->kind == K_BROADCAST && all_ones(val, r)) {
            s->role[k] = R_KEPT;
            continue;
        }
        bool fits = s->kind == K_BROADCAST ? val->shape.rank <= r : val->shape.rank == r;
        if (val->kind == IR_VALUE_CONSTANT && val->data && fits) {
            s->role[k] = R_PERMUTED;
            continue;
        }
        return false;
    }
    return true;
}

/* Plans moving a Transpose (perm p over rank r, writing t) below t's only reader. */
static bool plan_sink(const ir_graph *g, int32_t t, const int32_t *p, int32_t r, ts_step *s)
{
    if (!is_private(g, t)) return false;
    int32_t id = only_reader(g, t);
    if (id < 0) return false;
    const ir_node *n = &g->nodes[id];
    ts_kind kind = kind_of(n);
    if (kind == K_NONE || n->n_out != 1 || n->n_in > MAX_SLOTS) return false;
    memset(s, 0, sizeof *s);
    s->node = id;
    s->kind = kind;
    s->rank_in = s->rank = r;
    memcpy(s->perm_in, p, sizeof(int32_t) * (size_t)r);
    memcpy(s->perm, p, sizeof(int32_t) * (size_t)r);
    if (!plan_inputs(g, id, t, p, r, s)) return false;

    int32_t a;
    bool red[KILN_MAX_RANK] = {false}, drop = false, axes_listed = false;
    switch (kind) {
    case K_CONCAT:
    case K_AXIS:
    case K_ARG:
        if (!ir_axis(ir_attr_int(n, "axis"), r, &a)) return false;
        s->axis = p[a];
        red[a] = true;
        drop = kind == K_ARG && ir_attr_int(n, "keepdims") == 0;
        break;
    case K_REDUCE:
        if (!reduce_axes(g, n, r, red, &axes_listed)) return false;
        if (axes_listed) {
            s->new_axes = true;
            /* the input's axes p[i] for the output's reduced axes i, in increasing order */
            for (int32_t j = 0; j < r; j++)
                for (int32_t i = 0; i < r; i++)
                    if (red[i] && p[i] == j) s->axes[s->n_axes++] = j;
        }
        drop = ir_attr_int(n, "keepdims") == 0;
        break;
    default: break;
    }
    if (drop) drop_axes(p, r, red, s->perm, &s->rank);

    const ir_value *y = &g->values[n->out[0]];
    if (!y->shape_known || y->shape.rank != s->rank) return false;
    kiln_dims x_shape = shape_before(&g->values[t].shape, p);
    return trial_infer(g, n, s, &x_shape, g->values[t].dtype);
}

/* Whether moving the Transpose writing t (perm p, rank r) down leads somewhere: to a
 * Transpose, to other Transposes it joins, or to where it is free. `s` is scratch. */
static bool worth(const ir_graph *g, int32_t t, const int32_t *p0, int32_t r, ts_step *s)
{
    int32_t p[KILN_MAX_RANK];
    memcpy(p, p0, sizeof(int32_t) * (size_t)r);
    for (int32_t depth = 0; depth < MAX_WALK; depth++) {
        if (!is_private(g, t)) return false;
        int32_t id = only_reader(g, t);
        if (id >= 0 && is_op(&g->nodes[id], "Transpose")) return true;
        if (!plan_sink(g, t, p, r, s)) return false;
        if (s->n_joined > 0) return true;
        t = g->nodes[s->node].out[0];
        if (is_free(s->perm, &g->values[t].shape)) return true;
        r = s->rank;
        memcpy(p, s->perm, sizeof(int32_t) * (size_t)r);
    }
    return false;
}

/* Moves Transpose `tid` below layer s->node: the layer reads what the Transpose read (and
 * what joined Transposes read, and permuted constants), writes a new value, and the
 * Transpose (new perm) writes the layer's old output, whose name and readers stay. */
static kiln_status sink(ir_graph *g, int32_t tid, const ts_step *s, int32_t *changes)
{
    int32_t id = s->node, q[KILN_MAX_RANK];
    ir_node *n = &g->nodes[id], *tr = &g->nodes[tid];
    int32_t a = tr->in[0], t = tr->out[0], y = n->out[0];
    kiln_dtype y_dtype = g->values[y].dtype;
    kiln_dims y_shape = g->values[y].shape;
    inverse(s->perm_in, s->rank_in, q);
    for (int32_t k = 0; k < n->n_in; k++) {
        int32_t v = n->in[k], c = -1;
        switch (s->role[k]) {
        case R_MOVED: n->in[k] = a; break;
        case R_JOINED: n->in[k] = g->nodes[g->values[v].producer].in[0]; break;
        case R_PERMUTED:
            KILN_TRY(permute_constant(g, v, s->rank_in, q, &c));
            n->in[k] = c;
            break;
        case R_AXES:
            if (!s->new_axes) break;
            KILN_TRY(opt_add_constant(g, n->name, KILN_DTYPE_I64, &(kiln_dims){1, {s->n_axes}},
                                      s->axes, &c));
            n->in[k] = c;
            break;
        default: break;
        }
    }
    if (s->kind == K_CONCAT || s->kind == K_ARG || s->kind == K_AXIS)
        set_int_attr(n, "axis", s->axis);
    if (s->kind == K_REDUCE && s->new_axes && ir_attr_find(n, "axes")) {
        int64_t *vals = kiln_arena_memdup(&g->arena, s->axes, sizeof(int64_t) * KILN_MAX_RANK);
        if (!vals) return KILN_ERR_OUT_OF_MEMORY;
        kiln_attr *at = (kiln_attr *)ir_attr_find(n, "axes");
        at->ints = vals;
        at->count = s->n_axes;
    }
    for (int32_t j = 0; j < s->n_joined; j++) {
        ir_node *o = &g->nodes[s->joined[j]];
        o->dead = true;
        KILN_TRY(opt_record_fusion(g, tid, s->joined[j]));
        kiln_log(KILN_LOG_VERBOSE,
                 "transpose-sinking: Transpose '%s' joins Transpose '%s' below '%s' (%s)", o->name,
                 tr->name, n->name, n->op->name);
    }
    g->values[t].producer = -1;
    kiln_dims y_in = shape_before(&y_shape, s->perm);
    if (is_identity(s->perm, s->rank) ||
        (is_free(s->perm, &y_shape) && kiln_dims_equal(&y_in, &y_shape))) {
        /* Below the layer the Transpose leaves every byte in place: it goes. */
        tr->dead = true;
        KILN_TRY(opt_record_fusion(g, id, tid));
        kiln_log(KILN_LOG_VERBOSE,
                 "transpose-sinking: Transpose '%s' moved below '%s' (%s) is the identity: removed",
                 tr->name, n->name, n->op->name);
    } else {
        int32_t y2 = -1;
        KILN_TRY(opt_add_value(g, n->name, &y2));
        n->out[0] = y2;
        g->values[y2].producer = id;
        tr->in[0] = y2;
        tr->out[0] = y;
        g->values[y].producer = tid;
        KILN_TRY(opt_set_transpose_perm(g, tr, s->perm, s->rank));
        kiln_log(KILN_LOG_VERBOSE, "transpose-sinking: moved Transpose '%s' below '%s' (%s)",
                 tr->name, n->name, n->op->name);
    }
    KILN_TRY(opt_infer_node(g, id));
    if (!tr->dead) KILN_TRY(opt_infer_node(g, tid));
    const ir_value *vy = &g->values[y];
    if (vy->dtype != y_dtype || !kiln_dims_equal(&vy->shape, &y_shape))
        return ir_node_error(n, KILN_ERR_INTERNAL, "transpose-sinking changed the output shape");
    (*changes)++;
    return KILN_OK;
}

/* Plans moving Transpose `tid` (perm p over rank r) up past a chain of elementwise layers
 * that keep the shape, onto a Transpose whose perm it undoes. */
static bool plan_hoist(const ir_graph *g, int32_t tid, const int32_t *p, int32_t r, ts_chain *c)
{
    int32_t v = g->nodes[tid].in[0], reader = tid;
    c->n = 0;
    while (c->n < MAX_WALK) {
        if (!is_private(g, v) || only_reader(g, v) != reader) return false;
        int32_t uid = g->values[v].producer;
        const ir_node *u = &g->nodes[uid];
        ts_kind kind = kind_of(u);
        if ((kind != K_UNARY && kind != K_BROADCAST) || u->n_out != 1) return false;
        int32_t in = -1;
        for (int32_t k = 0; k < u->n_in; k++) {
            int32_t w = u->in[k];
            if (w < 0) continue;
            const ir_value *val = &g->values[w];
            bool constant = val->kind == IR_VALUE_CONSTANT && val->data;
            bool kept = kind == K_UNARY ? k > 0 && all_ones(val, r)
                                        : all_ones(val, r) || (constant && val->shape.rank <= r);
            if (kept) continue;
            if ((kind == K_UNARY && k > 0) || (in >= 0 && in != w)) return false;
            in = w;
        }
        if (in < 0 || !g->values[in].shape_known ||
            !kiln_dims_equal(&g->values[in].shape, &g->values[v].shape))
            return false;
        c->nodes[c->n] = uid;
        c->chain_in[c->n++] = in;
        int32_t pp[KILN_MAX_RANK], pr;
        const ir_value *vi = &g->values[in];
        if (vi->kind == IR_VALUE_ACTIVATION && transpose_of(g, vi->producer, pp, &pr) && pr == r) {
            bool undone = true;
            for (int32_t i = 0; i < r; i++) undone &= pp[p[i]] == i;
            if (!undone) return false;
            c->top = vi->producer;
            return true;
        }
        v = in;
        reader = uid;
    }
    return false;
}

/* T2(f(T1(a))) with T2 undoing T1 -> f(a): the chain reads a, its last layer writes what
 * T2 wrote; T1 stays for its other readers, T2 goes. */
static kiln_status hoist(ir_graph *g, int32_t tid, const int32_t *p, int32_t r, const ts_chain *c,
                         int32_t *changes)
{
    int32_t a = g->nodes[c->top].in[0], w = g->nodes[tid].out[0], v = g->nodes[tid].in[0];
    int32_t bottom = c->nodes[0];
    kiln_dtype w_dtype = g->values[w].dtype;
    kiln_dims w_shape = g->values[w].shape;
    ir_node *tr = &g->nodes[tid];
    g->nodes[bottom].out[0] = w;
    g->values[w].producer = bottom;
    g->values[v].producer = -1;
    tr->dead = true;
    for (int32_t i = c->n - 1; i >= 0; i--) {
        int32_t uid = c->nodes[i];
        ir_node *u = &g->nodes[uid];
        for (int32_t k = 0; k < u->n_in; k++) {
            int32_t x = u->in[k], nc = -1;
            if (x < 0) continue;
            if (x == c->chain_in[i]) {
                if (i == c->n - 1) u->in[k] = a;
                continue;
            }
            if (g->values[x].kind == IR_VALUE_CONSTANT && !all_ones(&g->values[x], r)) {
                KILN_TRY(permute_constant(g, x, r, p, &nc));
                u->in[k] = nc;
            }
        }
        KILN_TRY(opt_infer_node(g, uid));
    }
    KILN_TRY(opt_record_fusion(g, bottom, tid));
    const ir_node *top = &g->nodes[c->nodes[c->n - 1]];
    kiln_log(KILN_LOG_VERBOSE,
             "transpose-sinking: removed Transpose '%s': moved up past %d layer%s from '%s' (%s), "
             "it undoes Transpose '%s'",
             tr->name, c->n, c->n == 1 ? "" : "s", top->name, top->op->name, g->nodes[c->top].name);
    const ir_value *vw = &g->values[w];
    if (vw->dtype != w_dtype || !kiln_dims_equal(&vw->shape, &w_shape))
        return ir_node_error(tr, KILN_ERR_INTERNAL, "transpose-sinking changed the output shape");
    (*changes)++;
    return KILN_OK;
}

/* Moves Transpose `id` down as long as that leads somewhere, else tries it upwards. */
static kiln_status move(ir_graph *g, int32_t id, ts_step *now, ts_step *walk, ts_chain *chain,
                        int32_t *changes)
{
    int32_t p[KILN_MAX_RANK], r;
    if (!transpose_of(g, id, p, &r) || r < 2) return KILN_OK;
    if (!g->values[g->nodes[id].out[0]].shape_known ||
        is_free(p, &g->values[g->nodes[id].out[0]].shape))
        return KILN_OK; /* reshape-transpose and identity take it */
    bool moved = false;
    while (!g->nodes[id].dead) {
        int32_t t = g->nodes[id].out[0], rd = only_reader(g, t);
        if (rd >= 0 && is_op(&g->nodes[rd], "Transpose")) break;
        if (!worth(g, t, p, r, walk) || !plan_sink(g, t, p, r, now)) break;
        KILN_TRY(sink(g, id, now, changes));
        moved = true;
        r = now->rank;
        memcpy(p, now->perm, sizeof(int32_t) * (size_t)r);
        if (g->nodes[id].dead || is_free(p, &g->values[g->nodes[id].out[0]].shape)) break;
    }
    if (!moved && plan_hoist(g, id, p, r, chain)) KILN_TRY(hoist(g, id, p, r, chain, changes));
    return KILN_OK;
}

kiln_status opt_transpose_sinking(ir_graph *g, int32_t *changes)
{
    kiln_status st = KILN_OK;
    int32_t *order = NULL, count = 0;
    ts_step *steps = NULL;
    ts_chain *chain = NULL;
    KILN_CHECK(kiln_alloc_checked((void **)&order, (size_t)g->n_nodes + 1, sizeof *order,
                                  "transpose-sinking"));
    KILN_CHECK(kiln_alloc_checked((void **)&steps, 2, sizeof *steps, "transpose-sinking"));
    KILN_CHECK(kiln_alloc_checked((void **)&chain, 1, sizeof *chain, "transpose-sinking"));
    /* Producers first: a Transpose reaches the Transposes below it before they move. */
    KILN_CHECK(ir_graph_topo_order(g, order, &count));
    for (int32_t i = 0; i < count; i++)
        KILN_CHECK(move(g, order[i], &steps[0], &steps[1], chain, changes));
fail:
    kiln_free(order);
    kiln_free(steps);
    kiln_free(chain);
    return st;
}
