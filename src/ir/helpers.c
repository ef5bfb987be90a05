/* helpers.c - small functions the op files share: broadcasting, axes, reading integer
 * tensors, element access by dtype. */
#include <math.h>
#include <string.h>

#include "ir/ir.h"

bool ir_broadcast(const kiln_dims *a, const kiln_dims *b, kiln_dims *out)
{
    int32_t r = a->rank > b->rank ? a->rank : b->rank;
    kiln_dims o;
    memset(&o, 0, sizeof o);
    o.rank = r;
    for (int32_t i = 0; i < r; i++) {
        int32_t ia = i - (r - a->rank), ib = i - (r - b->rank);
        int64_t da = ia >= 0 ? a->d[ia] : 1, db = ib >= 0 ? b->d[ib] : 1;
        if (da == db || db == 1 || db == -1)
            o.d[i] = da;
        else if (da == 1 || da == -1)
            o.d[i] = db;
        else
            return false;
    }
    *out = o;
    return true;
}

void ir_broadcast_strides(const kiln_dims *in, const kiln_dims *out, int64_t *strides)
{
    int64_t s = 1;
    for (int32_t i = out->rank - 1; i >= 0; i--) {
        int32_t j = i - (out->rank - in->rank);
        if (j < 0) {
            strides[i] = 0;
            continue;
        }
        strides[i] = in->d[j] == 1 ? 0 : s;
        s *= in->d[j];
    }
}

bool ir_axis(int64_t axis, int32_t rank, int32_t *out)
{
    if (axis < -(int64_t)rank || axis >= rank) return false;
    *out = (int32_t)(axis < 0 ? axis + rank : axis);
    return true;
}

bool ir_tensor_ints(const ir_tensor *t, int64_t *out, int64_t max, int64_t *count)
{
    int64_t n = ir_tensor_count(t);
    if (n > max || !t->data) return false;
    if (t->dtype == KILN_DTYPE_I64)
        memcpy(out, t->data, sizeof(int64_t) * (size_t)n);
    else if (t->dtype == KILN_DTYPE_I32)
        for (int64_t i = 0; i < n; i++) out[i] = ((const int32_t *)t->data)[i];
    else
        return false;
    *count = n;
    return true;
}

double ir_tensor_get(const ir_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case KILN_DTYPE_F32: return ((const float *)t->data)[i];
    case KILN_DTYPE_I64: return (double)((const int64_t *)t->data)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)t->data)[i];
    case KILN_DTYPE_BOOL:
    case KILN_DTYPE_U8: return ((const uint8_t *)t->data)[i];
    case KILN_DTYPE_I8: return ((const int8_t *)t->data)[i];
    case KILN_DTYPE_F16: return kiln_f16_to_f32(((const uint16_t *)t->data)[i]);
    case KILN_DTYPE_BF16: return kiln_bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return 0.0;
    }
}

/* Float to integer the way C casts do, but defined for out-of-range values. */
static int64_t to_i64(double v)
{
    if (isnan(v)) return 0;
    if (v >= 9.2233720368547758e18) return INT64_MAX;
    if (v <= -9.2233720368547758e18) return INT64_MIN;
    return (int64_t)v;
}

void ir_tensor_set(ir_tensor *t, int64_t i, double v)
{
    switch (t->dtype) {
    case KILN_DTYPE_F32: ((float *)t->data)[i] = (float)v; break;
    case KILN_DTYPE_I64: ((int64_t *)t->data)[i] = to_i64(v); break;
    case KILN_DTYPE_I32: ((int32_t *)t->data)[i] = (int32_t)to_i64(v); break;
    case KILN_DTYPE_BOOL: ((uint8_t *)t->data)[i] = v != 0.0; break;
    case KILN_DTYPE_U8: ((uint8_t *)t->data)[i] = (uint8_t)to_i64(v); break;
    case KILN_DTYPE_I8: ((int8_t *)t->data)[i] = (int8_t)to_i64(v); break;
    case KILN_DTYPE_F16: ((uint16_t *)t->data)[i] = kiln_f32_to_f16((float)v); break;
    case KILN_DTYPE_BF16: ((uint16_t *)t->data)[i] = kiln_f32_to_bf16((float)v); break;
    default: break;
    }
}

kiln_status ir_infer_same_as_input(ir_infer *c)
{
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = c->in[0].shape;
    return KILN_OK;
}

float ir_dot_f32(const float *restrict x, const float *restrict y, int64_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        for (int l = 0; l < 8; l++) acc[l] += x[k + l] * y[k + l];
    float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; k < n; k++) s += x[k] * y[k];
    return s;
}
