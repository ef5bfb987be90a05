/* pool.c - MaxPool (with its optional Indices output), AveragePool, GlobalAveragePool
 * and GlobalMaxPool: N-D, dilations, auto_pad and ceil_mode as ONNX defines them. */
#include <math.h>
#include <string.h>

#include "ir/ops/nn_impl.h"

const ir_attr_def ir_nn_maxpool_attrs[] = {
    {"auto_pad", KILN_ATTR_STRING, false, 0, 0, "NOTSET"},
    {"ceil_mode", KILN_ATTR_INT, false, 0, 0, NULL},
    {"dilations", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"kernel_shape", KILN_ATTR_INTS, true, 0, 0, NULL},
    {"pads", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"storage_order", KILN_ATTR_INT, false, 0, 0, NULL},
    {"strides", KILN_ATTR_INTS, false, 0, 0, NULL},
};

const ir_attr_def ir_nn_avgpool_attrs[] = {
    {"auto_pad", KILN_ATTR_STRING, false, 0, 0, "NOTSET"},
    {"ceil_mode", KILN_ATTR_INT, false, 0, 0, NULL},
    {"count_include_pad", KILN_ATTR_INT, false, 0, 0, NULL},
    {"dilations", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"kernel_shape", KILN_ATTR_INTS, true, 0, 0, NULL},
    {"pads", KILN_ATTR_INTS, false, 0, 0, NULL},
    {"strides", KILN_ATTR_INTS, false, 0, 0, NULL},
};

/* X must be f32 (MaxPool also takes i8 and u8) and N x C x D1 ... */
static kiln_status check_pool_input(const ir_node *n, const ir_tensor *x, bool is_max)
{
    char s[KILN_DIMS_STR_MAX];
    if (!(is_max && (x->dtype == KILN_DTYPE_I8 || x->dtype == KILN_DTYPE_U8))) {
        if (is_max && x->dtype != KILN_DTYPE_F32)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED, "X has dtype %s, expected f32, i8 or u8",
                                 kiln_dtype_name(x->dtype));
        KILN_TRY(ir_nn_need_f32(n, x, "X"));
    }
    if (x->shape.rank < 3)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "X must be N x C x D1 x ... (rank 3 or more), got %s",
                             kiln_dims_str(&x->shape, s, sizeof s));
    return KILN_OK;
}

/* A 0/1 flag attribute. */
static kiln_status read_flag(const ir_node *n, const char *name, bool *out)
{
    int64_t v = ir_attr_int(n, name);
    if (v != 0 && v != 1)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "%s is %lld, expected 0 or 1", name,
                             (long long)v);
    *out = v == 1;
    return KILN_OK;
}

static kiln_status pool_geometry(const ir_node *n, const ir_tensor *x, bool is_max, nn_window *w)
{
    bool ceil_mode = false;
    KILN_TRY(check_pool_input(n, x, is_max));
    KILN_TRY(read_flag(n, "ceil_mode", &ceil_mode));
    KILN_TRY(ir_nn_window_read(n, x->shape.rank - 2, NULL, w));
    for (int32_t d = 0; d < w->ns; d++) w->in[d] = x->shape.d[2 + d];
    return ir_nn_window_forward(n, w, ceil_mode);
}

kiln_status ir_nn_pool_window(const ir_node *n, const ir_tensor *x, bool is_max, nn_window *w)
{
    return pool_geometry(n, x, is_max, w);
}

static void pool_out_shape(const ir_tensor *x, const nn_window *w, kiln_dims *o)
{
    o->rank = x->shape.rank;
    o->d[0] = x->shape.d[0];
    o->d[1] = x->shape.d[1];
    for (int32_t d = 0; d < w->ns; d++) o->d[2 + d] = w->out[d];
}

/* The taps of the window at output `o` that fall inside the input: [klo, khi) per
 * dim, with `start` the input position of tap 0. False if there are none. */
static bool window_taps(const nn_window *w, const int64_t *o, int64_t *start, int64_t *klo,
                        int64_t *khi)
{
    bool any = true;
    for (int32_t d = 0; d < w->ns; d++) {
        int64_t dil = w->dilation[d];
        start[d] = o[d] * w->stride[d] - w->pad_begin[d];
        klo[d] = start[d] < 0 ? nn_ceil_div(-start[d], dil) : 0;
        khi[d] = nn_floor_div(w->in[d] - 1 - start[d], dil) + 1;
        if (khi[d] > w->kernel[d]) khi[d] = w->kernel[d];
        if (klo[d] >= khi[d]) any = false;
    }
    return any;
}

/* Row-major strides of the spatial dims of the input. */
static void in_strides(const nn_window *w, int64_t *st)
{
    int64_t s = 1;
    for (int32_t d = w->ns - 1; d >= 0; d--) {
        st[d] = s;
        s *= w->in[d];
    }
}

/* ---- MaxPool ---- */

kiln_status ir_nn_maxpool_infer(ir_infer *c)
{
    nn_window w;
    bool col_major = false;
    KILN_TRY(pool_geometry(c->node, &c->in[0], true, &w));
    KILN_TRY(read_flag(c->node, "storage_order", &col_major));
    c->out[0].dtype = c->in[0].dtype;
    pool_out_shape(&c->in[0], &w, &c->out[0].shape);
    if (c->n_out > 1) {
        c->out[1].dtype = KILN_DTYPE_I64;
        c->out[1].shape = c->out[0].shape;
    }
    return KILN_OK;
}

/* Index of spatial offset `off` (row-major) as ONNX's Indices give it: flattened over
 * the whole tensor, the spatial part column-major when storage_order is 1. */
static int64_t max_index(const nn_window *w, int64_t plane, int64_t off, bool col_major)
{
    int64_t in_plane = ir_nn_prod(w->in, w->ns);
    if (!col_major) return plane * in_plane + off;
    int64_t coord[NN_MAX_SPATIAL];
    for (int32_t d = w->ns - 1; d >= 0; d--) {
        coord[d] = off % w->in[d];
        off /= w->in[d];
    }
    int64_t idx = 0, scale = 1;
    for (int32_t d = 0; d < w->ns; d++) {
        idx += coord[d] * scale;
        scale *= w->in[d];
    }
    return plane * in_plane + idx;
}

/* One MaxPool kernel per dtype; `lowest` fills a window with no taps inside the input. */
#define MAXPOOL_KERNEL(name, T, lowest)                                                            \
    static void name(const nn_window *w, int64_t planes, bool col_major, const T *x, T *y,         \
                     int64_t *yi)                                                                  \
    {                                                                                              \
        int32_t ns = w->ns, last = ns - 1;                                                         \
        int64_t in_plane = ir_nn_prod(w->in, ns);                                                  \
        int64_t ist[NN_MAX_SPATIAL];                                                               \
        in_strides(w, ist);                                                                        \
        int64_t zero[NN_MAX_SPATIAL] = {0}, dl = w->dilation[last];                                \
        for (int64_t p = 0; p < planes; p++) {                                                     \
            const T *xp = x + p * in_plane;                                                        \
            int64_t o[NN_MAX_SPATIAL] = {0};                                                       \
            do {                                                                                   \
                int64_t start[NN_MAX_SPATIAL], klo[NN_MAX_SPATIAL], khi[NN_MAX_SPATIAL];           \
                T best = (lowest);                                                                 \
                int64_t best_at = -1;                                                              \
                if (window_taps(w, o, start, klo, khi)) {                                          \
                    int64_t k[NN_MAX_SPATIAL];                                                     \
                    memcpy(k, klo, sizeof(int64_t) * (size_t)ns);                                  \
                    do {                                                                           \
                        int64_t row = 0;                                                           \
                        for (int32_t d = 0; d < last; d++)                                         \
                            row += (start[d] + k[d] * w->dilation[d]) * ist[d];                    \
                        for (int64_t kl = klo[last]; kl < khi[last]; kl++) {                       \
                            int64_t at = row + start[last] + kl * dl;                              \
                            T v = xp[at];                                                          \
                            /* the first maximum wins; a NaN wins over numbers */                  \
                            if (best_at < 0 || v > best || (v != v && best == best)) {             \
                                best = v;                                                          \
                                best_at = at;                                                      \
                            }                                                                      \
                        }                                                                          \
                    } while (nn_next(k, klo, khi, last));                                          \
                }                                                                                  \
                *y++ = best;                                                                       \
                if (yi) *yi++ = best_at < 0 ? -1 : max_index(w, p, best_at, col_major);            \
            } while (nn_next(o, zero, w->out, ns));                                                \
        }                                                                                          \
    }

MAXPOOL_KERNEL(maxpool_f32, float, -INFINITY)
MAXPOOL_KERNEL(maxpool_i8, int8_t, INT8_MIN)
MAXPOOL_KERNEL(maxpool_u8, uint8_t, 0)

kiln_status ir_nn_maxpool_eval(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                               int32_t n_out)
{
    nn_window w;
    bool col_major = false;
    KILN_TRY(pool_geometry(n, &in[0], true, &w));
    KILN_TRY(read_flag(n, "storage_order", &col_major));
    int64_t planes = in[0].shape.d[0] * in[0].shape.d[1];
    int64_t *yi = n_out > 1 ? out[1].data : NULL;
    switch (in[0].dtype) {
    case KILN_DTYPE_I8: maxpool_i8(&w, planes, col_major, in[0].data, out[0].data, yi); break;
    case KILN_DTYPE_U8: maxpool_u8(&w, planes, col_major, in[0].data, out[0].data, yi); break;
    default: maxpool_f32(&w, planes, col_major, in[0].data, out[0].data, yi); break;
    }
    return KILN_OK;
}

/* ---- AveragePool ---- */

kiln_status ir_nn_avgpool_infer(ir_infer *c)
{
    nn_window w;
    bool include_pad = false;
    KILN_TRY(pool_geometry(c->node, &c->in[0], false, &w));
    KILN_TRY(read_flag(c->node, "count_include_pad", &include_pad));
    c->out[0].dtype = KILN_DTYPE_F32;
    pool_out_shape(&c->in[0], &w, &c->out[0].shape);
    return KILN_OK;
}

/* The divisor counts the taps inside the input, or with count_include_pad the taps
 * inside the padded input [-pad_begin, in + pad_end) - not those a ceil_mode window
 * hangs past the end padding (as in PyTorch and onnxruntime). An empty window gives
 * NaN, as ONNX's reference does. */
kiln_status ir_nn_avgpool_eval(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                               int32_t n_out)
{
    nn_window w;
    bool include_pad = false;
    KILN_TRY(pool_geometry(n, &in[0], false, &w));
    KILN_TRY(read_flag(n, "count_include_pad", &include_pad));
    int32_t ns = w.ns, last = ns - 1;
    int64_t planes = in[0].shape.d[0] * in[0].shape.d[1];
    int64_t in_plane = ir_nn_prod(w.in, ns);
    int64_t ist[NN_MAX_SPATIAL];
    in_strides(&w, ist);
    const float *x = in[0].data;
    float *y = out[0].data;
    int64_t zero[NN_MAX_SPATIAL] = {0}, dl = w.dilation[last];
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * in_plane;
        int64_t o[NN_MAX_SPATIAL] = {0};
        do {
            int64_t start[NN_MAX_SPATIAL], klo[NN_MAX_SPATIAL], khi[NN_MAX_SPATIAL];
            float sum = 0.0f;
            bool any = window_taps(&w, o, start, klo, khi);
            int64_t count = 1;
            for (int32_t d = 0; d < ns; d++) {
                int64_t taps = khi[d] - klo[d];
                if (include_pad) { /* start >= -pad_begin always holds */
                    taps = nn_floor_div(w.in[d] + w.pad_end[d] - 1 - start[d], w.dilation[d]) + 1;
                    if (taps > w.kernel[d]) taps = w.kernel[d];
                }
                count *= taps > 0 ? taps : 0;
            }
            if (any) {
                int64_t k[NN_MAX_SPATIAL];
                memcpy(k, klo, sizeof(int64_t) * (size_t)ns);
                do {
                    int64_t row = start[last];
                    for (int32_t d = 0; d < last; d++)
                        row += (start[d] + k[d] * w.dilation[d]) * ist[d];
                    for (int64_t kl = klo[last]; kl < khi[last]; kl++) sum += xp[row + kl * dl];
                } while (nn_next(k, klo, khi, last));
            }
            *y++ = count > 0 ? sum / (float)count : NAN;
        } while (nn_next(o, zero, w.out, ns));
    }
    return KILN_OK;
}

/* ---- GlobalAveragePool, GlobalMaxPool ---- */

static kiln_status infer_global(ir_infer *c)
{
    const ir_tensor *x = &c->in[0];
    KILN_TRY(check_pool_input(c->node, x, false));
    for (int32_t d = 2; d < x->shape.rank; d++)
        if (x->shape.d[d] == 0)
            return ir_node_error(c->node, KILN_ERR_SHAPE, "spatial dim %d of X is 0", d - 2);
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = x->shape;
    for (int32_t d = 2; d < x->shape.rank; d++) c->out[0].shape.d[d] = 1;
    return KILN_OK;
}

kiln_status ir_nn_global_avgpool_infer(ir_infer *c) { return infer_global(c); }
kiln_status ir_nn_global_maxpool_infer(ir_infer *c) { return infer_global(c); }

kiln_status ir_nn_global_avgpool_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                      ir_tensor *out, int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    int64_t planes = s->d[0] * s->d[1], size = ir_nn_prod(&s->d[2], s->rank - 2);
    const float *x = in[0].data;
    float *y = out[0].data;
    for (int64_t p = 0; p < planes; p++, x += size) {
        double sum = 0.0; /* planes can be large; keep the mean accurate */
        for (int64_t i = 0; i < size; i++) sum += x[i];
        y[p] = (float)(sum / (double)size);
    }
    return KILN_OK;
}

kiln_status ir_nn_global_maxpool_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                      ir_tensor *out, int32_t n_out)
{
    const kiln_dims *s = &in[0].shape;
    int64_t planes = s->d[0] * s->d[1], size = ir_nn_prod(&s->d[2], s->rank - 2);
    const float *x = in[0].data;
    float *y = out[0].data;
    for (int64_t p = 0; p < planes; p++, x += size) {
        float best = x[0];
        for (int64_t i = 1; i < size; i++)
            if (x[i] > best || (x[i] != x[i] && best == best)) best = x[i];
        y[p] = best;
    }
    return KILN_OK;
}
