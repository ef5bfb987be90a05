/* extra_pool.c - LpPool and GlobalLpPool: (sum |x|^p)^(1/p) over a window, with the
 * window geometry (kernel, strides, dilations, pads, auto_pad, ceil_mode) of nn_impl.h. */
#include <math.h>
#include <string.h>

#include "ir/ops/extra_impl.h"
#include "ir/ops/nn_impl.h"

/* p is an int in ONNX; kiln bounds it so |x|^p stays meaningful in double. */
#define LP_MAX_P 64

static kiln_status read_p(const ir_node *n, int64_t *p)
{
    *p = ir_attr_int(n, "p");
    if (*p < 1 || *p > LP_MAX_P)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "p is %lld, expected 1 to %d",
                             (long long)*p, LP_MAX_P);
    return KILN_OK;
}

static kiln_status check_x(const ir_node *n, const ir_tensor *x)
{
    char s[KILN_DIMS_STR_MAX];
    KILN_TRY(ir_nn_need_f32(n, x, "X"));
    if (x->shape.rank < 3)
        return ir_node_error(n, KILN_ERR_SHAPE,
                             "X must be N x C x D1 x ... (rank 3 or more), got %s",
                             kiln_dims_str(&x->shape, s, sizeof s));
    return KILN_OK;
}

static inline double lp_term(double v, int64_t p)
{
    double a = fabs(v);
    return p == 1 ? a : (p == 2 ? a * a : pow(a, (double)p));
}

static inline float lp_root(double s, int64_t p)
{
    return (float)(p == 1 ? s : (p == 2 ? sqrt(s) : pow(s, 1.0 / (double)p)));
}

/* ---- LpPool ---- */

static kiln_status lppool_geometry(const ir_node *n, const ir_tensor *x, nn_window *w, int64_t *p)
{
    KILN_TRY(check_x(n, x));
    KILN_TRY(read_p(n, p));
    int64_t ceil_mode = ir_attr_int(n, "ceil_mode");
    if (ceil_mode != 0 && ceil_mode != 1)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "ceil_mode is %lld, expected 0 or 1",
                             (long long)ceil_mode);
    KILN_TRY(ir_nn_window_read(n, x->shape.rank - 2, NULL, w));
    for (int32_t d = 0; d < w->ns; d++) w->in[d] = x->shape.d[2 + d];
    return ir_nn_window_forward(n, w, ceil_mode == 1);
}

kiln_status ex_infer_lppool(ir_infer *c)
{
    nn_window w;
    int64_t p;
    KILN_TRY(lppool_geometry(c->node, &c->in[0], &w, &p));
    kiln_dims *o = &c->out[0].shape;
    *o = c->in[0].shape;
    for (int32_t d = 0; d < w.ns; d++) o->d[2 + d] = w.out[d];
    c->out[0].dtype = KILN_DTYPE_F32;
    return KILN_OK;
}

/* Taps in the padding add |0|^p = 0, so only those inside the input are summed. */
kiln_status ex_eval_lppool(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out)
{
    nn_window w;
    int64_t p;
    KILN_TRY(lppool_geometry(n, &in[0], &w, &p));
    const int32_t ns = w.ns;
    int64_t planes = in[0].shape.d[0] * in[0].shape.d[1];
    int64_t in_plane = ir_nn_prod(w.in, ns), ist[NN_MAX_SPATIAL], s = 1;
    for (int32_t d = ns - 1; d >= 0; d--) {
        ist[d] = s;
        s *= w.in[d];
    }
    const float *x = in[0].data;
    float *y = out[0].data;
    int64_t zero[NN_MAX_SPATIAL] = {0};
    if (ir_tensor_count(&out[0]) == 0) return KILN_OK;
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * in_plane;
        int64_t o[NN_MAX_SPATIAL] = {0};
        do {
            double sum = 0.0;
            int64_t k[NN_MAX_SPATIAL] = {0};
            do {
                int64_t at = 0;
                bool inside = true;
                for (int32_t d = 0; d < ns && inside; d++) {
                    int64_t pos = o[d] * w.stride[d] - w.pad_begin[d] + k[d] * w.dilation[d];
                    inside = pos >= 0 && pos < w.in[d];
                    at += pos * ist[d];
                }
                if (inside) sum += lp_term(xp[at], p);
            } while (nn_next(k, zero, w.kernel, ns));
            *y++ = lp_root(sum, p);
        } while (nn_next(o, zero, w.out, ns));
    }
    return KILN_OK;
}

/* ---- GlobalLpPool ---- */

kiln_status ex_infer_global_lppool(ir_infer *c)
{
    int64_t p;
    KILN_TRY(check_x(c->node, &c->in[0]));
    KILN_TRY(read_p(c->node, &p));
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = c->in[0].shape;
    for (int32_t d = 2; d < c->in[0].shape.rank; d++) c->out[0].shape.d[d] = 1;
    return KILN_OK;
}

/* An empty plane sums to 0, so its result is 0. */
kiln_status ex_eval_global_lppool(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                  ir_tensor *out, int32_t n_out)
{
    int64_t p;
    KILN_TRY(read_p(n, &p));
    const kiln_dims *s = &in[0].shape;
    int64_t planes = s->d[0] * s->d[1], size = ir_nn_prod(&s->d[2], s->rank - 2);
    const float *x = in[0].data;
    float *y = out[0].data;
    for (int64_t pl = 0; pl < planes; pl++, x += size) {
        double sum = 0.0;
        for (int64_t i = 0; i < size; i++) sum += lp_term(x[i], p);
        y[pl] = lp_root(sum, p);
    }
    return KILN_OK;
}
