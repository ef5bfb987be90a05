/* nn_impl.h - what the files of the nn op group share: sliding-window geometry (kernel,
 * strides, dilations, pads, auto_pad) and the schemas and functions that conv.c, pool.c
 * and norm.c give to the group table in nn.c. Private to src/ir/ops. */
#ifndef KILN_IR_OPS_NN_IMPL_H
#define KILN_IR_OPS_NN_IMPL_H

#include "ir/ir.h"

/* Inputs are N x C x D1 ... Dn, so at most this many spatial dims. */
#define NN_MAX_SPATIAL (KILN_MAX_RANK - 2)
/* Bound on kernel, stride, dilation and pad values: products of two stay far from
 * int64 overflow, and no real network comes near it. */
#define NN_MAX_ATTR ((int64_t)1 << 30)

typedef enum nn_auto_pad {
    NN_PAD_NOTSET = 0,
    NN_PAD_SAME_UPPER,
    NN_PAD_SAME_LOWER,
    NN_PAD_VALID
} nn_auto_pad;

/* A window sliding over the spatial dims. Sizes of -1 are unknown (dynamic); the
 * pads of such a dim are then unknown too under SAME_*. */
typedef struct nn_window {
    int32_t ns; /* spatial dims */
    nn_auto_pad auto_pad;
    int64_t kernel[NN_MAX_SPATIAL];
    int64_t stride[NN_MAX_SPATIAL];
    int64_t dilation[NN_MAX_SPATIAL];
    int64_t pad_begin[NN_MAX_SPATIAL]; /* as given; as used after ir_nn_window_forward */
    int64_t pad_end[NN_MAX_SPATIAL];
    int64_t in[NN_MAX_SPATIAL];
    int64_t out[NN_MAX_SPATIAL];
} nn_window;

/* Reads and checks auto_pad, kernel_shape, strides, dilations and pads for `ns`
 * spatial dims. `kernel` (the weights' spatial dims) is used when kernel_shape is
 * absent and must agree with it when present; NULL makes kernel_shape required. */
kiln_status ir_nn_window_read(const ir_node *n, int32_t ns, const int64_t *kernel, nn_window *w);
/* Output sizes and the pads in use of a forward window (Conv, pools) from w->in.
 * `ceil_mode`: the pools' rounding up, dropping a last window that would start in the
 * end padding. Fails when a kernel does not fit its padded input. */
kiln_status ir_nn_window_forward(const ir_node *n, nn_window *w, bool ceil_mode);
/* The windows of Conv (X, W, B) and of MaxPool or AveragePool (X) layers, as their shape
 * rules compute them (conv.c, pool.c); ir_window_of gives them to other parts. */
kiln_status ir_nn_conv_window(const ir_node *n, const ir_tensor *in, int32_t n_in, nn_window *w);
kiln_status ir_nn_pool_window(const ir_node *n, const ir_tensor *x, bool is_max, nn_window *w);
/* "3x3" for the first `count` values of `v`. Returns buf. */
char *ir_nn_ints_str(const int64_t *v, int32_t count, char *buf, size_t size);
/* KILN_ERR_UNSUPPORTED unless `t` is f32; `what` names the input. */
kiln_status ir_nn_need_f32(const ir_node *n, const ir_tensor *t, const char *what);
/* Product of the first `count` values. */
int64_t ir_nn_prod(const int64_t *v, int32_t count);

/* Rounding divisions by a positive divisor, right for negative numerators too. */
static inline int64_t nn_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

static inline int64_t nn_ceil_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a > 0) ? q + 1 : q;
}

/* Steps a multi-index through the box lo <= idx < hi over `nd` dims, last dim
 * fastest; false once it has wrapped around. With nd == 0 the box has one point. */
static inline bool nn_next(int64_t *idx, const int64_t *lo, const int64_t *hi, int32_t nd)
{
    for (int32_t d = nd - 1; d >= 0; d--) {
        if (++idx[d] < hi[d]) return true;
        idx[d] = lo[d];
    }
    return false;
}

/* Operator entries: schema (attribute table and its length) and functions. The
 * lengths are macros so nn.c's table can use them; each file checks its own. */
#define NN_CONV_ATTRS           6
#define NN_CONV_TRANSPOSE_ATTRS 8
#define NN_MAXPOOL_ATTRS        7
#define NN_AVGPOOL_ATTRS        7
#define NN_BATCHNORM_ATTRS      3
#define NN_LRN_ATTRS            4
#define NN_INSTANCENORM_ATTRS   1
#define NN_GROUPNORM_ATTRS      3
#define NN_LPNORM_ATTRS         2

extern const ir_attr_def ir_nn_conv_attrs[NN_CONV_ATTRS];
extern const ir_attr_def ir_nn_conv_transpose_attrs[NN_CONV_TRANSPOSE_ATTRS];
extern const ir_attr_def ir_nn_maxpool_attrs[NN_MAXPOOL_ATTRS];
extern const ir_attr_def ir_nn_avgpool_attrs[NN_AVGPOOL_ATTRS];
extern const ir_attr_def ir_nn_batchnorm_attrs[NN_BATCHNORM_ATTRS];
extern const ir_attr_def ir_nn_lrn_attrs[NN_LRN_ATTRS];
extern const ir_attr_def ir_nn_instancenorm_attrs[NN_INSTANCENORM_ATTRS];
extern const ir_attr_def ir_nn_groupnorm_attrs[NN_GROUPNORM_ATTRS];
extern const ir_attr_def ir_nn_lpnorm_attrs[NN_LPNORM_ATTRS];

#define NN_OP_FNS(op)                                                                              \
    kiln_status ir_nn_##op##_infer(ir_infer *c);                                                   \
    kiln_status ir_nn_##op##_eval(const ir_node *n, const ir_tensor *in, int32_t n_in,             \
                                  ir_tensor *out, int32_t n_out);

/* conv.c */
NN_OP_FNS(conv)
NN_OP_FNS(conv_transpose)
/* pool.c */
NN_OP_FNS(maxpool)
NN_OP_FNS(avgpool)
NN_OP_FNS(global_avgpool)
NN_OP_FNS(global_maxpool)
/* norm.c */
NN_OP_FNS(batchnorm)
NN_OP_FNS(lrn)
NN_OP_FNS(instancenorm)
NN_OP_FNS(groupnorm)
NN_OP_FNS(lpnorm)

#endif /* KILN_IR_OPS_NN_IMPL_H */
