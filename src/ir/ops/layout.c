/* layout.c - the "layout" op group: how a tensor may lie in memory (plain or blocked
 * NCHWc, ir.h's ir_layout), the arithmetic of blocked storage, and kiln.Reorder, the op
 * the builder's layout step places between layers that want different layouts. */
#include <string.h>

#include "ir/ir.h"

/* ---- layouts ---- */

static const struct {
    ir_layout code;
    const char *name;
} k_layouts[] = {
    {IR_LAYOUT_PLAIN, "plain"},
    {IR_LAYOUT_NCHW4C, "nchw4c"},
    {IR_LAYOUT_NCHW8C, "nchw8c"},
    {IR_LAYOUT_NCHW16C, "nchw16c"},
};
#define N_LAYOUTS ((int32_t)(sizeof k_layouts / sizeof *k_layouts))

const char *ir_layout_name(ir_layout l)
{
    for (int32_t i = 0; i < N_LAYOUTS; i++)
        if (k_layouts[i].code == l) return k_layouts[i].name;
    return "?";
}

bool ir_layout_parse(const char *name, ir_layout *out)
{
    for (int32_t i = 0; name && i < N_LAYOUTS; i++)
        if (strcmp(k_layouts[i].name, name) == 0) {
            *out = k_layouts[i].code;
            return true;
        }
    return false;
}

bool ir_layout_known(int64_t code)
{
    for (int32_t i = 0; i < N_LAYOUTS; i++)
        if ((int64_t)k_layouts[i].code == code) return true;
    return false;
}

/* N, C and the spatial size of a shape a blocked layout fits: rank 3 to 5, dims known. */
static bool blocked_dims(const kiln_dims *s, int64_t *n, int64_t *c, int64_t *spatial)
{
    if (s->rank < 3 || s->rank > 5) return false;
    for (int32_t d = 0; d < s->rank; d++)
        if (s->d[d] < 0) return false;
    *n = s->d[0];
    *c = s->d[1];
    *spatial = 1;
    for (int32_t d = 2; d < s->rank; d++)
        if (!kiln_mul_ok(*spatial, s->d[d], spatial)) return false;
    return true;
}

bool ir_layout_numel(ir_layout l, const kiln_dims *shape, int64_t *count)
{
    if (l == IR_LAYOUT_PLAIN) return kiln_dims_numel(shape, count);
    int64_t n, c, sp, b = ir_layout_block(l);
    if (!ir_layout_known(l) || !blocked_dims(shape, &n, &c, &sp)) return false;
    int64_t padded = (c + b - 1) / b * b, a;
    return kiln_mul_ok(n, padded, &a) && kiln_mul_ok(a, sp, count) && *count <= KILN_MAX_ELEMENTS;
}

kiln_dims ir_layout_storage_shape(ir_layout l, const kiln_dims *shape)
{
    if (l == IR_LAYOUT_PLAIN) return *shape;
    kiln_dims s = *shape;
    int64_t b = ir_layout_block(l);
    s.d[1] = (shape->d[1] + b - 1) / b;
    s.d[s.rank++] = b;
    return s;
}

int64_t ir_tensor_storage_count(const ir_tensor *t)
{
    int64_t count = 0;
    if (t->layout == IR_LAYOUT_PLAIN) return ir_tensor_count(t);
    return ir_layout_numel(t->layout, &t->shape, &count) ? count : 0;
}

void ir_layout_zero_padding(ir_tensor *t)
{
    int64_t n, c, sp, b = ir_layout_block(t->layout);
    if (b == 0 || !blocked_dims(&t->shape, &n, &c, &sp) || c % b == 0) return;
    size_t es = kiln_dtype_size(t->dtype);
    int64_t blocks = (c + b - 1) / b, used = c % b;
    uint8_t *p = t->data;
    /* The last block of every (n, position) has lanes [used, b) past C. */
    for (int64_t i = 0; i < n; i++)
        for (int64_t s = 0; s < sp; s++) {
            int64_t at = ((i * blocks + blocks - 1) * sp + s) * b + used;
            memset(p + (size_t)at * es, 0, (size_t)(b - used) * es);
        }
}

/* ---- kiln.Reorder: input 0 in layout `from` -> the same tensor in layout `to` ---- */

static kiln_status reorder_layouts(const ir_node *n, ir_layout *from, ir_layout *to)
{
    static const char *const names[2] = {"from", "to"};
    ir_layout *out[2] = {from, to};
    for (int i = 0; i < 2; i++) {
        const char *s = ir_attr_string(n, names[i]);
        if (!ir_layout_parse(s, out[i]))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "%s is \"%s\", expected plain, nchw4c, nchw8c or nchw16c",
                                 names[i], s);
    }
    if (*from == *to)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "from and to are both %s",
                             ir_layout_name(*from));
    return KILN_OK;
}

static kiln_status infer_reorder(ir_infer *c)
{
    ir_layout from, to;
    KILN_TRY(reorder_layouts(c->node, &from, &to));
    const ir_tensor *x = &c->in[0];
    if (kiln_dtype_size(x->dtype) == 0)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input has unknown dtype %d",
                             (int)x->dtype);
    const ir_layout sides[2] = {from, to};
    for (int i = 0; i < 2; i++) {
        int64_t count;
        if (sides[i] != IR_LAYOUT_PLAIN && !ir_layout_numel(sides[i], &x->shape, &count)) {
            char s[KILN_DIMS_STR_MAX];
            return ir_node_error(c->node, KILN_ERR_SHAPE,
                                 "layout %s needs a known N x C x D1 ... shape of rank 3 to 5, "
                                 "got %s",
                                 ir_layout_name(sides[i]), kiln_dims_str(&x->shape, s, sizeof s));
        }
    }
    return ir_infer_same_as_input(c);
}

/* Element offset of (n, channel ch, spatial position s) in layout `l`. */
static int64_t offset_of(ir_layout l, int64_t c, int64_t sp, int64_t n, int64_t ch, int64_t s)
{
    int64_t b = ir_layout_block(l);
    if (b == 0) return (n * c + ch) * sp + s;
    int64_t blocks = (c + b - 1) / b;
    return ((n * blocks + ch / b) * sp + s) * b + ch % b;
}

/* Moves every element to where `to` keeps it, one at a time: the obvious form, the oracle
 * of faster reorders. Blocked output starts zeroed, which fills the padding. */
static kiln_status eval_reorder(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                                int32_t n_out)
{
    ir_layout from, to;
    KILN_TRY(reorder_layouts(n, &from, &to));
    const kiln_dims *s = &in[0].shape;
    int64_t nb = s->d[0], c = s->d[1], sp = 1;
    for (int32_t d = 2; d < s->rank; d++) sp *= s->d[d];
    size_t es = kiln_dtype_size(in[0].dtype);
    const uint8_t *x = in[0].data;
    uint8_t *y = out[0].data;
    ir_tensor o = out[0];
    o.layout = to;
    if (to != IR_LAYOUT_PLAIN) memset(y, 0, (size_t)ir_tensor_storage_count(&o) * es);
    for (int64_t i = 0; i < nb; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t p = 0; p < sp; p++)
                memcpy(y + (size_t)offset_of(to, c, sp, i, ch, p) * es,
                       x + (size_t)offset_of(from, c, sp, i, ch, p) * es, es);
    return KILN_OK;
}

static const ir_attr_def k_reorder_attrs[] = {
    {"from", KILN_ATTR_STRING, true, 0, 0.0f, NULL},
    {"to", KILN_ATTR_STRING, true, 0, 0.0f, NULL},
};

const ir_op ir_ops_layout[] = {
    {"kiln.Reorder", 1, 1, 1, 1, k_reorder_attrs, 2, infer_reorder, eval_reorder, 0},
};
const int32_t ir_ops_layout_count = sizeof ir_ops_layout / sizeof *ir_ops_layout;
