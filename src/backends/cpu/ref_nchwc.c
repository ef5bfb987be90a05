/* ref_nchwc.c - the CPU backend's blocked reference kernels ("ref_nchwc"): Conv and
 * kiln.Conv, MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool, and Add / Mul with a
 * per-channel operand, computed directly on NCHWc tensors of any block. They are the oracle
 * that fast blocked kernels are tested against, so they are written to be obviously right:
 * one output element at a time, visiting the inputs in the order the plain reference
 * kernels of src/ir do, so that sums round alike. Padding lanes are never read and are
 * left zero. */
#include <math.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"

/* ---- blocked tensors ---- */

/* A blocked tensor of shape [N, C, spatial...] with block b: `blocks` blocks of b lanes. */
typedef struct blk {
    int64_t n, c, sp, b, blocks;
} blk;

static blk blk_of(const ir_tensor *t)
{
    blk r = {t->shape.d[0], t->shape.d[1], 1, ir_layout_block(t->layout), 0};
    for (int32_t d = 2; d < t->shape.rank; d++) r.sp *= t->shape.d[d];
    r.blocks = (r.c + r.b - 1) / r.b;
    return r;
}

/* Element offset of batch n, channel ch, flat spatial position s. */
static inline int64_t blk_at(const blk *t, int64_t n, int64_t ch, int64_t s)
{
    return ((n * t->blocks + ch / t->b) * t->sp + s) * t->b + ch % t->b;
}

static bool present(const ir_tensor *in, int32_t n_in, int32_t k)
{
    return k < n_in && ir_tensor_present(&in[k]);
}

/* An f32 tensor a blocked layout can hold. */
static bool blockable_f32(const ir_tensor *t, ir_layout l)
{
    int64_t count;
    return t->dtype == KILN_DTYPE_F32 && ir_layout_numel(l, &t->shape, &count);
}

/* ---- windows over up to 3 spatial dims, lifted to exactly 3 (leading dims of size 1) ---- */

typedef struct win3 {
    int64_t in[3], out[3], kernel[3], stride[3], dilation[3], pad[3], pad_end[3];
    int64_t taps; /* kernel[0] * kernel[1] * kernel[2] */
} win3;

static void win3_of(const ir_window *w, win3 *g)
{
    int32_t lead = 3 - w->ns;
    for (int32_t d = 0; d < 3; d++) {
        int32_t s = d - lead;
        g->in[d] = s < 0 ? 1 : w->in[s];
        g->out[d] = s < 0 ? 1 : w->out[s];
        g->kernel[d] = s < 0 ? 1 : w->kernel[s];
        g->stride[d] = s < 0 ? 1 : w->stride[s];
        g->dilation[d] = s < 0 ? 1 : w->dilation[s];
        g->pad[d] = s < 0 ? 0 : w->pad_begin[s];
        g->pad_end[d] = s < 0 ? 0 : w->pad_end[s];
    }
    g->taps = g->kernel[0] * g->kernel[1] * g->kernel[2];
}

/* The coordinates of flat position o of a 3-D box of size dims. */
static void coords(const int64_t *dims, int64_t o, int64_t *c)
{
    c[0] = o / (dims[1] * dims[2]);
    c[1] = o / dims[2] % dims[1];
    c[2] = o % dims[2];
}

/* Whether tap t (row-major over the kernel) of the window at output position o (flat)
 * falls inside the input; *s gets its flat input position. */
static bool tap_at(const win3 *g, int64_t o, int64_t t, int64_t *s)
{
    int64_t oc[3], kc[3];
    coords(g->out, o, oc);
    coords(g->kernel, t, kc);
    bool inside = true;
    *s = 0;
    for (int32_t d = 0; d < 3; d++) {
        int64_t pos = oc[d] * g->stride[d] - g->pad[d] + kc[d] * g->dilation[d];
        if (pos < 0 || pos >= g->in[d]) inside = false;
        *s = *s * g->in[d] + pos;
    }
    return inside;
}

/* How many taps of dim d of the window at output coordinate oc land in [lo, hi). */
static int64_t taps_within(const win3 *g, int32_t d, int64_t oc, int64_t lo, int64_t hi)
{
    int64_t count = 0;
    for (int64_t k = 0; k < g->kernel[d]; k++) {
        int64_t pos = oc * g->stride[d] - g->pad[d] + k * g->dilation[d];
        count += pos >= lo && pos < hi;
    }
    return count;
}

/* ---- Conv and kiln.Conv: X blocked, W (M x C/group x k...) and B plain, Z blocked ---- */

static kiln_status run_conv(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out, const backend_exec *x)
{
    ir_window w;
    win3 g;
    KILN_TRY(ir_window_of(n, in, n_in, &w));
    win3_of(&w, &g);
    blk X = blk_of(&in[0]), Y = blk_of(&out[0]);
    const float *xs = in[0].data, *ws = in[1].data;
    const float *bias = present(in, n_in, 2) ? in[2].data : NULL;
    float *ys = out[0].data;
    int64_t group = ir_attr_int(n, "group"), cg = X.c / group, mg = Y.c / group;
    for (int64_t b = 0; b < Y.n; b++)
        for (int64_t oc = 0; oc < Y.c; oc++) {
            int64_t first = oc / mg * cg; /* the group's first input channel */
            const float *wo = ws + oc * cg * g.taps;
            for (int64_t o = 0; o < Y.sp; o++) {
                /* bias, then per tap every input channel: the order of conv.c's sums */
                float acc = bias ? bias[oc] : 0.0f;
                for (int64_t t = 0; t < g.taps; t++) {
                    int64_t s;
                    if (!tap_at(&g, o, t, &s)) continue;
                    /* Channel first + ci is lane `lane` of block `cb`: stepped, not divided. */
                    const float *xp = xs + blk_at(&X, b, 0, s);
                    int64_t cb = first / X.b, lane = first % X.b;
                    for (int64_t ci = 0; ci < cg; ci++) {
                        acc += wo[ci * g.taps + t] * xp[cb * X.sp * X.b + lane];
                        if (++lane == X.b) {
                            lane = 0;
                            cb++;
                        }
                    }
                }
                ys[blk_at(&Y, b, oc, o)] = acc;
            }
        }
    if (strcmp(n->op->name, "kiln.Conv") == 0) {
        /* Elementwise over the storage, padding lanes included (zeroed again below). */
        const float *z = present(in, n_in, 3) ? in[3].data : NULL;
        KILN_TRY(ir_fused_epilogue(n, ys, ir_tensor_storage_count(&out[0]), z));
    }
    ir_layout_zero_padding(&out[0]);
    return KILN_OK;
}

/* ---- MaxPool (one output) and AveragePool ---- */

static kiln_status run_pool(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out, const backend_exec *x)
{
    ir_window w;
    win3 g;
    KILN_TRY(ir_window_of(n, in, n_in, &w));
    win3_of(&w, &g);
    bool is_max = strcmp(n->op->name, "MaxPool") == 0;
    bool include_pad = !is_max && ir_attr_int(n, "count_include_pad") == 1;
    blk X = blk_of(&in[0]), Y = blk_of(&out[0]);
    const float *xs = in[0].data;
    float *ys = out[0].data;
    for (int64_t b = 0; b < Y.n; b++)
        for (int64_t ch = 0; ch < Y.c; ch++)
            for (int64_t o = 0; o < Y.sp; o++) {
                float best = -INFINITY, sum = 0.0f;
                bool found = false;
                for (int64_t t = 0; t < g.taps; t++) {
                    int64_t s;
                    if (!tap_at(&g, o, t, &s)) continue;
                    float v = xs[blk_at(&X, b, ch, s)];
                    /* the first maximum wins; a NaN wins over numbers (as pool.c) */
                    if (!found || v > best || (v != v && best == best)) best = v;
                    found = true;
                    sum += v;
                }
                if (is_max) {
                    ys[blk_at(&Y, b, ch, o)] = best;
                    continue;
                }
                /* The divisor counts the taps in the input or, with count_include_pad, in
                 * the padded input [-pad, in + pad_end); none gives NaN (as pool.c). */
                int64_t oc[3], count = 1;
                coords(g.out, o, oc);
                for (int32_t d = 0; d < 3; d++)
                    count *= include_pad
                                 ? taps_within(&g, d, oc[d], -g.pad[d], g.in[d] + g.pad_end[d])
                                 : taps_within(&g, d, oc[d], 0, g.in[d]);
                ys[blk_at(&Y, b, ch, o)] = count > 0 ? sum / (float)count : NAN;
            }
    ir_layout_zero_padding(&out[0]);
    return KILN_OK;
}

/* ---- GlobalAveragePool and GlobalMaxPool ---- */

static kiln_status run_global_pool(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                   ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    bool is_max = strcmp(n->op->name, "GlobalMaxPool") == 0;
    blk X = blk_of(&in[0]), Y = blk_of(&out[0]);
    const float *xs = in[0].data;
    float *ys = out[0].data;
    for (int64_t b = 0; b < X.n; b++)
        for (int64_t ch = 0; ch < X.c; ch++) {
            double sum = 0.0; /* as pool.c: planes can be large */
            float best = xs[blk_at(&X, b, ch, 0)];
            for (int64_t s = 0; s < X.sp; s++) {
                float v = xs[blk_at(&X, b, ch, s)];
                sum += v;
                if (s > 0 && (v > best || (v != v && best == best))) best = v;
            }
            ys[blk_at(&Y, b, ch, 0)] = is_max ? best : (float)(sum / (double)X.sp);
        }
    ir_layout_zero_padding(&out[0]);
    return KILN_OK;
}

/* ---- Add and Mul: one operand of the output's shape, the other per channel ---- */

/* Whether `b` broadcasts against `out` as one value per channel (per batch too, when its
 * first dim is N): right-aligned, 1 everywhere but C at dim 1 of out and 1 or N at dim 0.
 * A constant may have a lower rank (the builder gives it leading 1s before storing it
 * blocked); an activation, or a stored blocked operand, must have out's rank. */
static bool per_channel(const ir_tensor *b, const kiln_dims *out)
{
    int32_t lead = out->rank - b->shape.rank;
    bool exact = b->data == NULL || b->layout != IR_LAYOUT_PLAIN;
    if (lead < 0 || lead > 1 || (exact && lead != 0)) return false;
    for (int32_t d = 0; d < b->shape.rank; d++) {
        int64_t v = b->shape.d[d];
        int32_t od = d + lead;
        if (od == 1 ? v != out->d[1] : (od == 0 ? v != 1 && v != out->d[0] : v != 1)) return false;
    }
    return true;
}

/* Element i (a storage index of y) of operand t: the same index when t has y's shape,
 * else t's value for that batch and channel. */
static inline float operand_at(const float *t, bool whole, bool per_batch, const blk *y, int64_t i)
{
    if (whole) return t[i];
    int64_t lane = i % y->b, cb = i / y->b / y->sp % y->blocks, nb = i / y->b / y->sp / y->blocks;
    return t[((per_batch ? nb : 0) * y->blocks + cb) * y->b + lane];
}

static kiln_status run_channel_binary(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                      ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    bool is_add = strcmp(n->op->name, "Add") == 0;
    blk Y = blk_of(&out[0]);
    const float *a = in[0].data, *b = in[1].data;
    bool wa = kiln_dims_equal(&in[0].shape, &out[0].shape);
    bool wb = kiln_dims_equal(&in[1].shape, &out[0].shape);
    bool na = in[0].shape.d[0] != 1, nb = in[1].shape.d[0] != 1;
    float *y = out[0].data;
    int64_t count = ir_tensor_storage_count(&out[0]);
    for (int64_t i = 0; i < count; i++) {
        float u = operand_at(a, wa, na, &Y, i), v = operand_at(b, wb, nb, &Y, i);
        y[i] = is_add ? u + v : u * v;
    }
    ir_layout_zero_padding(&out[0]);
    return KILN_OK;
}

/* ---- which tensors each kernel takes blocked ---- */

bool cpu_layouts_are(const ir_tensor *in, int32_t n_in, const ir_tensor *out, int32_t n_out,
                     const ir_layout *lin, const ir_layout *lout)
{
    for (int32_t k = 0; k < n_in; k++)
        if (ir_tensor_present(&in[k]) && in[k].layout != lin[k]) return false;
    for (int32_t k = 0; k < n_out; k++)
        if (out[k].layout != lout[k]) return false;
    return true;
}

bool cpu_nchwc_layouts(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                       int32_t n_out, ir_layout l, ir_layout *lin, ir_layout *lout)
{
    const char *op = n->op->name;
    if (l == IR_LAYOUT_PLAIN || n_out != 1 || n_in < 1 || n_in > CPU_MAX_BLOCKED_IN ||
        !blockable_f32(&out[0], l) || !present(in, n_in, 0))
        return false;
    for (int32_t k = 0; k < n_in; k++) lin[k] = IR_LAYOUT_PLAIN;
    lout[0] = l;
    if (strcmp(op, "Conv") == 0 || strcmp(op, "kiln.Conv") == 0) {
        if (!blockable_f32(&in[0], l)) return false;
        lin[0] = l;
        if (op[0] == 'k' && present(in, n_in, 3)) lin[3] = l; /* Z has the output's shape */
        return true;
    }
    if (strcmp(op, "MaxPool") == 0 || strcmp(op, "AveragePool") == 0 ||
        strcmp(op, "GlobalAveragePool") == 0 || strcmp(op, "GlobalMaxPool") == 0) {
        lin[0] = l;
        return blockable_f32(&in[0], l);
    }
    if ((strcmp(op, "Add") == 0 || strcmp(op, "Mul") == 0) && n_in == 2 &&
        in[0].dtype == KILN_DTYPE_F32 && in[1].dtype == KILN_DTYPE_F32) {
        for (int32_t k = 0; k < 2; k++)
            if (kiln_dims_equal(&in[k].shape, &out[0].shape) &&
                per_channel(&in[1 - k], &out[0].shape)) {
                lin[0] = lin[1] = l;
                return true;
            }
    }
    return false;
}

/* A kernel of this file runs the layer when its tensors hold the layouts cpu_nchwc_layouts
 * gives for the output's block. */
static bool nchwc_applies(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                          int32_t n_out)
{
    ir_layout lin[CPU_MAX_BLOCKED_IN], lout[1];
    if (n_out != 1 || n_in > CPU_MAX_BLOCKED_IN) return false;
    return cpu_nchwc_layouts(n, in, n_in, out, n_out, out[0].layout, lin, lout) &&
           cpu_layouts_are(in, n_in, out, n_out, lin, lout);
}

const backend_kernel cpu_nchwc_kernels[] = {
    {.name = "ref_nchwc", .op = "Conv", .applies = nchwc_applies, .run = run_conv},
    {.name = "ref_nchwc", .op = "kiln.Conv", .applies = nchwc_applies, .run = run_conv},
    {.name = "ref_nchwc", .op = "MaxPool", .applies = nchwc_applies, .run = run_pool},
    {.name = "ref_nchwc", .op = "AveragePool", .applies = nchwc_applies, .run = run_pool},
    {.name = "ref_nchwc",
     .op = "GlobalAveragePool",
     .applies = nchwc_applies,
     .run = run_global_pool},
    {.name = "ref_nchwc", .op = "GlobalMaxPool", .applies = nchwc_applies, .run = run_global_pool},
    {.name = "ref_nchwc", .op = "Add", .applies = nchwc_applies, .run = run_channel_binary},
    {.name = "ref_nchwc", .op = "Mul", .applies = nchwc_applies, .run = run_channel_binary},
};
const int32_t cpu_nchwc_kernel_count = sizeof cpu_nchwc_kernels / sizeof *cpu_nchwc_kernels;
