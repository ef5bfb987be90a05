/* elementwise_cast.c - Cast between kiln's dtypes. Floats go through double and
 * integers through int64, so every value of every source dtype arrives exactly. */
#include <math.h>
#include <string.h>

#include "ir/ops/elementwise_impl.h"

/* ONNX TensorProto.DataType names, for messages about dtypes kiln lacks. */
static const char *onnx_dtype_name(int64_t t)
{
    static const char *names[] = {
        "UNDEFINED",      "FLOAT",    "UINT8",        "INT8",           "UINT16",
        "INT16",          "INT32",    "INT64",        "STRING",         "BOOL",
        "FLOAT16",        "DOUBLE",   "UINT32",       "UINT64",         "COMPLEX64",
        "COMPLEX128",     "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ", "UINT4",    "INT4",         "FLOAT4E2M1",     "FLOAT8E8M0",
        "UINT2",          "INT2"};
    if (t < 0 || t >= (int64_t)(sizeof names / sizeof *names)) return NULL;
    return names[t];
}

static bool is_kiln_dtype(int64_t t)
{
    switch (t) {
    case KILN_DTYPE_F32:
    case KILN_DTYPE_U8:
    case KILN_DTYPE_I8:
    case KILN_DTYPE_I32:
    case KILN_DTYPE_I64:
    case KILN_DTYPE_BOOL:
    case KILN_DTYPE_F16:
    case KILN_DTYPE_BF16: return true;
    default: return false;
    }
}

static bool is_float_dtype(kiln_dtype t)
{
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16;
}

kiln_status ir_ew_infer_cast(ir_infer *c)
{
    int64_t to = ir_attr_int(c->node, "to"), sat = ir_attr_int(c->node, "saturate");
    if (sat != 0 && sat != 1)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "saturate must be 0 or 1, got %lld",
                             (long long)sat);
    if (!is_kiln_dtype(to)) {
        const char *name = to > 0 ? onnx_dtype_name(to) : NULL;
        if (name)
            return ir_node_error(c->node, KILN_ERR_UNSUPPORTED,
                                 "cast to %s (to=%lld) is not supported; expected one of f32, "
                                 "f16, bf16, i64, i32, i8, u8, bool",
                                 name, (long long)to);
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "to=%lld is not an ONNX dtype number",
                             (long long)to);
    }
    if (!is_kiln_dtype(c->in[0].dtype))
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "input has unknown dtype %d",
                             (int)c->in[0].dtype);
    c->out[0].dtype = (kiln_dtype)to;
    c->out[0].shape = c->in[0].shape;
    return KILN_OK;
}

/* CastLike: Cast to the dtype of the second input (whose values are not read). */
kiln_status ir_ew_infer_castlike(ir_infer *c)
{
    int64_t sat = ir_attr_int(c->node, "saturate");
    if (sat != 0 && sat != 1)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "saturate must be 0 or 1, got %lld",
                             (long long)sat);
    if (!is_kiln_dtype(c->in[0].dtype) || !is_kiln_dtype(c->in[1].dtype))
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "inputs have dtypes %s and %s",
                             kiln_dtype_name(c->in[0].dtype), kiln_dtype_name(c->in[1].dtype));
    c->out[0].dtype = c->in[1].dtype;
    c->out[0].shape = c->in[0].shape;
    return KILN_OK;
}

enum { CAST_BLOCK = 256 };

static void load_float(const ir_tensor *t, int64_t i0, int64_t n, double *v)
{
    if (t->dtype == KILN_DTYPE_F32) {
        const float *p = (const float *)t->data + i0;
        for (int64_t i = 0; i < n; i++) v[i] = p[i];
    } else {
        const uint16_t *p = (const uint16_t *)t->data + i0;
        if (t->dtype == KILN_DTYPE_F16)
            for (int64_t i = 0; i < n; i++) v[i] = kiln_f16_to_f32(p[i]);
        else
            for (int64_t i = 0; i < n; i++) v[i] = kiln_bf16_to_f32(p[i]);
    }
}

static void load_int(const ir_tensor *t, int64_t i0, int64_t n, int64_t *v)
{
    switch (t->dtype) {
    case KILN_DTYPE_I64: memcpy(v, (const int64_t *)t->data + i0, (size_t)n * sizeof *v); break;
    case KILN_DTYPE_I32:
        for (int64_t i = 0; i < n; i++) v[i] = ((const int32_t *)t->data)[i0 + i];
        break;
    case KILN_DTYPE_I8:
        for (int64_t i = 0; i < n; i++) v[i] = ((const int8_t *)t->data)[i0 + i];
        break;
    case KILN_DTYPE_U8:
        for (int64_t i = 0; i < n; i++) v[i] = ((const uint8_t *)t->data)[i0 + i];
        break;
    default: /* bool: any nonzero byte is true */
        for (int64_t i = 0; i < n; i++) v[i] = ((const uint8_t *)t->data)[i0 + i] != 0;
        break;
    }
}

/* Float to integer: truncation toward zero, saturating at the target's range, NaN to
 * 0. ONNX leaves out-of-range values undefined; saturation is the choice that never
 * invokes C's undefined conversion. */
static int64_t float_to_int(double v, int64_t lo, int64_t hi)
{
    if (isnan(v)) return 0;
    if (v <= (double)lo) return lo;
    if (v >= (double)hi) return hi; /* (double)INT64_MAX rounds up to 2^63: still safe */
    return (int64_t)v;
}

static void store_float(ir_tensor *t, int64_t i0, int64_t n, const double *v)
{
    switch (t->dtype) {
    case KILN_DTYPE_F32:
        for (int64_t i = 0; i < n; i++) ((float *)t->data)[i0 + i] = (float)v[i];
        break;
    case KILN_DTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)t->data)[i0 + i] = kiln_f32_to_f16((float)v[i]);
        break;
    case KILN_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)t->data)[i0 + i] = kiln_f32_to_bf16((float)v[i]);
        break;
    case KILN_DTYPE_BOOL:
        for (int64_t i = 0; i < n; i++) ((uint8_t *)t->data)[i0 + i] = v[i] != 0.0;
        break;
    case KILN_DTYPE_U8:
        for (int64_t i = 0; i < n; i++)
            ((uint8_t *)t->data)[i0 + i] = (uint8_t)float_to_int(v[i], 0, UINT8_MAX);
        break;
    case KILN_DTYPE_I8:
        for (int64_t i = 0; i < n; i++)
            ((int8_t *)t->data)[i0 + i] = (int8_t)float_to_int(v[i], INT8_MIN, INT8_MAX);
        break;
    case KILN_DTYPE_I32:
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)t->data)[i0 + i] = (int32_t)float_to_int(v[i], INT32_MIN, INT32_MAX);
        break;
    case KILN_DTYPE_I64:
        for (int64_t i = 0; i < n; i++)
            ((int64_t *)t->data)[i0 + i] = float_to_int(v[i], INT64_MIN, INT64_MAX);
        break;
    default: break;
    }
}

/* Integer to integer wraps (keeps the low bits), as numpy's astype and C++'s
 * static_cast do. */
static void store_int(ir_tensor *t, int64_t i0, int64_t n, const int64_t *v)
{
    switch (t->dtype) {
    case KILN_DTYPE_F32:
        for (int64_t i = 0; i < n; i++) ((float *)t->data)[i0 + i] = (float)v[i];
        break;
    case KILN_DTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)t->data)[i0 + i] = kiln_f32_to_f16((float)v[i]);
        break;
    case KILN_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)t->data)[i0 + i] = kiln_f32_to_bf16((float)v[i]);
        break;
    case KILN_DTYPE_BOOL:
        for (int64_t i = 0; i < n; i++) ((uint8_t *)t->data)[i0 + i] = v[i] != 0;
        break;
    case KILN_DTYPE_U8:
        for (int64_t i = 0; i < n; i++) ((uint8_t *)t->data)[i0 + i] = (uint8_t)v[i];
        break;
    case KILN_DTYPE_I8:
        for (int64_t i = 0; i < n; i++) ((int8_t *)t->data)[i0 + i] = (int8_t)(uint8_t)v[i];
        break;
    case KILN_DTYPE_I32:
        for (int64_t i = 0; i < n; i++) ((int32_t *)t->data)[i0 + i] = (int32_t)(uint32_t)v[i];
        break;
    case KILN_DTYPE_I64: memcpy((int64_t *)t->data + i0, v, (size_t)n * sizeof *v); break;
    default: break;
    }
}

kiln_status ir_ew_eval_cast(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    int64_t cnt = ir_tensor_count(&in[0]);
    if (in[0].dtype == out[0].dtype) {
        size_t bytes = (size_t)cnt * kiln_dtype_size(in[0].dtype);
        if (bytes && out[0].data != in[0].data) memmove(out[0].data, in[0].data, bytes);
        return KILN_OK;
    }
    bool from_float = is_float_dtype(in[0].dtype);
    double fv[CAST_BLOCK];
    int64_t iv[CAST_BLOCK];
    for (int64_t i0 = 0; i0 < cnt; i0 += CAST_BLOCK) {
        int64_t m = cnt - i0 < CAST_BLOCK ? cnt - i0 : CAST_BLOCK;
        if (from_float) {
            load_float(&in[0], i0, m, fv);
            store_float(&out[0], i0, m, fv);
        } else {
            load_int(&in[0], i0, m, iv);
            store_int(&out[0], i0, m, iv);
        }
    }
    return KILN_OK;
}
