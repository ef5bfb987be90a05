/* elementwise_scalar.h - the f32 formula of each elementwise op, one inline function per
 * op, shared by the standalone kernels (elementwise*.c, Celu in extra_math.c) and the
 * fused layers (fused_act.c, fused_chain.c) so that a fused layer gives the same bits. */
#ifndef KILN_ELEMENTWISE_SCALAR_H
#define KILN_ELEMENTWISE_SCALAR_H

#include <math.h>

/* kiln builds as ISO C (no GNU extensions), where compilers keep -ffp-contract=off: no
 * expression below is contracted into an FMA in one caller and not in another. */

#define EW_SQRT1_2        0.70710678118654752440f
#define EW_SQRT_2_OVER_PI 0.79788456080286535588f

/* ---- binary: a is input 0, b input 1 ---- */

static inline float ew_add(float a, float b) { return a + b; }
static inline float ew_sub(float a, float b) { return a - b; }
static inline float ew_mul(float a, float b) { return a * b; }
static inline float ew_div(float a, float b) { return a / b; }
static inline float ew_pow(float a, float b) { return powf(a, b); }
/* NaN-propagating max and min, as numpy's maximum and minimum. */
static inline float ew_max(float a, float b) { return (a > b || isnan(a)) ? a : b; }
static inline float ew_min(float a, float b) { return (a < b || isnan(a)) ? a : b; }
/* PRelu: b is the slope. */
static inline float ew_prelu(float a, float b) { return a < 0.0f ? a * b : a; }

/* ---- unary ---- */

/* Written so that large |x| neither overflows nor cancels. */
static inline float ew_sigmoid(float x)
{
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float ew_softplus(float x)
{
    return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

/* Clamps to [0, 1] keeping NaN (fmaxf/fminf would drop it). */
static inline float ew_clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

/* NaN passes through Relu, as numpy's maximum(x, 0). */
static inline float ew_relu(float x) { return x < 0.0f ? 0.0f : x; }
static inline float ew_leaky_relu(float x, float alpha) { return x < 0.0f ? alpha * x : x; }
static inline float ew_tanh(float x) { return tanhf(x); }
static inline float ew_hard_sigmoid(float x, float alpha, float beta)
{
    return ew_clamp01((alpha * x) + beta);
}
static inline float ew_hard_swish(float x) { return x * ew_clamp01((x / 6.0f) + 0.5f); }
/* Gelu as 0.5 x erfc(-x / sqrt 2) and x sigmoid(2 u), equal to the textbook
 * 0.5 x (1 + erf(..)) and 0.5 x (1 + tanh(u)) but without the cancellation of 1 + erf
 * and 1 + tanh for negative x. */
static inline float ew_gelu_erf(float x) { return 0.5f * x * erfcf(-x * EW_SQRT1_2); }
static inline float ew_gelu_tanh(float x)
{
    return x * ew_sigmoid(2.0f * EW_SQRT_2_OVER_PI * (x + 0.044715f * x * x * x));
}
static inline float ew_silu(float x) { return x * ew_sigmoid(x); }
static inline float ew_erf(float x) { return erff(x); }
static inline float ew_elu(float x, float alpha) { return x < 0.0f ? alpha * expm1f(x) : x; }
/* max(0, x) + min(0, alpha (exp(x / alpha) - 1)) is x for x >= 0 and the second term
 * otherwise, for either sign of alpha; expm1 keeps small |x| accurate. */
static inline float ew_celu(float x, float alpha)
{
    return x >= 0.0f ? x : alpha * expm1f(x / alpha);
}
static inline float ew_selu(float x, float alpha, float gamma)
{
    return x > 0.0f ? gamma * x : gamma * alpha * expm1f(x);
}
static inline float ew_softsign(float x) { return x / (1.0f + fabsf(x)); }
static inline float ew_mish(float x) { return x * tanhf(ew_softplus(x)); }
static inline float ew_thresholded_relu(float x, float alpha) { return x > alpha ? x : 0.0f; }
/* As Clip: min first, then max (a min above max gives max everywhere). */
static inline float ew_clip(float x, float lo, float hi)
{
    float v = x < lo ? lo : x;
    return v > hi ? hi : v;
}
static inline float ew_sqrt(float x) { return sqrtf(x); }
static inline float ew_exp(float x) { return expf(x); }
static inline float ew_log(float x) { return logf(x); }
static inline float ew_reciprocal(float x) { return 1.0f / x; }
static inline float ew_neg(float x) { return -x; }
static inline float ew_abs(float x) { return fabsf(x); }
static inline float ew_sign(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x); }
static inline float ew_floor(float x) { return floorf(x); }
static inline float ew_ceil(float x) { return ceilf(x); }
static inline float ew_round(float x) { return nearbyintf(x); } /* half to even */
static inline float ew_sin(float x) { return sinf(x); }
static inline float ew_cos(float x) { return cosf(x); }

#endif /* KILN_ELEMENTWISE_SCALAR_H */
