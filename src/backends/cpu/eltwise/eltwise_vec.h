/* eltwise_vec.h - the eltwise engine's vector paths, written once over macros that the
 * including ISA file defines (eltwise_avx2.c, eltwise_avx512.c):
 *   W (lanes), VF (float vector), VI (int32 vector), VM (comparison result),
 *   VF_SET1 VF_ADD VF_SUB VF_MUL VF_DIV VF_FMA(a,b,c = a*b+c) VF_ABS VF_NEG (sign flip)
 *   VF_SQRT VF_ROUND (to nearest even) VF_FLOOR VF_CEIL,
 *   VF_MAX(a,b) / VF_MIN(a,b) with x86 semantics (a > b ? a : b, so b comes back when either
 *     is NaN), VF_LT VF_GE VF_GT VF_EQ (ordered) and VF_ISNAN -> VM, VM_OR, VF_SEL(m, t, f),
 *   VM_ANY_BUT(m, n) (whether a lane is set in m and not in n),
 *   VF_LOADU / VF_STOREU, VF_LOAD_TAIL(p, n) (n < W lanes, zeros above), VF_STORE_TAIL(p, v, n),
 *   VF_TO_VI (rounding) VF_AS_VI VI_AS_VF (bit casts) VI_TO_VF, VI_SET1 VI_ADD VI_SUB VI_AND
 *   VI_OR VI_SRAI VI_SRLI VI_SLLI;
 *   VD (double vector of W/2 lanes), VD_ZERO VD_SET1 VD_ADD VD_SUB VD_MUL, VD_LO(v) and
 *   VD_HI(v) (the low and high halves of a float vector, widened), VD_HSUM (to a double).
 * Include it once per ISA file; it defines the ew_isa functions as static ones, and the
 * file exports them in its ew_isa table.
 *
 * The formulas (each within ~2-3 ulp of the libm-based reference where the result is a
 * normal float; the tests measure ~4e-7 relative at worst):
 *   exp: Cody-Waite reduction by ln 2, degree-7 Taylor polynomial of expm1 on |r| <= ln2/2,
 *     2^n applied as two factors (gemm_vact.h's); vectors with subnormal results take a
 *     second pass (ev_exp2), so that the others never make a subnormal (a microcode assist).
 *   sigmoid, tanh: gemm_vact.h's forms (1 / (1 + e^-x) or e^x / (1 + e^x) with e = exp(-|x|);
 *     Cephes tanhf's polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above) on this exp.
 *   log: Cephes logf (mantissa in [sqrt(1/2), sqrt 2), degree-8 polynomial, the exponent's
 *     ln 2 in two parts); subnormals scaled by 2^23 first.
 *   log1p(t) for t in [0, 1] (Softplus): log(u) * t / (u - 1) with u = 1 + t, which cancels
 *     the rounding of u (Goldberg's trick); t where u rounds to 1.
 *   expm1 (Elu, Celu, Selu): the same reduction, 2^n p + (2^n - 1) as one FMA.
 *   Pow by a scalar 2: x * x (correctly rounded; powf is within an ulp of it); other Pow,
 *     Sin and Cos: libm lane by lane.
 *   erfc (Erf above |x| = 1, Gelu): Numerical Recipes' erfcc (relative error < 1.2e-7), its
 *     exponent -z^2 + P(t) summed inside the exp's reduction so that large z keep it; erf
 *     below |x| = 1: Cephes erff's x P(x^2). */
#ifndef KILN_ELTWISE_VEC_H
#define KILN_ELTWISE_VEC_H

#include <math.h>
#include <string.h>

#include "backends/cpu/eltwise/eltwise.h"
#include "ir/ops/fused_chain.h"

#define EV_ZERO VF_SET1(0.0f)
#define EV_ONE  VF_SET1(1.0f)

/* ---- vector math ---- */

/* exp(a + b) for a the bulk (possibly large) and b small (|b| <= ~2): they join after the
 * reduction so that rounding a + b costs no accuracy when a is large. `lo` is where the
 * argument is clamped: -87 keeps every intermediate and the result normal; -104 lets 2^n go
 * down to 2^-150, for results in the subnormal range. */
static inline VF ev_exp2_at(VF a, VF b, const float lo)
{
    const VF s = VF_ADD(a, b);
    /* lanes whose result is 0 compute exp(-87) instead: no subnormal on the way */
    const VM zero = VF_LT(s, VF_SET1(-104.0f));
    const VF x = VF_SEL(zero, VF_SET1(-87.0f), VF_MIN(VF_SET1(88.8f), VF_MAX(VF_SET1(lo), s)));
    const VF n = VF_ROUND(VF_MUL(x, VF_SET1(1.44269504088896341f)));
    /* a - n ln2 exactly (n times the short high part is exact), then b joins; where the
     * clamp bit, the clamped argument instead (the result is 0 there anyway) */
    const VM under = VF_LT(s, VF_SET1(lo));
    VF r = VF_FMA(n, VF_SET1(-0.693359375f), VF_SEL(under, x, a));
    r = VF_FMA(n, VF_SET1(2.12194440e-4f), r);
    r = VF_SEL(under, r, VF_ADD(r, b));
    VF p = VF_FMA(VF_SET1(1.98412698e-4f), r, VF_SET1(1.38888889e-3f));
    p = VF_FMA(p, r, VF_SET1(8.33333333e-3f));
    p = VF_FMA(p, r, VF_SET1(4.16666667e-2f));
    p = VF_FMA(p, r, VF_SET1(1.66666667e-1f));
    p = VF_FMA(p, r, VF_SET1(0.5f));
    p = VF_FMA(VF_MUL(p, r), r, r);
    /* 2^n as 2^(n>>1) * 2^(n - (n>>1)): each half a normal exponent */
    const VI ni = VF_TO_VI(n);
    const VI n1 = VI_SRAI(ni, 1), n2 = VI_SUB(ni, n1);
    const VF s1 = VI_AS_VF(VI_SLLI(VI_ADD(n1, VI_SET1(127)), 23));
    const VF s2 = VI_AS_VF(VI_SLLI(VI_ADD(n2, VI_SET1(127)), 23));
    const VF y = VF_MUL(VF_MUL(VF_ADD(EV_ONE, p), s1), s2);
    /* below -104 the result rounds to 0 (under the clamp at -87 it is not computed here) */
    const VF y0 = VF_SEL(zero, EV_ZERO, y);
    return VF_SEL(VF_LT(VF_SET1(88.8f), s), VF_SET1(INFINITY), y0);
}

/* exp(a + b). Subnormal results (a + b in [-104, -87]) take a second pass: making them
 * costs a microcode assist per vector on x86, which the common vector (a softmax row's
 * scores, masked ones at -10000 included, which give 0) does not pay. */
static inline VF ev_exp2(VF a, VF b)
{
    const VF s = VF_ADD(a, b);
    const VM sub = VF_LT(s, VF_SET1(-87.0f)), zero = VF_LT(s, VF_SET1(-104.0f));
    if (VM_ANY_BUT(sub, zero)) return ev_exp2_at(a, b, -104.0f);
    return VF_SEL(sub, EV_ZERO, ev_exp2_at(a, b, -87.0f));
}

static inline VF ev_exp(VF x) { return ev_exp2(x, EV_ZERO); }

static inline VF ev_sigmoid(VF x)
{
    const VF e = ev_exp(VF_NEG(VF_ABS(x)));
    const VF num = VF_SEL(VF_GE(x, EV_ZERO), EV_ONE, e);
    return VF_DIV(num, VF_ADD(EV_ONE, e));
}

static inline VF ev_tanh(VF x)
{
    const VF ax = VF_ABS(x);
    /* small: x + x z P(z), z = x^2 */
    const VF z = VF_MUL(x, x);
    VF p = VF_FMA(VF_SET1(-5.70498872745e-3f), z, VF_SET1(2.06390887954e-2f));
    p = VF_FMA(p, z, VF_SET1(-5.37397155531e-2f));
    p = VF_FMA(p, z, VF_SET1(1.33314422036e-1f));
    p = VF_FMA(p, z, VF_SET1(-3.33332819422e-1f));
    const VF small = VF_FMA(VF_MUL(p, z), x, x);
    /* large: 1 - 2 / (exp(2|x|) + 1), with x's sign */
    const VF e = ev_exp(VF_ADD(ax, ax));
    const VF big = VF_SUB(EV_ONE, VF_DIV(VF_SET1(2.0f), VF_ADD(e, EV_ONE)));
    const VF sbig = VF_SEL(VF_LT(x, EV_ZERO), VF_NEG(big), big);
    /* NaN fails the compare and takes `small`, which is NaN */
    return VF_SEL(VF_GE(ax, VF_SET1(0.625f)), sbig, small);
}

static inline VF ev_log(VF x)
{
    const VM sub = VF_LT(x, VF_SET1(1.17549435e-38f));
    const VF xs = VF_SEL(sub, VF_MUL(x, VF_SET1(8388608.0f)), x);
    const VI bits = VF_AS_VI(xs);
    VF e = VI_TO_VF(VI_SUB(VI_SRLI(bits, 23), VI_SET1(126)));
    e = VF_SUB(e, VF_SEL(sub, VF_SET1(23.0f), EV_ZERO));
    /* m in [0.5, 1); below sqrt(1/2) it doubles, so t = m - 1 lies in [-0.29, 0.41] */
    const VF m = VI_AS_VF(VI_OR(VI_AND(bits, VI_SET1(0x007FFFFF)), VI_SET1(0x3F000000)));
    const VM low = VF_LT(m, VF_SET1(0.707106781186547524f));
    e = VF_SUB(e, VF_SEL(low, EV_ONE, EV_ZERO));
    const VF t = VF_SUB(VF_ADD(m, VF_SEL(low, m, EV_ZERO)), EV_ONE);
    const VF z = VF_MUL(t, t);
    VF p = VF_FMA(VF_SET1(7.0376836292e-2f), t, VF_SET1(-1.1514610310e-1f));
    p = VF_FMA(p, t, VF_SET1(1.1676998740e-1f));
    p = VF_FMA(p, t, VF_SET1(-1.2420140846e-1f));
    p = VF_FMA(p, t, VF_SET1(1.4249322787e-1f));
    p = VF_FMA(p, t, VF_SET1(-1.6668057665e-1f));
    p = VF_FMA(p, t, VF_SET1(2.0000714765e-1f));
    p = VF_FMA(p, t, VF_SET1(-2.4999993993e-1f));
    p = VF_FMA(p, t, VF_SET1(3.3333331174e-1f));
    VF y = VF_MUL(VF_MUL(p, t), z);
    y = VF_FMA(e, VF_SET1(-2.12194440e-4f), y);
    y = VF_FMA(z, VF_SET1(-0.5f), y);
    VF r = VF_FMA(e, VF_SET1(0.693359375f), VF_ADD(t, y));
    /* log(+inf) = inf, log(x < 0) = NaN, log(+-0) = -inf, NaN stays */
    r = VF_SEL(VF_EQ(x, VF_SET1(INFINITY)), x, r);
    r = VF_SEL(VF_LT(x, EV_ZERO), VF_SET1(NAN), r);
    r = VF_SEL(VF_EQ(x, EV_ZERO), VF_SET1(-INFINITY), r);
    return VF_SEL(VF_ISNAN(x), x, r);
}

/* log1p(t) for t in [0, 1] (and NaN). */
static inline VF ev_log1p01(VF t)
{
    const VF u = VF_ADD(EV_ONE, t);
    const VF d = VF_SUB(u, EV_ONE);
    const VF l = VF_MUL(ev_log(u), VF_DIV(t, d));
    return VF_SEL(VF_EQ(d, EV_ZERO), t, l);
}

static inline VF ev_expm1(VF x)
{
    /* below -30 expm1 is -1 in float; the clamp keeps 2^n normal */
    const VF xc = VF_MIN(VF_SET1(88.8f), VF_MAX(VF_SET1(-30.0f), x));
    const VF n = VF_ROUND(VF_MUL(xc, VF_SET1(1.44269504088896341f)));
    VF r = VF_FMA(n, VF_SET1(-0.693359375f), xc);
    r = VF_FMA(n, VF_SET1(2.12194440e-4f), r);
    VF p = VF_FMA(VF_SET1(1.98412698e-4f), r, VF_SET1(1.38888889e-3f));
    p = VF_FMA(p, r, VF_SET1(8.33333333e-3f));
    p = VF_FMA(p, r, VF_SET1(4.16666667e-2f));
    p = VF_FMA(p, r, VF_SET1(1.66666667e-1f));
    p = VF_FMA(p, r, VF_SET1(0.5f));
    p = VF_FMA(VF_MUL(p, r), r, r);
    const VI ni = VF_TO_VI(n);
    const VI n1 = VI_SRAI(ni, 1), n2 = VI_SUB(ni, n1);
    const VF s1 = VI_AS_VF(VI_SLLI(VI_ADD(n1, VI_SET1(127)), 23));
    const VF s2 = VI_AS_VF(VI_SLLI(VI_ADD(n2, VI_SET1(127)), 23));
    /* 2^n p + (2^n - 1) is exact at n = 0 and cancels nothing below; near the overflow 2^n
     * itself is inf, so there (1 + p) 2^n1 2^n2 - 1, as vact_exp2 scales */
    const VF s = VF_MUL(s1, s2);
    const VF y = VF_FMA(s, p, VF_SUB(s, EV_ONE));
    const VF big = VF_SUB(VF_MUL(VF_MUL(VF_ADD(EV_ONE, p), s1), s2), EV_ONE);
    return VF_SEL(VF_ISNAN(x), x, VF_SEL(VF_GT(n, VF_SET1(64.0f)), big, y));
}

/* erfc(z) for z >= 0 (or NaN): t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), as gemm_vact.h's
 * Gelu; z clamped at 10.5, past which the result rounds to 0 (and the infinities give 0,
 * not NaN). */
static inline VF ev_erfc_pos(VF z)
{
    const VF az = VF_MIN(VF_SET1(10.5f), z);
    const VF t = VF_DIV(EV_ONE, VF_FMA(VF_SET1(0.5f), az, EV_ONE));
    VF q = VF_FMA(VF_SET1(0.17087277f), t, VF_SET1(-0.82215223f));
    q = VF_FMA(q, t, VF_SET1(1.48851587f));
    q = VF_FMA(q, t, VF_SET1(-1.13520398f));
    q = VF_FMA(q, t, VF_SET1(0.27886807f));
    q = VF_FMA(q, t, VF_SET1(-0.18628806f));
    q = VF_FMA(q, t, VF_SET1(0.09678418f));
    q = VF_FMA(q, t, VF_SET1(0.37409196f));
    q = VF_FMA(q, t, VF_SET1(1.00002368f));
    q = VF_FMA(q, t, VF_SET1(-1.26551223f));
    /* -z^2 = -hi - lo exactly; -hi goes into the reduction whole, -lo with P */
    const VF hi = VF_MUL(az, az);
    const VF lo = VF_FMA(az, az, VF_SUB(EV_ZERO, hi));
    return VF_MUL(t, ev_exp2(VF_SUB(EV_ZERO, hi), VF_SUB(q, lo)));
}

static inline VF ev_erf(VF x)
{
    const VF ax = VF_ABS(x);
    const VF z = VF_MUL(x, x);
    VF p = VF_FMA(VF_SET1(7.853861353153693e-5f), z, VF_SET1(-8.010193625184903e-4f));
    p = VF_FMA(p, z, VF_SET1(5.188327685732524e-3f));
    p = VF_FMA(p, z, VF_SET1(-2.685381193529856e-2f));
    p = VF_FMA(p, z, VF_SET1(1.128358514861418e-1f));
    p = VF_FMA(p, z, VF_SET1(-3.761262582423300e-1f));
    p = VF_FMA(p, z, VF_SET1(1.128379165726710f));
    const VF small = VF_MUL(x, p);
    const VF big = VF_SUB(EV_ONE, ev_erfc_pos(ax));
    const VF sbig = VF_SEL(VF_LT(x, EV_ZERO), VF_NEG(big), big);
    /* NaN fails the compare and takes `sbig`, which is NaN */
    return VF_SEL(VF_LT(ax, EV_ONE), small, sbig);
}

/* 0.5 x erfc(-x / sqrt 2), erfc of a negative argument as 2 - erfc(|.|). */
static inline VF ev_gelu(VF x)
{
    const VF z = VF_MUL(x, VF_SET1(-0.70710678118654752440f));
    const VF e = ev_erfc_pos(VF_ABS(z));
    const VF erfc = VF_SEL(VF_GE(z, EV_ZERO), e, VF_SUB(VF_SET1(2.0f), e));
    return VF_MUL(VF_MUL(VF_SET1(0.5f), x), erfc);
}

/* x > 0 ? x + log1p(e^-x) : log1p(e^x), both as log1p(e^-|x|) */
static inline VF ev_softplus(VF x)
{
    const VF l = ev_log1p01(ev_exp(VF_NEG(VF_ABS(x))));
    return VF_SEL(VF_GT(x, EV_ZERO), VF_ADD(x, l), l);
}

static inline VF ev_clamp01(VF v) { return VF_MIN(EV_ONE, VF_MAX(EV_ZERO, v)); }

static inline VF ev_clip(VF x, VF lo, VF hi)
{
    const VF v = VF_SEL(VF_LT(x, lo), lo, x);
    return VF_SEL(VF_GT(v, hi), hi, v);
}

/* x * sigmoid(2.0f * K * (x + 0.044715f * x * x * x)), the scalar order */
static inline VF ev_gelu_tanh(VF x)
{
    const VF x3 = VF_MUL(VF_MUL(VF_MUL(VF_SET1(0.044715f), x), x), x);
    return VF_MUL(x, ev_sigmoid(VF_MUL(VF_SET1(2.0f * 0.79788456080286535588f), VF_ADD(x, x3))));
}

/* ---- the steps ---- */

/* Binary formulas on (l, r), elementwise_scalar.h's with the same operations. */
#define EV_ADD(l, r)   VF_ADD(l, r)
#define EV_SUB(l, r)   VF_SUB(l, r)
#define EV_MUL(l, r)   VF_MUL(l, r)
#define EV_DIV(l, r)   VF_DIV(l, r)
#define EV_MAX(l, r)   VF_SEL(VM_OR(VF_GT(l, r), VF_ISNAN(l)), l, r)
#define EV_MIN(l, r)   VF_SEL(VM_OR(VF_LT(l, r), VF_ISNAN(l)), l, r)
#define EV_PRELU(l, r) VF_SEL(VF_LT(l, EV_ZERO), VF_MUL(l, r), l)

/* dst[i] = EXPR(x) with x = src[i], i < m: whole vectors, then a masked tail (src and dst
 * may be the layer's own memory, which ends there). LOAD_B(i, n) gives the operand, if any,
 * as `c`. */
#define EV_LOOP(LOAD_B, EXPR)                                                                      \
    for (int64_t i = 0; i < m; i += W) {                                                           \
        if (i + W <= m) {                                                                          \
            const VF x = VF_LOADU(src + i);                                                        \
            LOAD_B(i, W);                                                                          \
            VF_STOREU(dst + i, EXPR);                                                              \
        } else {                                                                                   \
            const VF x = VF_LOAD_TAIL(src + i, m - i);                                             \
            LOAD_B(i, m - i);                                                                      \
            VF_STORE_TAIL(dst + i, EXPR, m - i);                                                   \
        }                                                                                          \
    }

#define EV_NO_B(i, n)
#define EV_ROW_B(i, n) const VF c = (n) == W ? VF_LOADU(b + (i)) : VF_LOAD_TAIL(b + (i), n)

/* dst = F(src, operand) or F(operand, src); the operand is one value (bs 0) or a row. */
#define EV_BINARY(F)                                                                               \
    if (bs == 0) {                                                                                 \
        const VF c = VF_SET1(b[0]);                                                                \
        if (right) {                                                                               \
            EV_LOOP(EV_NO_B, F(c, x))                                                              \
        } else {                                                                                   \
            EV_LOOP(EV_NO_B, F(x, c))                                                              \
        }                                                                                          \
    } else if (right) {                                                                            \
        EV_LOOP(EV_ROW_B, F(c, x))                                                                 \
    } else {                                                                                       \
        EV_LOOP(EV_ROW_B, F(x, c))                                                                 \
    }                                                                                              \
    break

#define EV_UNARY(EXPR)                                                                             \
    EV_LOOP(EV_NO_B, EXPR)                                                                         \
    break

/* Step s of p from src to dst (m elements, both contiguous; they may be the same). */
static void ev_step(const ew_prog *p, int32_t s, const float *src, float *dst, int64_t m,
                    const float *const *o, const int64_t *os)
{
    const int64_t code = p->ops[s];
    const int64_t k = p->operand[s] < 0 ? 0 : p->operand[s];
    const float *b = o[k];
    const int64_t bs = os[k];
    const bool right = p->side[s] != 0;
    if (code == FUSED_EW_POW && bs == 0 && !right && b[0] == 2.0f) {
        /* v^2 (YOLO's (2 sigmoid)^2, RMSNorm's square): x * x, correctly rounded, where
         * glibc's powf is off by an ulp now and then (1.5e6 of the 4.3e9 floats) */
        EV_LOOP(EV_NO_B, VF_MUL(x, x))
        return;
    }
    if (ew_step_is_scalar(code)) {
        ew_step_scalar(p, s, src, dst, m, o, os);
        return;
    }
    const float af = p->alpha[s], bf = p->beta[s];
    const VF a = VF_SET1(af), be = VF_SET1(bf);
    switch ((fused_ew_op)code) {
    case FUSED_EW_ADD: EV_BINARY(EV_ADD);
    case FUSED_EW_SUB: EV_BINARY(EV_SUB);
    case FUSED_EW_MUL: EV_BINARY(EV_MUL);
    case FUSED_EW_DIV: EV_BINARY(EV_DIV);
    case FUSED_EW_MAX: EV_BINARY(EV_MAX);
    case FUSED_EW_MIN: EV_BINARY(EV_MIN);
    case FUSED_EW_PRELU: EV_BINARY(EV_PRELU);
    case FUSED_EW_RELU: EV_UNARY(VF_SEL(VF_LT(x, EV_ZERO), EV_ZERO, x));
    case FUSED_EW_LEAKY_RELU: EV_UNARY(VF_SEL(VF_LT(x, EV_ZERO), VF_MUL(a, x), x));
    case FUSED_EW_SIGMOID: EV_UNARY(ev_sigmoid(x));
    case FUSED_EW_TANH: EV_UNARY(ev_tanh(x));
    case FUSED_EW_EXP: EV_UNARY(ev_exp(x));
    case FUSED_EW_LOG: EV_UNARY(ev_log(x));
    case FUSED_EW_SQRT: EV_UNARY(VF_SQRT(x));
    case FUSED_EW_NEG: EV_UNARY(VF_NEG(x));
    case FUSED_EW_ABS: EV_UNARY(VF_ABS(x));
    case FUSED_EW_RECIPROCAL: EV_UNARY(VF_DIV(EV_ONE, x));
    case FUSED_EW_ERF: EV_UNARY(ev_erf(x));
    /* min first, then max: v = x < lo ? lo : x; v > hi ? hi : v */
    case FUSED_EW_CLIP: EV_UNARY(ev_clip(x, a, be));
    case FUSED_EW_HARD_SIGMOID: EV_UNARY(ev_clamp01(VF_ADD(VF_MUL(a, x), be)));
    case FUSED_EW_HARD_SWISH:
        EV_UNARY(VF_MUL(x, ev_clamp01(VF_ADD(VF_DIV(x, VF_SET1(6.0f)), VF_SET1(0.5f)))));
    case FUSED_EW_ELU: EV_UNARY(VF_SEL(VF_LT(x, EV_ZERO), VF_MUL(a, ev_expm1(x)), x));
    case FUSED_EW_CELU: EV_UNARY(VF_SEL(VF_GE(x, EV_ZERO), x, VF_MUL(a, ev_expm1(VF_DIV(x, a)))));
    case FUSED_EW_SELU: {
        /* gamma * x, or gamma * alpha * expm1(x) = (gamma * alpha) * expm1(x) */
        const VF ga = VF_SET1(bf * af);
        EV_UNARY(VF_SEL(VF_GT(x, EV_ZERO), VF_MUL(be, x), VF_MUL(ga, ev_expm1(x))));
    }
    case FUSED_EW_SOFTPLUS: EV_UNARY(ev_softplus(x));
    case FUSED_EW_SOFTSIGN: EV_UNARY(VF_DIV(x, VF_ADD(EV_ONE, VF_ABS(x))));
    case FUSED_EW_MISH: EV_UNARY(VF_MUL(x, ev_tanh(ev_softplus(x))));
    case FUSED_EW_THRESHOLDED_RELU: EV_UNARY(VF_SEL(VF_GT(x, a), x, EV_ZERO));
    case FUSED_EW_FLOOR: EV_UNARY(VF_FLOOR(x));
    case FUSED_EW_CEIL: EV_UNARY(VF_CEIL(x));
    case FUSED_EW_ROUND: EV_UNARY(VF_ROUND(x));
    case FUSED_EW_SIGN:
        EV_UNARY(VF_SEL(VF_GT(x, EV_ZERO), EV_ONE, VF_SEL(VF_LT(x, EV_ZERO), VF_SET1(-1.0f), x)));
    case FUSED_EW_GELU: EV_UNARY(ev_gelu(x));
    case FUSED_EW_GELU_TANH: EV_UNARY(ev_gelu_tanh(x));
    default: ew_step_scalar(p, s, src, dst, m, o, os); break;
    }
}

/* Blocks of EW_BLOCK: the first step reads x where it lies (or a block of its one value),
 * the last writes y, the ones between go through v. */
static void ev_chain(const ew_prog *p, float *y, int64_t m, const float *const *opd,
                     const int64_t *os)
{
    _Alignas(64) float v[EW_BLOCK];
    const float *o[EW_MAX_IN];
    int64_t nk = 1;
    for (int32_t s = 0; s < p->n; s++)
        if (p->operand[s] + 1 > nk) nk = p->operand[s] + 1;
    /* one step (a plain op's program): straight from x to y, no blocks */
    if (p->n == 1 && os[0]) {
        ev_step(p, 0, opd[0], y, m, opd, os);
        return;
    }
    for (int64_t j = 0; j < m; j += EW_BLOCK) {
        const int64_t mb = m - j < EW_BLOCK ? m - j : EW_BLOCK;
        for (int64_t k = 0; k < nk; k++) o[k] = opd[k] + j * os[k];
        const float *src = o[0];
        if (!os[0]) {
            const VF c = VF_SET1(o[0][0]);
            for (int64_t i = 0; i < mb; i += W) VF_STOREU(v + i, c);
            src = v;
        }
        if (p->n == 0) {
            memmove(y + j, src, sizeof(float) * (size_t)mb);
            continue;
        }
        for (int32_t s = 0; s < p->n; s++) {
            float *dst = s == p->n - 1 ? y + j : v;
            ev_step(p, s, src, dst, mb, o, os);
            src = v;
        }
    }
}

/* ---- softmax ---- */

/* The reference's maximum lane by lane: a larger value or a NaN replaces it, and a NaN
 * stays (nothing compares above it and NaN-for-NaN changes nothing). */
static inline VF ev_max_nan(VF mx, VF x) { return VF_SEL(VM_OR(VF_GT(x, mx), VF_ISNAN(x)), x, mx); }

static inline float ev_max_nan_f(float mx, float x) { return x > mx || isnan(x) ? x : mx; }

/* Sum of the n (< W) first lanes of a vector, in double. */
static inline double ev_sum_lanes(VF v, int64_t n)
{
    float t[W];
    VF_STOREU(t, v);
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) s += t[i];
    return s;
}

static void ev_softmax_row(bool log_mode, const float *x, float *y, int64_t n)
{
    if (n <= 0) return;
    int64_t i = 0;
    float mx = x[0];
    if (n >= W) {
        VF mv = VF_LOADU(x);
        for (i = W; i + W <= n; i += W) mv = ev_max_nan(mv, VF_LOADU(x + i));
        float t[W];
        VF_STOREU(t, mv);
        for (int j = 0; j < W; j++) mx = ev_max_nan_f(mx, t[j]);
    }
    for (; i < n; i++) mx = ev_max_nan_f(mx, x[i]);
    const VF m = VF_SET1(mx);
    VD s0 = VD_ZERO(), s1 = VD_ZERO();
    double sum = 0.0;
    for (i = 0; i + W <= n; i += W) {
        const VF e = ev_exp(VF_SUB(VF_LOADU(x + i), m));
        if (!log_mode) VF_STOREU(y + i, e);
        s0 = VD_ADD(s0, VD_LO(e));
        s1 = VD_ADD(s1, VD_HI(e));
    }
    if (i < n) {
        const VF e = ev_exp(VF_SUB(VF_LOAD_TAIL(x + i, n - i), m));
        if (!log_mode) VF_STORE_TAIL(y + i, e, n - i);
        sum = ev_sum_lanes(e, n - i);
    }
    sum += VD_HSUM(VD_ADD(s0, s1));
    if (!log_mode) {
        const VF inv = VF_SET1((float)(1.0 / sum));
        for (i = 0; i + W <= n; i += W) VF_STOREU(y + i, VF_MUL(VF_LOADU(y + i), inv));
        if (i < n) VF_STORE_TAIL(y + i, VF_MUL(VF_LOAD_TAIL(y + i, n - i), inv), n - i);
        return;
    }
    const VF lse = VF_SET1((float)log(sum));
    for (i = 0; i + W <= n; i += W) VF_STOREU(y + i, VF_SUB(VF_SUB(VF_LOADU(x + i), m), lse));
    if (i < n) VF_STORE_TAIL(y + i, VF_SUB(VF_SUB(VF_LOAD_TAIL(x + i, n - i), m), lse), n - i);
}

static void ev_softmax_rows(bool log_mode, const float *x, float *y, int64_t rows, int64_t len)
{
    for (int64_t r = 0; r < rows; r++) ev_softmax_row(log_mode, x + r * len, y + r * len, len);
}

/* Columns j0 .. j0 + w - 1 (w <= W) of the axis, one lane each. */
static void ev_softmax_lanes(bool log_mode, const float *x, float *y, int64_t n, int64_t inner,
                             int64_t w)
{
#define EV_LD(p) (w == W ? VF_LOADU(p) : VF_LOAD_TAIL(p, w))
#define EV_ST(p, v)                                                                                \
    do {                                                                                           \
        if (w == W)                                                                                \
            VF_STOREU(p, v);                                                                       \
        else                                                                                       \
            VF_STORE_TAIL(p, v, w);                                                                \
    } while (0)
    VF mx = EV_LD(x);
    for (int64_t k = 1; k < n; k++) mx = ev_max_nan(mx, EV_LD(x + k * inner));
    VD s0 = VD_ZERO(), s1 = VD_ZERO();
    for (int64_t k = 0; k < n; k++) {
        const VF e = ev_exp(VF_SUB(EV_LD(x + k * inner), mx));
        if (!log_mode) EV_ST(y + k * inner, e);
        s0 = VD_ADD(s0, VD_LO(e));
        s1 = VD_ADD(s1, VD_HI(e));
    }
    double sd[W];
    memcpy(sd, &s0, sizeof s0);
    memcpy(sd + W / 2, &s1, sizeof s1);
    float f[W];
    for (int j = 0; j < W; j++) f[j] = log_mode ? (float)log(sd[j]) : (float)(1.0 / sd[j]);
    const VF g = VF_LOADU(f);
    for (int64_t k = 0; k < n; k++) {
        if (log_mode)
            EV_ST(y + k * inner, VF_SUB(VF_SUB(EV_LD(x + k * inner), mx), g));
        else
            EV_ST(y + k * inner, VF_MUL(EV_LD(y + k * inner), g));
    }
#undef EV_LD
#undef EV_ST
}

static void ev_softmax_cols(bool log_mode, const float *x, float *y, int64_t n, int64_t inner,
                            int64_t m)
{
    if (n <= 0) return;
    for (int64_t j = 0; j < m; j += W)
        ev_softmax_lanes(log_mode, x + j, y + j, n, inner, m - j < W ? m - j : W);
}

/* ---- LayerNormalization ---- */

static void ev_layernorm_rows(const float *x, float *y, int64_t rows, int64_t d, const float *scale,
                              const float *bias, float eps, float *mean_out, float *inv_out)
{
    for (int64_t o = 0; o < rows; o++) {
        const float *xr = x + o * d;
        float *yr = y + o * d;
        /* the sum, then the sum of squared deviations, in double (as the reference); four
         * accumulators, which the adds' latency would otherwise bound */
        VD a0 = VD_ZERO(), a1 = VD_ZERO(), a2 = VD_ZERO(), a3 = VD_ZERO();
        double s = 0.0, v = 0.0;
        int64_t j = 0;
        for (; j + 2 * W <= d; j += 2 * W) {
            const VF u = VF_LOADU(xr + j), w = VF_LOADU(xr + j + W);
            a0 = VD_ADD(a0, VD_LO(u));
            a1 = VD_ADD(a1, VD_HI(u));
            a2 = VD_ADD(a2, VD_LO(w));
            a3 = VD_ADD(a3, VD_HI(w));
        }
        for (int64_t t = j; t < d; t++) s += xr[t];
        s += VD_HSUM(VD_ADD(VD_ADD(a0, a1), VD_ADD(a2, a3)));
        const double mean = d > 0 ? s / (double)d : NAN;
        const VD mv = VD_SET1(mean);
        a0 = a1 = a2 = a3 = VD_ZERO();
        for (j = 0; j + 2 * W <= d; j += 2 * W) {
            const VF u = VF_LOADU(xr + j), w = VF_LOADU(xr + j + W);
            const VD d0 = VD_SUB(VD_LO(u), mv), d1 = VD_SUB(VD_HI(u), mv);
            const VD d2 = VD_SUB(VD_LO(w), mv), d3 = VD_SUB(VD_HI(w), mv);
            a0 = VD_ADD(a0, VD_MUL(d0, d0));
            a1 = VD_ADD(a1, VD_MUL(d1, d1));
            a2 = VD_ADD(a2, VD_MUL(d2, d2));
            a3 = VD_ADD(a3, VD_MUL(d3, d3));
        }
        for (int64_t t = j; t < d; t++) {
            const double dev = xr[t] - mean;
            v += dev * dev;
        }
        v += VD_HSUM(VD_ADD(VD_ADD(a0, a1), VD_ADD(a2, a3)));
        const double var = d > 0 ? v / (double)d : NAN;
        const float meanf = (float)mean, inv = (float)(1.0 / sqrt(var + (double)eps));
        if (mean_out) mean_out[o] = meanf;
        if (inv_out) inv_out[o] = inv;
        /* y = (x - mean) * inv * scale (+ bias), in float and in this order */
        const VF mf = VF_SET1(meanf), iv = VF_SET1(inv);
        for (j = 0; j + W <= d; j += W) {
            VF t = VF_MUL(VF_MUL(VF_SUB(VF_LOADU(xr + j), mf), iv), VF_LOADU(scale + j));
            if (bias) t = VF_ADD(t, VF_LOADU(bias + j));
            VF_STOREU(yr + j, t);
        }
        if (j < d) {
            const int64_t r = d - j;
            VF t =
                VF_MUL(VF_MUL(VF_SUB(VF_LOAD_TAIL(xr + j, r), mf), iv), VF_LOAD_TAIL(scale + j, r));
            if (bias) t = VF_ADD(t, VF_LOAD_TAIL(bias + j, r));
            VF_STORE_TAIL(yr + j, t, r);
        }
    }
}

/* ---- row sums ---- */

static void ev_sum_rows(const float *x, float *y, int64_t rows, int64_t len, bool mean)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * len;
        VD a0 = VD_ZERO(), a1 = VD_ZERO(), a2 = VD_ZERO(), a3 = VD_ZERO();
        int64_t i = 0;
        for (; i + 2 * W <= len; i += 2 * W) {
            const VF u = VF_LOADU(xr + i), w = VF_LOADU(xr + i + W);
            a0 = VD_ADD(a0, VD_LO(u));
            a1 = VD_ADD(a1, VD_HI(u));
            a2 = VD_ADD(a2, VD_LO(w));
            a3 = VD_ADD(a3, VD_HI(w));
        }
        double acc = 0.0;
        for (; i < len; i++) acc += xr[i];
        acc += VD_HSUM(VD_ADD(VD_ADD(a0, a1), VD_ADD(a2, a3)));
        y[r] = mean ? (len > 0 ? (float)(acc / (double)len) : NAN) : (float)acc;
    }
}

#endif /* KILN_ELTWISE_VEC_H */
