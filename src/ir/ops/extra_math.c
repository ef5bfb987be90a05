/* extra_math.c - elementwise math kiln's elementwise group lacks: the inverse and
 * hyperbolic trigonometric functions and Tan, Celu (f32, f16, bf16), Shrink, and BitShift
 * (broadcasting; signed types shift right arithmetically). */
#include <math.h>
#include <string.h>

#include "ir/ops/elementwise_scalar.h"
#include "ir/ops/extra_impl.h"

static kiln_status need_dtype(const ir_node *n, const char *what, kiln_dtype t,
                              const kiln_dtype *ok, int32_t n_ok, const char *list)
{
    for (int32_t i = 0; i < n_ok; i++)
        if (t == ok[i]) return KILN_OK;
    return ir_node_error(n, KILN_ERR_UNSUPPORTED, "%s has dtype %s, expected %s", what,
                         kiln_dtype_name(t), list);
}

/* ---- f32 unary functions ---- */

kiln_status ex_infer_unary_f32(ir_infer *c)
{
    static const kiln_dtype ok[] = {KILN_DTYPE_F32};
    KILN_TRY(need_dtype(c->node, "input", c->in[0].dtype, ok, 1, "f32"));
    return ir_infer_same_as_input(c);
}

#define UNARY_F32(name, EXPR)                                                                      \
    kiln_status ex_eval_##name(const ir_node *n, const ir_tensor *in, int32_t n_in,                \
                               ir_tensor *out, int32_t n_out)                                      \
    {                                                                                              \
        const float *xs = in[0].data;                                                              \
        float *ys = out[0].data;                                                                   \
        int64_t cnt = ir_tensor_count(&in[0]);                                                     \
        for (int64_t i = 0; i < cnt; i++) {                                                        \
            const float x = xs[i];                                                                 \
            ys[i] = (EXPR);                                                                        \
        }                                                                                          \
        return KILN_OK;                                                                            \
    }

/* Outside a function's domain libm gives NaN, which is what ONNX expects. */
UNARY_F32(acos, acosf(x))
UNARY_F32(asin, asinf(x))
UNARY_F32(atan, atanf(x))
UNARY_F32(acosh, acoshf(x))
UNARY_F32(asinh, asinhf(x))
UNARY_F32(atanh, atanhf(x))
UNARY_F32(sinh, sinhf(x))
UNARY_F32(cosh, coshf(x))
UNARY_F32(tan, tanf(x))

/* ---- Celu ---- */

static const kiln_dtype k_celu_types[] = {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16};

kiln_status ex_infer_celu(ir_infer *c)
{
    KILN_TRY(need_dtype(c->node, "input", c->in[0].dtype, k_celu_types, 3, "f32, f16 or bf16"));
    float alpha = ir_attr_float(c->node, "alpha");
    if (alpha == 0.0f || !isfinite(alpha))
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                             "alpha is %g, expected a finite nonzero value (Celu divides by it)",
                             (double)alpha);
    return ir_infer_same_as_input(c);
}

/* The formula is ew_celu of elementwise_scalar.h (shared with kiln.Elementwise). */

/* f16 and bf16 are widened to f32 (exactly) and the f32 result is rounded once on
 * store: it passes through ir_tensor_set's double unchanged. */
kiln_status ex_eval_celu(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                         int32_t n_out)
{
    const float alpha = ir_attr_float(n, "alpha");
    int64_t cnt = ir_tensor_count(&in[0]);
    if (in[0].dtype == KILN_DTYPE_F32) {
        const float *x = in[0].data;
        float *y = out[0].data;
        for (int64_t i = 0; i < cnt; i++) y[i] = ew_celu(x[i], alpha);
        return KILN_OK;
    }
    for (int64_t i = 0; i < cnt; i++)
        ir_tensor_set(&out[0], i, ew_celu((float)ir_tensor_get(&in[0], i), alpha));
    return KILN_OK;
}

/* ---- Shrink ---- */

static const kiln_dtype k_shrink_types[] = {KILN_DTYPE_F32, KILN_DTYPE_I64, KILN_DTYPE_I32,
                                            KILN_DTYPE_I8, KILN_DTYPE_U8};

kiln_status ex_infer_shrink(ir_infer *c)
{
    KILN_TRY(
        need_dtype(c->node, "input", c->in[0].dtype, k_shrink_types, 5, "f32, i64, i32, i8 or u8"));
    float lambd = ir_attr_float(c->node, "lambd"), bias = ir_attr_float(c->node, "bias");
    if (isnan(lambd) || isnan(bias))
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                             "lambd %g and bias %g must be numbers", (double)lambd, (double)bias);
    return ir_infer_same_as_input(c);
}

/* Integers go through double and back, truncating like numpy's astype in ONNX's
 * reference (exact except for |i64| above 2^53). */
kiln_status ex_eval_shrink(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out)
{
    const double lambd = ir_attr_float(n, "lambd"), bias = ir_attr_float(n, "bias");
    int64_t cnt = ir_tensor_count(&in[0]);
    if (in[0].dtype == KILN_DTYPE_F32) {
        const float *x = in[0].data;
        float *y = out[0].data;
        const float fl = (float)lambd, fb = (float)bias;
        for (int64_t i = 0; i < cnt; i++)
            y[i] = x[i] < -fl ? x[i] + fb : (x[i] > fl ? x[i] - fb : 0.0f);
        return KILN_OK;
    }
    for (int64_t i = 0; i < cnt; i++) {
        double v = ir_tensor_get(&in[0], i);
        ir_tensor_set(&out[0], i, v < -lambd ? v + bias : (v > lambd ? v - bias : 0.0));
    }
    return KILN_OK;
}

/* ---- BitShift ---- */

/* Unsigned types shift logically; signed ones (opset 28's semantics) shift right
 * arithmetically, and a left shift wraps within the width. */
static const kiln_dtype k_shift_types[] = {KILN_DTYPE_U8, KILN_DTYPE_I8, KILN_DTYPE_I32,
                                           KILN_DTYPE_I64};

static kiln_status shift_direction(const ir_node *n, bool *left)
{
    const char *d = ir_attr_string(n, "direction");
    if (strcmp(d, "LEFT") != 0 && strcmp(d, "RIGHT") != 0)
        return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                             "direction is \"%s\", expected \"LEFT\" or \"RIGHT\"", d);
    *left = d[0] == 'L';
    return KILN_OK;
}

/* numpy broadcasting where an unknown dim (-1) takes the other side's size. */
static bool broadcast_dyn(const kiln_dims *a, const kiln_dims *b, kiln_dims *o)
{
    int32_t r = a->rank > b->rank ? a->rank : b->rank;
    memset(o, 0, sizeof *o);
    o->rank = r;
    for (int32_t i = 0; i < r; i++) {
        int32_t ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da == db || db == 1 || db == -1)
            o->d[i] = da;
        else if (da == 1 || da == -1)
            o->d[i] = db;
        else
            return false;
    }
    return true;
}

kiln_status ex_infer_bitshift(ir_infer *c)
{
    bool left = false;
    KILN_TRY(shift_direction(c->node, &left));
    KILN_TRY(need_dtype(c->node, "X", c->in[0].dtype, k_shift_types, 4, "u8, i8, i32 or i64"));
    if (c->in[1].dtype != c->in[0].dtype)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "Y has dtype %s, expected %s like X",
                             kiln_dtype_name(c->in[1].dtype), kiln_dtype_name(c->in[0].dtype));
    kiln_dims o;
    if (!broadcast_dyn(&c->in[0].shape, &c->in[1].shape, &o)) {
        char a[KILN_DIMS_STR_MAX], b[KILN_DIMS_STR_MAX];
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "X %s and Y %s do not broadcast (expected equal dims or 1)",
                             kiln_dims_str(&c->in[0].shape, a, sizeof a),
                             kiln_dims_str(&c->in[1].shape, b, sizeof b));
    }
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = o;
    return KILN_OK;
}

/* One element: `v` is the value sign-extended (signed types) or zero-extended to 64
 * bits, `s` the shift amount as the type reads it. A shift that is negative or not below
 * the width leaves only the sign fill: -1 for a right shift of a negative value, else 0
 * (ONNX's rule, which is numpy's; C would mask or leave it undefined). ~(~v >> s) is an
 * arithmetic right shift without C's implementation-defined signed >>. */
static uint64_t shift_one(uint64_t v, int64_t s, int64_t bits, bool left)
{
    const bool neg = (v >> 63) != 0;
    if (s < 0 || s >= bits) return !left && neg ? ~(uint64_t)0 : 0;
    if (left) return v << s;
    return neg ? ~(~v >> s) : v >> s;
}

/* T the element type, W its 64-bit widening (int64_t sign-extends, uint64_t does not),
 * U the unsigned type of T's width: the result is stored through it, so truncation to
 * the width is modular and defined. */
#define SHIFT_LOOP(T, W, U, BITS)                                                                  \
    do {                                                                                           \
        const T *xa = in[0].data, *ya = in[1].data;                                                \
        U *y = out[0].data;                                                                        \
        for (int64_t i = 0; i < cnt; i++) {                                                        \
            y[i] = (U)shift_one((uint64_t)(W)xa[ox], (int64_t)(W)ya[oy], (BITS), left);            \
            for (int32_t d = rank - 1; d >= 0; d--) {                                              \
                ox += sx[d];                                                                       \
                oy += sy[d];                                                                       \
                if (++idx[d] < o->d[d]) break;                                                     \
                ox -= o->d[d] * sx[d];                                                             \
                oy -= o->d[d] * sy[d];                                                             \
                idx[d] = 0;                                                                        \
            }                                                                                      \
        }                                                                                          \
    } while (0)

kiln_status ex_eval_bitshift(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    bool left = false;
    KILN_TRY(shift_direction(n, &left));
    const kiln_dims *o = &out[0].shape;
    kiln_dims want;
    if (!ir_broadcast(&in[0].shape, &in[1].shape, &want) || !kiln_dims_equal(&want, o))
        return ir_node_error(n, KILN_ERR_SHAPE, "X and Y do not broadcast to the output");
    int32_t rank = o->rank;
    int64_t sx[KILN_MAX_RANK], sy[KILN_MAX_RANK], idx[KILN_MAX_RANK] = {0}, ox = 0, oy = 0;
    ir_broadcast_strides(&in[0].shape, o, sx);
    ir_broadcast_strides(&in[1].shape, o, sy);
    int64_t cnt = ir_tensor_count(&out[0]);
    switch (in[0].dtype) {
    case KILN_DTYPE_U8: SHIFT_LOOP(uint8_t, uint64_t, uint8_t, 8); break;
    case KILN_DTYPE_I8: SHIFT_LOOP(int8_t, int64_t, uint8_t, 8); break;
    case KILN_DTYPE_I32: SHIFT_LOOP(int32_t, int64_t, uint32_t, 32); break;
    case KILN_DTYPE_I64: SHIFT_LOOP(int64_t, int64_t, uint64_t, 64); break;
    default:
        return ir_node_error(n, KILN_ERR_INTERNAL, "no kernel for dtype %s",
                             kiln_dtype_name(in[0].dtype));
    }
    return KILN_OK;
}
