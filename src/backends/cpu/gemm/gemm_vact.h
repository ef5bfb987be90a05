/* gemm_vact.h - the epilogue activations on SIMD vectors, written once over a few macros
 * that the including ISA file defines (gemm_f32_6x16_avx2.c, gemm_f32_14x32_avx512.c).
 * A template: include it once per ISA file, after defining
 *   VF (float vector), VI (int32 vector), VM (comparison result),
 *   VF_SET1 ADD SUB MUL DIV FMA(a,b,c = a*b+c) ABS ROUND (to nearest)
 *   VF_MAX(a,b) / VF_MIN(a,b) with x86 semantics: a > b ? a : b / a < b ? a : b, so the
 *     second operand comes back when either is NaN,
 *   VF_LT VF_GE (ordered compares -> VM), VF_SEL(m, if_true, if_false),
 *   VF_TO_VI (float to int32, rounding), VI_SET1 ADD SUB SRAI SLLI, VI_AS_VF (bit cast).
 *
 * The formulas are fused_act.c's, with the same order of operations where it matters (the
 * same divisions, no fused multiply-adds where the scalar code has none); only exp, erfc
 * and tanh are approximated here instead of calling libm:
 *   exp: Cody-Waite reduction by ln 2, degree-7 Taylor polynomial of expm1 on |r| <= ln2/2
 *     (truncation < 1e-8), 2^n applied as two factors so that results down to the subnormal
 *     range come out right: about 2 ulp.
 *   erfc: Numerical Recipes' erfcc (relative error < 1.2e-7 over the whole line), its
 *     exponent -z^2 + P(t) summed inside the exp reduction so that large z keep it: a few ulp.
 *   tanh: Cephes tanhf (odd polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above).
 * Measured against the scalar formulas (test_activations in tests/unit/test_gemm.c, x in
 * [-60, 60] and edge values): relative error at most 4.2e-7 (gelu), 1-2e-7 for the others,
 * wherever |y| > 1e-30; below that, absolute. NaN propagates as in the scalar code. */
#ifndef KILN_GEMM_VACT_H
#define KILN_GEMM_VACT_H

/* exp(a + b) for a = the bulk (possibly large), b small (|b| <= ~2): the two are added
 * after the reduction so that rounding a + b does not cost accuracy when a is large. */
static inline VF vact_exp2(VF a, VF b)
{
    const VF s = VF_ADD(a, b);
    const VF x = VF_MIN(VF_SET1(88.8f), VF_MAX(VF_SET1(-104.0f), s));
    const VF n = VF_ROUND(VF_MUL(x, VF_SET1(1.44269504088896341f)));
    /* a - n ln2 is computed exactly (Sterbenz), then b joins */
    VF r = VF_FMA(n, VF_SET1(-0.693359375f), a);
    r = VF_FMA(n, VF_SET1(2.12194440e-4f), r);
    r = VF_ADD(r, b);
    /* expm1(r) = r + r^2 (1/2 + r (1/6 + r (1/24 + r (1/120 + r (1/720 + r / 5040))))) */
    VF p = VF_FMA(VF_SET1(1.98412698e-4f), r, VF_SET1(1.38888889e-3f));
    p = VF_FMA(p, r, VF_SET1(8.33333333e-3f));
    p = VF_FMA(p, r, VF_SET1(4.16666667e-2f));
    p = VF_FMA(p, r, VF_SET1(1.66666667e-1f));
    p = VF_FMA(p, r, VF_SET1(0.5f));
    p = VF_FMA(VF_MUL(p, r), r, r);
    /* 2^n as 2^(n>>1) * 2^(n - (n>>1)): n is in [-150, 128], each half a normal exponent */
    const VI ni = VF_TO_VI(n);
    const VI n1 = VI_SRAI(ni, 1), n2 = VI_SUB(ni, n1);
    const VF s1 = VI_AS_VF(VI_SLLI(VI_ADD(n1, VI_SET1(127)), 23));
    const VF s2 = VI_AS_VF(VI_SLLI(VI_ADD(n2, VI_SET1(127)), 23));
    const VF y = VF_MUL(VF_MUL(VF_ADD(VF_SET1(1.0f), p), s1), s2);
    /* outside the clamp r is not small: the result is 0 (below the subnormals) or inf */
    const VF y0 = VF_SEL(VF_LT(s, VF_SET1(-104.0f)), VF_SET1(0.0f), y);
    return VF_SEL(VF_LT(VF_SET1(88.8f), s), VF_SET1(INFINITY), y0);
}

static inline VF vact_exp(VF x) { return vact_exp2(x, VF_SET1(0.0f)); }

/* expm1(x) for x <= 0 (ELU's branch): 2^n (1 + p) - 1 as 2^n p + (2^n - 1), exact p at
 * n = 0, no cancellation elsewhere (|x| > ln2/2 there). */
static inline VF vact_expm1_neg(VF x)
{
    x = VF_MAX(VF_SET1(-104.0f), x);
    const VF n = VF_ROUND(VF_MUL(x, VF_SET1(1.44269504088896341f)));
    VF r = VF_FMA(n, VF_SET1(-0.693359375f), x);
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
    const VF s = VF_MUL(s1, s2);
    return VF_FMA(s, p, VF_SUB(s, VF_SET1(1.0f)));
}

/* As fused_act.c: 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below, with e = exp(-|x|). */
static inline VF vact_sigmoid(VF x)
{
    const VF e = vact_exp(VF_SUB(VF_SET1(0.0f), VF_ABS(x)));
    const VF num = VF_SEL(VF_GE(x, VF_SET1(0.0f)), VF_SET1(1.0f), e);
    return VF_DIV(num, VF_ADD(VF_SET1(1.0f), e));
}

/* 0.5 x erfc(-x / sqrt 2). erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + |z| / 2), for z >= 0;
 * 2 - that below. */
static inline VF vact_gelu(VF x)
{
    const VF z = VF_MUL(x, VF_SET1(-0.70710678118654752440f));
    const VF az = VF_ABS(z);
    const VF t = VF_DIV(VF_SET1(1.0f), VF_FMA(VF_SET1(0.5f), az, VF_SET1(1.0f)));
    VF p = VF_FMA(VF_SET1(0.17087277f), t, VF_SET1(-0.82215223f));
    p = VF_FMA(p, t, VF_SET1(1.48851587f));
    p = VF_FMA(p, t, VF_SET1(-1.13520398f));
    p = VF_FMA(p, t, VF_SET1(0.27886807f));
    p = VF_FMA(p, t, VF_SET1(-0.18628806f));
    p = VF_FMA(p, t, VF_SET1(0.09678418f));
    p = VF_FMA(p, t, VF_SET1(0.37409196f));
    p = VF_FMA(p, t, VF_SET1(1.00002368f));
    p = VF_FMA(p, t, VF_SET1(-1.26551223f));
    /* -z^2 = -hi - lo exactly; -hi goes into the reduction whole, -lo with P */
    const VF hi = VF_MUL(az, az);
    const VF lo = VF_FMA(az, az, VF_SUB(VF_SET1(0.0f), hi));
    const VF e = VF_MUL(t, vact_exp2(VF_SUB(VF_SET1(0.0f), hi), VF_SUB(p, lo)));
    const VF erfc = VF_SEL(VF_GE(z, VF_SET1(0.0f)), e, VF_SUB(VF_SET1(2.0f), e));
    return VF_MUL(VF_MUL(VF_SET1(0.5f), x), erfc);
}

static inline VF vact_tanh(VF x)
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
    const VF e = vact_exp(VF_ADD(ax, ax));
    const VF big = VF_SUB(VF_SET1(1.0f), VF_DIV(VF_SET1(2.0f), VF_ADD(e, VF_SET1(1.0f))));
    const VF sbig = VF_SEL(VF_LT(x, VF_SET1(0.0f)), VF_SUB(VF_SET1(0.0f), big), big);
    /* NaN fails the compare and takes `small`, which is NaN */
    return VF_SEL(VF_GE(ax, VF_SET1(0.625f)), sbig, small);
}

static inline VF vact_clamp01(VF v) { return VF_MIN(VF_SET1(1.0f), VF_MAX(VF_SET1(0.0f), v)); }

/* Whether the activation is a compare or two (done in the micro-kernels' registers). */
static inline bool vact_is_cheap(gemm_act act)
{
    return act == GEMM_ACT_NONE || act == GEMM_ACT_RELU || act == GEMM_ACT_LEAKY_RELU ||
           act == GEMM_ACT_CLIP;
}

/* The cheap activations only (others: x), small enough to inline into every tile shape. */
static inline VF vact_cheap(VF x, gemm_act act, VF alpha, VF beta)
{
    switch (act) {
    case GEMM_ACT_RELU: return VF_MAX(VF_SET1(0.0f), x);
    case GEMM_ACT_LEAKY_RELU: return VF_SEL(VF_LT(x, VF_SET1(0.0f)), VF_MUL(alpha, x), x);
    case GEMM_ACT_CLIP: return VF_MIN(beta, VF_MAX(alpha, x));
    default: return x;
    }
}

/* One activation on a vector; alpha and beta as in gemm_epilogue. */
static inline VF vact_apply(VF x, gemm_act act, VF alpha, VF beta)
{
    switch (act) {
    case GEMM_ACT_NONE: return x;
    case GEMM_ACT_RELU:
    case GEMM_ACT_LEAKY_RELU:
    case GEMM_ACT_CLIP: return vact_cheap(x, act, alpha, beta);
    case GEMM_ACT_SIGMOID: return vact_sigmoid(x);
    case GEMM_ACT_HARD_SWISH:
        return VF_MUL(x, vact_clamp01(VF_ADD(VF_DIV(x, VF_SET1(6.0f)), VF_SET1(0.5f))));
    case GEMM_ACT_HARD_SIGMOID: return vact_clamp01(VF_ADD(VF_MUL(alpha, x), beta));
    case GEMM_ACT_SILU: return VF_MUL(x, vact_sigmoid(x));
    case GEMM_ACT_GELU: return vact_gelu(x);
    case GEMM_ACT_GELU_TANH: {
        /* fused_act.c: x * sigmoid(2.0f * K * (x + 0.044715f * x * x * x)) */
        const VF x3 = VF_MUL(VF_MUL(VF_MUL(VF_SET1(0.044715f), x), x), x);
        return VF_MUL(x,
                      vact_sigmoid(VF_MUL(VF_SET1(2.0f * 0.79788456080286535588f), VF_ADD(x, x3))));
    }
    case GEMM_ACT_TANH: return vact_tanh(x);
    case GEMM_ACT_ELU: return VF_SEL(VF_LT(x, VF_SET1(0.0f)), VF_MUL(alpha, vact_expm1_neg(x)), x);
    }
    return x;
}

#endif /* KILN_GEMM_VACT_H */
