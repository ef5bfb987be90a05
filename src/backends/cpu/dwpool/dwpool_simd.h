/* dwpool_simd.h - the vector paths of the depthwise convolution and pooling kernels, written
 * once over macros that the including ISA file (dwpool_avx2.c, dwpool_avx512.c) defines after
 * gemm_vact.h's (the activations):
 *   VL lanes; LM a lane mask; LM_ALL; LM_BITS(b): the lanes of the set bits of b;
 *   LM_RANGE(lo, hi): lanes [lo, hi), 0 <= lo <= hi <= VL; LM_ANY(m); LM_OR(a, b);
 *   VF_LOAD(p), VF_STORE(p, v); VF_LOADM(p, m): lanes outside m read 0 and touch no memory;
 *   VF_STOREM(p, m, v);
 *   VF_LOAD_S2(p): p[0], p[2], ..., p[2 VL - 2], reading nothing past p[2 VL - 2];
 *   VF_LOAD_S2M(p, ma, mb): the same from p[0..VL) under ma and p[VL-1..2VL-1) under mb;
 *   VF_GATHERM(p, s, m): p[l * s] for the lanes l of m, 0 elsewhere;
 *   VF_FMAM(acc, w, v, m): w * v + acc (one rounding) in the lanes of m, acc elsewhere
 *   (or, with DWP_ZERO_TAPS, w * v + acc everywhere: v is +0.0 outside m; a plane whose
 *   weights are not all finite then goes to the portable path, which skips those taps);
 *   VF_MAXM(b, v, m): in the lanes of m, v > b ? v : b (x86 max: b stays when either is NaN);
 *   LM_NAN(v, m): the lanes of m where v is NaN;
 *   VD (double vector), VD_ZERO, VD_ADD, VD_LO(v) / VD_HI(v) (the low / high half of v
 *   widened), VD_SUM(d) (its lanes' sum);
 *   NAME(x): x with the path's suffix; DWP_FLAT (optional): the flat path below, with
 *   VF_DEINTERLEAVE(a, b, even, odd) (lanes 0, 2, .. and 1, 3, .. of the 2 VL floats a, b).
 *
 * Rows: an output row goes VL columns at a time, in chunks at multiples of VL. A chunk whose
 * every tap lies inside the input row loads its taps whole: stride 1 plain loads, stride 2
 * two loads and a deinterleave, other strides a gather; a chunk touching the left or right
 * border (or the row's tail) gives each tap the mask of the lanes it covers (worked out once
 * per layer: every row has the same chunks). Rows near the top and bottom skip the taps
 * above and below the input. The kernel size and the stride are compile-time constants in
 * the fast paths (3x3 and 5x5 convolutions, strides 1 and 2), so the taps unroll and a
 * convolution's weights stay in registers.
 *
 * Flat (small planes, narrower than a vector: 14x14, 7x7): the plane's outputs in row-major
 * order go VL at a time, rows and all. With stride 1 and the input as wide as the output
 * (same padding), tap (ky, kx) of output f reads input f + a constant, so each tap is one
 * masked load (the masks, per vector and tap, say which lanes' taps are inside). Stride 2
 * first splits the input plane into its four phases (even/odd rows x even/odd columns), each
 * stored as wide as the output: then the same holds in the tap's phase.
 *
 * Numerics: a convolution output is its bias, then each inside tap's w * x added with one
 * FMA in the reference's order (ky, then kx), then the residual, then the activation
 * (gemm_vact.h's vector formulas). Pools visit the taps in the reference's order too: masked
 * lanes add +0.0 (the sum of an average pool starts at +0.0, so that changes no bit) and
 * never win a max, so max and average pools give the reference's bits, except that a max
 * that meets a NaN is recomputed by the scalar rule (the first NaN wins, payload and all). */
#ifndef KILN_DWPOOL_SIMD_H
#define KILN_DWPOOL_SIMD_H

#include <math.h>
#include <string.h>

#define DWP_INLINE static inline __attribute__((always_inline))

/* The template's own functions, named per path (NAME) through these. */
#define avg_count_v     NAME(avg_count)
#define chunk_v         NAME(chunk)
#define conv_epilogue_v NAME(conv_epilogue)
#define flat_v          NAME(flat)
#define flat_prepare_v  NAME(flat_prepare)
#define global_avg_v    NAME(global_avg)
#define global_max_v    NAME(global_max)
#define max_scalar_v    NAME(max_scalar)
#define plane_init_v    NAME(plane_init)
#define range_bits_v    NAME(range_bits)
#define row_v           NAME(row)
#define row2_v          NAME(row2)
#define rows_avg_v      NAME(rows_avg)
#define rows_avgs1_v    NAME(rows_avgs1)
#define rows_avgs2_v    NAME(rows_avgs2)
#define rows_conv_v     NAME(rows_conv)
#define rows_conv3_v    NAME(rows_conv3)
#define rows_conv3s1_v  NAME(rows_conv3s1)
#define rows_conv3s2_v  NAME(rows_conv3s2)
#define rows_conv5_v    NAME(rows_conv5)
#define rows_conv5s1_v  NAME(rows_conv5s1)
#define rows_conv5s2_v  NAME(rows_conv5s2)
#define rows_convs1_v   NAME(rows_convs1)
#define rows_convs2_v   NAME(rows_convs2)
#define rows_max_v      NAME(rows_max)
#define rows_maxs1_v    NAME(rows_maxs1)
#define rows_maxs2_v    NAME(rows_maxs2)
#define rows_t_v        NAME(rows_t)
#define s2_bits_v       NAME(s2_bits)
#define tap_v           NAME(tap)
#define tap_m_v         NAME(tap_m)
#define taps_v          NAME(taps)
#define taps2_v         NAME(taps2)

#define DWP_TAB_CH     16  /* chunks of a row with masks in the tables */
#define DWP_TAB_K      8   /* taps of a row with masks in the tables */
#define DWP_FLAT_VEC   16  /* vectors of a plane on the flat path */
#define DWP_FLAT_TAPS  25  /* taps (5x5) */
#define DWP_FLAT_PHASE 512 /* floats of one phase plane */
#define DWP_EPI_RUN    512 /* outputs of a run of rows the epilogue's pass takes at once */

/* Per layer and run (dwp_prepare). */
typedef struct dwp_prep {
    int64_t nch;                  /* chunks of a row in the tables; 0: masks worked out as needed */
    bool full[DWP_TAB_CH];        /* every tap of the chunk covers all its lanes */
    LM lm[DWP_TAB_CH][DWP_TAB_K]; /* the lanes whose tap kx lies inside the row */
    LM ema[DWP_TAB_CH][DWP_TAB_K]; /* stride 2: the elements of the two loads those lanes */
    LM emb[DWP_TAB_CH][DWP_TAB_K]; /* take (VF_LOAD_S2M) */
    float cx[DWP_TAB_CH * VL];     /* AveragePool: each column's divisor (1 past the row) */
#ifdef DWP_FLAT
    int64_t nvec;                       /* vectors per plane; 0: no flat path */
    int64_t prows;                      /* stride 2: rows of a phase plane */
    int64_t foff[DWP_FLAT_TAPS];        /* tap t of lane 0 of vector 0: offset in its source */
    int32_t fsrc[DWP_FLAT_TAPS];        /* stride 2: the tap's phase, py * 2 + px */
    LM fm[DWP_FLAT_VEC][DWP_FLAT_TAPS]; /* the lanes whose tap t is inside */
#endif
} dwp_prep;

_Static_assert(sizeof(dwp_prep) <= DWP_PREP_BYTES, "dwp_prep outgrows dwp_args.prep");

static uint32_t range_bits_v(int64_t lo, int64_t hi)
{
    return hi > lo ? (uint32_t)(((1ull << hi) - 1u) & ~((1ull << lo) - 1u)) : 0u;
}

/* The element masks of VF_LOAD_S2M's two loads for the lanes `bits`: lane l takes element
 * 2l, from the first load (elements 0..VL-1) or the second (VL-1..2VL-2). */
static void s2_bits_v(uint32_t bits, uint32_t *a, uint32_t *b)
{
    *a = *b = 0;
    for (int l = 0; l < VL; l++) {
        if (!(bits >> l & 1u)) continue;
        if (2 * l < VL)
            *a |= 1u << (2 * l);
        else
            *b |= 1u << (2 * l - (VL - 1));
    }
}

#ifdef DWP_FLAT
/* The flat path's tables, when the layer fits it: a K x K convolution (K 3 or 5, dilation 1
 * along the row) with equal strides 1 or 2, planes of at most DWP_FLAT_VEC vectors narrower
 * than one, and the input as wide as the output (stride 1) or at most twice (stride 2). */
static void flat_prepare_v(const dwp_args *a, dwp_prep *t)
{
    const int64_t k = a->kh, s = a->sh, ow = a->ow, total = a->oh * a->ow;
    t->nvec = 0;
    if (a->op != DWP_CONV || (k != 3 && k != 5) || a->kw != k || a->dw != 1 || a->sw != s ||
        (s != 1 && s != 2) || ow >= VL || total > DWP_FLAT_VEC * VL)
        return;
    if (s == 1 && a->iw != ow) return;
    t->prows = (a->ih + 1) / 2;
    if (s == 2 && ((a->iw + 1) / 2 > ow || t->prows * ow > DWP_FLAT_PHASE)) return;
    for (int64_t ky = 0; ky < k; ky++)
        for (int64_t kx = 0; kx < k; kx++) {
            const int64_t dy = ky * a->dh - a->ph, dx = kx - a->pw, tap = ky * k + kx;
            if (s == 1) {
                t->foff[tap] = dy * a->iw + dx;
                t->fsrc[tap] = 0;
                continue;
            }
            const int64_t py = dy - 2 * dwp_floor_div(dy, 2), px = dx - 2 * dwp_floor_div(dx, 2);
            t->foff[tap] = dwp_floor_div(dy, 2) * ow + dwp_floor_div(dx, 2);
            t->fsrc[tap] = (int32_t)(py * 2 + px);
        }
    /* a tap's mask is its row's lanes and its column's lanes */
    const int64_t nvec = (total + VL - 1) / VL;
    for (int64_t v = 0; v < nvec; v++) {
        uint32_t rows[5] = {0}, cols[5] = {0};
        for (int64_t l = 0; l < VL && v * VL + l < total; l++) {
            const int64_t oy = (v * VL + l) / ow, ox = (v * VL + l) % ow;
            for (int64_t j = 0; j < k; j++) {
                const int64_t iy = oy * s + j * a->dh - a->ph, ix = ox * s + j - a->pw;
                if (iy >= 0 && iy < a->ih) rows[j] |= 1u << l;
                if (ix >= 0 && ix < a->iw) cols[j] |= 1u << l;
            }
        }
        for (int64_t ky = 0; ky < k; ky++)
            for (int64_t kx = 0; kx < k; kx++) t->fm[v][ky * k + kx] = LM_BITS(rows[ky] & cols[kx]);
    }
    t->nvec = nvec;
}
#endif

void NAME(dwp_prepare)(dwp_args *a)
{
    dwp_prep *t = (dwp_prep *)(void *)a->prep;
    const int64_t nch = (a->ow + VL - 1) / VL;
    t->nch = 0;
    if (nch <= DWP_TAB_CH && a->kw <= DWP_TAB_K) {
        for (int64_t j = 0; j < nch; j++) {
            const int64_t ox = j * VL, n = a->ow - ox < VL ? a->ow - ox : VL;
            bool full = n == VL;
            for (int64_t kx = 0; kx < a->kw; kx++) {
                int64_t lo, hi;
                dwp_cols(a, kx, &lo, &hi);
                lo = lo > ox ? lo - ox : 0;
                hi = hi - ox < n ? hi - ox : n;
                const uint32_t bits = range_bits_v(lo, hi);
                uint32_t ea, eb;
                s2_bits_v(bits, &ea, &eb);
                if (lo != 0 || hi != VL) full = false;
                t->lm[j][kx] = LM_BITS(bits);
                t->ema[j][kx] = LM_BITS(ea);
                t->emb[j][kx] = LM_BITS(eb);
            }
            t->full[j] = full;
            for (int64_t l = 0; l < VL; l++)
                t->cx[j * VL + l] = a->op == DWP_AVG && ox + l < a->ow
                                        ? (float)dwp_avg_taps((ox + l) * a->sw - a->pw, a->iw,
                                                              a->pe_w, a->kw, a->dw, a->include_pad)
                                        : 1.0f;
        }
        t->nch = nch;
    }
#ifdef DWP_FLAT
    flat_prepare_v(a, t);
#endif
}

/* What the rows of one plane share: the layer's sizes (copied, so that stores to the
 * output cannot make the compiler reload them), the plane's pointers, per-tap column ranges. */
typedef struct dwp_plane {
    const dwp_args *a;
    const dwp_prep *t;
    int64_t ih, iw, oh, ow, kh, kw, sh, sw, dh, dw, ph, pw;
    const float *xp, *wp, *zp;
    float *yp;
    float bias;
    int64_t col_lo[DWP_MAX_K], col_hi[DWP_MAX_K]; /* dwp_cols of tap kx */
    int64_t int_lo, int_hi; /* the columns all of whose taps are inside the row */
    /* convolutions: the activation when it is a clamp (none, Relu, Clip) and no residual
     * comes first, applied as outputs are stored: max(lo, .) then min(hi, .), NaN kept;
     * else -inf, +inf and `epilogue`: a pass over each row after it */
    VF lo, hi;
    bool epilogue;
} dwp_plane;

DWP_INLINE void plane_init_v(dwp_plane *c, const dwp_args *a, int64_t p)
{
    const int64_t oc = p % a->c_out, img = p / a->c_out;
    c->a = a;
    c->t = (const dwp_prep *)(const void *)a->prep;
    c->ih = a->ih;
    c->iw = a->iw;
    c->oh = a->oh;
    c->ow = a->ow;
    c->kh = a->kh;
    c->kw = a->kw;
    c->sh = a->sh;
    c->sw = a->sw;
    c->dh = a->dh;
    c->dw = a->dw;
    c->ph = a->ph;
    c->pw = a->pw;
    c->xp = a->x + (img * a->c_in + oc / a->mult) * a->ih * a->iw;
    c->yp = a->y + p * a->oh * a->ow;
    c->zp = a->z ? a->z + p * a->oh * a->ow : NULL;
    c->wp = a->w ? a->w + oc * a->kh * a->kw : NULL;
    c->bias = a->bias ? a->bias[oc] : 0.0f;
    const bool clamp =
        !a->z && (a->act == GEMM_ACT_NONE || a->act == GEMM_ACT_RELU || a->act == GEMM_ACT_CLIP);
    c->lo = VF_SET1(clamp && a->act == GEMM_ACT_RELU   ? 0.0f
                    : clamp && a->act == GEMM_ACT_CLIP ? a->alpha
                                                       : -INFINITY);
    c->hi = VF_SET1(clamp && a->act == GEMM_ACT_CLIP ? a->beta : INFINITY);
    c->epilogue = a->op == DWP_CONV && !clamp;
    c->int_lo = c->int_hi = 0;
    if (c->t->nch) return; /* the tables replace the ranges */
    for (int64_t kx = 0; kx < a->kw; kx++) dwp_cols(a, kx, &c->col_lo[kx], &c->col_hi[kx]);
    c->int_lo = c->col_lo[0];
    c->int_hi = c->col_hi[a->kw - 1];
    if (c->int_hi < c->int_lo) c->int_hi = c->int_lo;
}

/* MaxPool's output (oy, ox) by the reference's rule: the first maximum in tap order wins
 * and a NaN wins over numbers; -inf when no tap is inside. */
static float max_scalar_v(const dwp_plane *c, int64_t oy, int64_t ox)
{
    int64_t ky_lo, ky_hi, kx_lo, kx_hi;
    const int64_t iy0 = oy * c->sh - c->ph, ix0 = ox * c->sw - c->pw;
    dwp_taps(iy0, c->ih, c->kh, c->dh, &ky_lo, &ky_hi);
    dwp_taps(ix0, c->iw, c->kw, c->dw, &kx_lo, &kx_hi);
    float best = -INFINITY;
    bool seen = false;
    for (int64_t ky = ky_lo; ky < ky_hi; ky++)
        for (int64_t kx = kx_lo; kx < kx_hi; kx++) {
            const float v = c->xp[(iy0 + ky * c->dh) * c->iw + ix0 + kx * c->dw];
            if (!seen || v > best || (v != v && best == best)) best = v;
            seen = true;
        }
    return best;
}

/* The interior tap of lanes l: p[l * s]. */
DWP_INLINE VF tap_v(const int S, const float *p, int64_t s)
{
    if (S == 1) return VF_LOAD(p);
    if (S == 2) return VF_LOAD_S2(p);
    return VF_GATHERM(p, s, LM_ALL);
}

/* A border tap, lanes of m only. */
DWP_INLINE VF tap_m_v(const int S, const float *p, int64_t s, LM m)
{
    if (S == 1) return VF_LOADM(p, m);
    return VF_GATHERM(p, s, m);
}

/* Sigmoid as gemm_vact.h's, with the division 1 / (1 + e) (1 + e in (1, 2]) as the
 * hardware's reciprocal estimate and one Newton step (VF_RCP: relative error 2^-14 or
 * 2^-12 before, ~2^-24 after), which is several times cheaper than a vector division: the
 * results are within an ulp or two of the divided ones. */
#ifdef VF_SCALEF
/* exp(t) for t <= 0 (or NaN) where VF_SCALEF (p * 2^n, underflowing gracefully) builds the
 * power: the same reduction as vact_exp, a degree-6 Taylor polynomial of e^r on |r| <=
 * ln2/2 (truncation ~1.2e-7 relative): fewer instructions than vact_exp's general one. */
static inline VF dwp_exp_neg(VF t)
{
    t = VF_MAX(VF_SET1(-104.0f), t); /* -inf -> 0 below; NaN stays */
    const VF n = VF_ROUND(VF_MUL(t, VF_SET1(1.44269504088896341f)));
    VF r = VF_FMA(n, VF_SET1(-0.693359375f), t);
    r = VF_FMA(n, VF_SET1(2.12194440e-4f), r);
    VF p = VF_FMA(VF_SET1(1.38888889e-3f), r, VF_SET1(8.33333333e-3f));
    p = VF_FMA(p, r, VF_SET1(4.16666667e-2f));
    p = VF_FMA(p, r, VF_SET1(1.66666667e-1f));
    p = VF_FMA(p, r, VF_SET1(0.5f));
    p = VF_FMA(p, r, VF_SET1(1.0f));
    p = VF_FMA(p, r, VF_SET1(1.0f));
    return VF_SCALEF(p, n);
}
#else
#define dwp_exp_neg(t) vact_exp(t)
#endif

static inline VF dwp_sigmoid(VF x)
{
    const VF e = dwp_exp_neg(VF_SUB(VF_SET1(0.0f), VF_ABS(x)));
    const VF num = VF_SEL(VF_GE(x, VF_SET1(0.0f)), VF_SET1(1.0f), e);
    const VF d = VF_ADD(VF_SET1(1.0f), e);
    VF r = VF_RCP(d);
    r = VF_FMA(r, VF_FMA(VF_SUB(VF_SET1(0.0f), d), r, VF_SET1(1.0f)), r);
    return VF_MUL(num, r);
}

/* One activation; Sigmoid and Silu through dwp_sigmoid. */
#define DWP_ACT(v, ACT)                                                                            \
    ((ACT) == GEMM_ACT_SILU      ? VF_MUL(v, dwp_sigmoid(v))                                       \
     : (ACT) == GEMM_ACT_SIGMOID ? dwp_sigmoid(v)                                                  \
                                 : vact_apply(v, ACT, va, vb))

/* The residual and the activation over n outputs, in place: one loop per activation. */
#define DWP_EPI_LOOP(ACT)                                                                          \
    do {                                                                                           \
        int64_t i = 0;                                                                             \
        for (; i + VL <= n; i += VL) {                                                             \
            VF v = VF_LOAD(y + i);                                                                 \
            if (z) v = VF_ADD(v, VF_LOAD(z + i));                                                  \
            VF_STORE(y + i, DWP_ACT(v, ACT));                                                      \
        }                                                                                          \
        if (i < n) {                                                                               \
            const LM m = LM_RANGE(0, n - i);                                                       \
            VF v = VF_LOADM(y + i, m);                                                             \
            if (z) v = VF_ADD(v, VF_LOADM(z + i, m));                                              \
            VF_STOREM(y + i, m, DWP_ACT(v, ACT));                                                  \
        }                                                                                          \
    } while (0)

static void conv_epilogue_v(float *y, const float *z, int64_t n, gemm_act act, float alpha,
                            float beta)
{
    const VF va = VF_SET1(alpha), vb = VF_SET1(beta);
    switch (act) {
    case GEMM_ACT_NONE: DWP_EPI_LOOP(GEMM_ACT_NONE); break;
    case GEMM_ACT_RELU: DWP_EPI_LOOP(GEMM_ACT_RELU); break;
    case GEMM_ACT_LEAKY_RELU: DWP_EPI_LOOP(GEMM_ACT_LEAKY_RELU); break;
    case GEMM_ACT_CLIP: DWP_EPI_LOOP(GEMM_ACT_CLIP); break;
    case GEMM_ACT_SIGMOID: DWP_EPI_LOOP(GEMM_ACT_SIGMOID); break;
    case GEMM_ACT_HARD_SWISH: DWP_EPI_LOOP(GEMM_ACT_HARD_SWISH); break;
    case GEMM_ACT_HARD_SIGMOID: DWP_EPI_LOOP(GEMM_ACT_HARD_SIGMOID); break;
    case GEMM_ACT_SILU: DWP_EPI_LOOP(GEMM_ACT_SILU); break;
    case GEMM_ACT_GELU: DWP_EPI_LOOP(GEMM_ACT_GELU); break;
    case GEMM_ACT_GELU_TANH: DWP_EPI_LOOP(GEMM_ACT_GELU_TANH); break;
    case GEMM_ACT_TANH: DWP_EPI_LOOP(GEMM_ACT_TANH); break;
    case GEMM_ACT_ELU: DWP_EPI_LOOP(GEMM_ACT_ELU); break;
    }
}

/* AveragePool's divisor of output (oy's row count cy, ox). */
static float avg_count_v(const dwp_args *a, int64_t cy, int64_t ox)
{
    int64_t cx = dwp_avg_taps(ox * a->sw - a->pw, a->iw, a->pe_w, a->kw, a->dw, a->include_pad);
    return (float)(cy * cx);
}

/* The taps of the chunk of n columns at ox, added to acc (a convolution: multiplied by their
 * weights; a max pool: the larger kept, NaN lanes noted in *nan). rp[ky] is input column 0
 * of the row tap ky reads, for ky in [ky_lo, ky_hi); ALL: every row of a K x K kernel, so
 * the loops unroll completely and wv (the broadcast weights) stays in registers. FULL: every
 * tap of every lane lies inside the row; else TAB: the masks of each tap are lm (and ema,
 * emb), else they are worked out from the column ranges. K (0: c->kh x c->kw; else K x K
 * with dilation 1 along the row) and S (the column stride, 0: c->sw) are constants after
 * inlining. */
DWP_INLINE VF taps_v(const int OP, const int K, const int S, const bool FULL, const bool TAB,
                     const bool ALL, const dwp_plane *c, const float *const *rp, int64_t ky_lo,
                     int64_t ky_hi, const VF *wv, const LM *lm, const LM *ema, const LM *emb,
                     VF acc, int64_t ox, int64_t n, LM *nan)
{
    const int64_t kw = K ? K : c->kw, sw = S ? S : c->sw, dw = K ? 1 : c->dw;
    const int64_t y0 = ALL ? 0 : ky_lo, y1 = ALL ? K : ky_hi;
#pragma GCC unroll 5
    for (int64_t ky = y0; ky < y1; ky++) {
        const float *xr = rp[ky] + ox * sw;
#pragma GCC unroll 5
        for (int64_t kx = 0; kx < kw; kx++) {
            const float *p = xr + kx * dw;
            LM m = LM_ALL;
            VF v;
            if (FULL) {
                v = tap_v(S, p, sw);
            } else if (TAB) {
                m = lm[kx];
                v = S == 2 ? VF_LOAD_S2M(p, ema[kx], emb[kx]) : tap_m_v(S, p, sw, m);
            } else {
                const int64_t lo = c->col_lo[kx] > ox ? c->col_lo[kx] - ox : 0;
                const int64_t hi = c->col_hi[kx] - ox < n ? c->col_hi[kx] - ox : n;
                if (lo >= hi) continue;
                m = LM_RANGE(lo, hi);
                v = tap_m_v(S, p, sw, m);
            }
            if (OP == DWP_CONV) {
                const VF w = K ? wv[ky * K + kx] : VF_SET1(c->wp[ky * kw + kx]);
                acc = FULL ? VF_FMA(w, v, acc) : VF_FMAM(acc, w, v, m);
            } else if (OP == DWP_MAX) {
                acc = FULL ? VF_MAX(v, acc) : VF_MAXM(acc, v, m);
                *nan = LM_OR(*nan, LM_NAN(v, m));
            } else {
                acc = VF_ADD(acc, v); /* masked lanes read +0.0 */
            }
        }
    }
    return acc;
}

/* One chunk: its taps, then the store (a max pool meeting a NaN redoes the chunk by the
 * scalar rule; an average pool divides by each output's count, NaN for none). */
DWP_INLINE void chunk_v(const int OP, const int K, const int S, const bool FULL, const bool TAB,
                        const bool ALL, const dwp_plane *c, const float *const *rp, int64_t ky_lo,
                        int64_t ky_hi, const VF *wv, const LM *lm, const LM *ema, const LM *emb,
                        VF init, int64_t oy, int64_t cy, int64_t ox, int64_t n, float *y)
{
    LM nan = LM_RANGE(0, 0);
    VF acc =
        taps_v(OP, K, S, FULL, TAB, ALL, c, rp, ky_lo, ky_hi, wv, lm, ema, emb, init, ox, n, &nan);
    const LM tail = FULL ? LM_ALL : LM_RANGE(0, n);
    if (OP == DWP_CONV) acc = VF_MIN(c->hi, VF_MAX(c->lo, acc));
    /* an average's divisor: rows (cy) times columns; an empty window gives NaN, as the
     * reference (0 / 0 would give the negative one) */
    if (OP == DWP_AVG && FULL) {
        acc = cy ? VF_DIV(acc, VF_SET1((float)(cy * c->kw))) : VF_SET1(NAN);
    } else if (OP == DWP_AVG) {
        VF cnt;
        if (TAB) {
            cnt = VF_MUL(VF_SET1((float)cy), VF_LOAD(c->t->cx + ox)); /* exact: small ints */
        } else {
            float tmp[VL];
            for (int64_t l = 0; l < VL; l++) tmp[l] = l < n ? avg_count_v(c->a, cy, ox + l) : 1.0f;
            cnt = VF_LOAD(tmp);
        }
        acc = VF_SEL(VF_LT(cnt, VF_SET1(0.5f)), VF_SET1(NAN), VF_DIV(acc, cnt));
    }
    if (FULL)
        VF_STORE(y + ox, acc);
    else
        VF_STOREM(y + ox, tail, acc);
    if (OP == DWP_MAX && LM_ANY(nan))
        for (int64_t l = 0; l < n; l++) y[ox + l] = max_scalar_v(c, oy, ox + l);
}

/* One output row: the tables' chunks, or without tables border chunks masked as worked out
 * and the interior whole where a chunk fits in it. */
DWP_INLINE void row_v(const int OP, const int K, const int S, const bool ALL, const dwp_plane *c,
                      const float *const *rp, int64_t ky_lo, int64_t ky_hi, const VF *wv, VF init,
                      int64_t oy, int64_t cy, float *y)
{
    const dwp_prep *t = c->t;
    const int64_t ow = c->ow;
    if (t->nch) {
        for (int64_t j = 0; j < t->nch; j++) {
            const int64_t ox = j * VL, n = ow - ox < VL ? ow - ox : VL;
            if (t->full[j]) {
                chunk_v(OP, K, S, true, false, ALL, c, rp, ky_lo, ky_hi, wv, NULL, NULL, NULL, init,
                        oy, cy, ox, VL, y);
            } else {
                chunk_v(OP, K, S, false, true, ALL, c, rp, ky_lo, ky_hi, wv, t->lm[j], t->ema[j],
                        t->emb[j], init, oy, cy, ox, n, y);
            }
        }
        return;
    }
    const int64_t int_lo = c->int_lo, int_hi = c->int_hi;
    int64_t ox = 0;
    if (int_hi - int_lo >= VL) {
        while (ox < int_lo) {
            const int64_t n = int_lo - ox < VL ? int_lo - ox : VL;
            chunk_v(OP, K, S, false, false, ALL, c, rp, ky_lo, ky_hi, wv, NULL, NULL, NULL, init,
                    oy, cy, ox, n, y);
            ox += n;
        }
        for (; ox + VL <= int_hi; ox += VL)
            chunk_v(OP, K, S, true, false, ALL, c, rp, ky_lo, ky_hi, wv, NULL, NULL, NULL, init, oy,
                    cy, ox, VL, y);
    }
    for (; ox < ow; ox += VL) {
        const int64_t n = ow - ox < VL ? ow - ox : VL;
        chunk_v(OP, K, S, false, false, ALL, c, rp, ky_lo, ky_hi, wv, NULL, NULL, NULL, init, oy,
                cy, ox, n, y);
    }
}

/* Two output rows at once, oy and oy + SH (every tap of both inside vertically, dilation 1):
 * they read the K + SH input rows rp[0..], each loaded tap serving both where it falls in
 * both windows; two independent chains of FMAs, each in its output's tap order. */
DWP_INLINE void taps2_v(const int K, const int S, const int SH, const bool FULL, const dwp_plane *c,
                        const float *const *rp, const VF *wv, const LM *lm, const LM *ema,
                        const LM *emb, VF *acc0, VF *acc1, int64_t ox)
{
    const int64_t sw = S ? S : c->sw;
#pragma GCC unroll 7
    for (int r = 0; r < K + SH; r++) {
        const float *xr = rp[r] + ox * sw;
#pragma GCC unroll 5
        for (int kx = 0; kx < K; kx++) {
            const float *p = xr + kx;
            LM m = LM_ALL;
            VF v;
            if (FULL) {
                v = tap_v(S, p, sw);
            } else {
                m = lm[kx];
                v = S == 2 ? VF_LOAD_S2M(p, ema[kx], emb[kx]) : tap_m_v(S, p, sw, m);
            }
            if (r < K) {
                const VF w = wv[r * K + kx];
                *acc0 = FULL ? VF_FMA(w, v, *acc0) : VF_FMAM(*acc0, w, v, m);
            }
            if (r >= SH) {
                const VF w = wv[(r - SH) * K + kx];
                *acc1 = FULL ? VF_FMA(w, v, *acc1) : VF_FMAM(*acc1, w, v, m);
            }
        }
    }
}

DWP_INLINE void row2_v(const int K, const int S, const int SH, const dwp_plane *c,
                       const float *const *rp, const VF *wv, VF init, float *y0, float *y1)
{
    const dwp_prep *t = c->t;
    const int64_t ow = c->ow;
    for (int64_t j = 0; j < t->nch; j++) {
        const int64_t ox = j * VL, n = ow - ox < VL ? ow - ox : VL;
        VF a0 = init, a1 = init;
        if (t->full[j]) {
            taps2_v(K, S, SH, true, c, rp, wv, NULL, NULL, NULL, &a0, &a1, ox);
            VF_STORE(y0 + ox, VF_MIN(c->hi, VF_MAX(c->lo, a0)));
            VF_STORE(y1 + ox, VF_MIN(c->hi, VF_MAX(c->lo, a1)));
        } else {
            taps2_v(K, S, SH, false, c, rp, wv, t->lm[j], t->ema[j], t->emb[j], &a0, &a1, ox);
            VF_STOREM(y0 + ox, LM_RANGE(0, n), VF_MIN(c->hi, VF_MAX(c->lo, a0)));
            VF_STOREM(y1 + ox, LM_RANGE(0, n), VF_MIN(c->hi, VF_MAX(c->lo, a1)));
        }
    }
}

#ifdef DWP_FLAT
/* A whole plane on the flat path (dwp_prep's nvec vectors). */
DWP_INLINE void flat_v(const int K, const int S, const dwp_plane *c, const VF *wv)
{
    const dwp_prep *t = c->t;
    const int64_t ow = c->ow, total = c->oh * ow;
    const float *src[4] = {c->xp, c->xp, c->xp, c->xp};
    float phase[4][DWP_FLAT_PHASE];
    if (S == 2) {
        /* phase (py, px) row r, column q: input (2r + py, 2q + px), zero outside */
        const LM wide = LM_RANGE(0, ow);
        for (int64_t py = 0; py < 2; py++)
            for (int64_t r = 0; r < t->prows; r++) {
                const int64_t iy = 2 * r + py;
                VF even = VF_SET1(0.0f), odd = VF_SET1(0.0f);
                if (iy < c->ih) {
                    const float *x = c->xp + iy * c->iw;
                    const int64_t w0 = c->iw < VL ? c->iw : VL;
                    VF_DEINTERLEAVE(VF_LOADM(x, LM_RANGE(0, w0)),
                                    VF_LOADM(x + VL, LM_RANGE(0, c->iw - w0)), even, odd);
                }
                VF_STOREM(phase[py * 2] + r * ow, wide, even);
                VF_STOREM(phase[py * 2 + 1] + r * ow, wide, odd);
            }
        for (int q = 0; q < 4; q++) src[q] = phase[q];
    }
    /* two vectors at a time: two independent chains of FMAs */
    const float *ptap[DWP_FLAT_TAPS];
    for (int tap = 0; tap < K * K; tap++) ptap[tap] = src[S == 2 ? t->fsrc[tap] : 0] + t->foff[tap];
    const VF bias = VF_SET1(c->bias);
    int64_t v = 0;
    for (; v + 1 < t->nvec; v += 2) {
        VF a0 = bias, a1 = bias;
#pragma GCC unroll 25
        for (int tap = 0; tap < K * K; tap++) {
            const LM m0 = t->fm[v][tap], m1 = t->fm[v + 1][tap];
            const float *p = ptap[tap] + v * VL;
            a0 = VF_FMAM(a0, wv[tap], VF_LOADM(p, m0), m0);
            a1 = VF_FMAM(a1, wv[tap], VF_LOADM(p + VL, m1), m1);
        }
        const int64_t n = total - (v + 1) * VL;
        a0 = VF_MIN(c->hi, VF_MAX(c->lo, a0));
        a1 = VF_MIN(c->hi, VF_MAX(c->lo, a1));
        VF_STORE(c->yp + v * VL, a0);
        if (n >= VL)
            VF_STORE(c->yp + (v + 1) * VL, a1);
        else
            VF_STOREM(c->yp + (v + 1) * VL, LM_RANGE(0, n), a1);
    }
    if (v < t->nvec) {
        VF acc = bias;
#pragma GCC unroll 25
        for (int tap = 0; tap < K * K; tap++) {
            const LM m = t->fm[v][tap];
            acc = VF_FMAM(acc, wv[tap], VF_LOADM(ptap[tap] + v * VL, m), m);
        }
        const int64_t n = total - v * VL;
        acc = VF_MIN(c->hi, VF_MAX(c->lo, acc));
        if (n >= VL)
            VF_STORE(c->yp + v * VL, acc);
        else
            VF_STOREM(c->yp + v * VL, LM_RANGE(0, n), acc);
    }
}
#endif

/* Output rows [oy0, oy1) of plane p for one (OP, K, S). */
DWP_INLINE void rows_t_v(const int OP, const int K, const int S, const dwp_args *a, int64_t p,
                         int64_t oy0, int64_t oy1)
{
    dwp_plane c;
    plane_init_v(&c, a, p);
#ifdef DWP_ZERO_TAPS
    if (OP == DWP_CONV) {
        bool finite = true;
        for (int64_t t = 0; t < c.kh * c.kw; t++) finite = finite && isfinite(c.wp[t]);
        if (!finite) {
            dwp_rows_generic(a, p, oy0, oy1);
            return;
        }
    }
#endif
    VF wv[25];
    if (OP == DWP_CONV && K)
        for (int t = 0; t < K * K; t++) wv[t] = VF_SET1(c.wp[t]);
#ifdef DWP_FLAT
    if (OP == DWP_CONV && K && (S == 1 || S == 2) && c.t->nvec && oy0 == 0 && oy1 == c.oh) {
        flat_v(K, S, &c, wv);
        if (c.epilogue)
            conv_epilogue_v(c.yp, c.zp, c.oh * c.ow, (gemm_act)a->act, a->alpha, a->beta);
        return;
    }
#endif
    const VF init = OP == DWP_CONV  ? VF_SET1(c.bias)
                    : OP == DWP_MAX ? VF_SET1(-INFINITY)
                                    : VF_SET1(0.0f);
    const float *rp[DWP_MAX_K + 2];
    /* pairs of rows where both have every tap inside (convolutions with the tables) */
    const bool pairs = OP == DWP_CONV && K && c.t->nch && c.dh == 1 && (c.sh == 1 || c.sh == 2);
    const int64_t sh = c.sh;
    /* the epilogue's pass goes over runs of rows (contiguous) of at least DWP_EPI_RUN
     * outputs, still in cache, in long loops even when rows are short */
    int64_t epi_from = oy0;
    for (int64_t oy = oy0; oy < oy1;) {
        int64_t ky_lo, ky_hi, cy = 0;
        const int64_t iy0 = oy * sh - c.ph;
        float *y = c.yp + oy * c.ow;
        if (pairs && oy + 1 < oy1 && iy0 >= 0 && iy0 + sh + K <= c.ih) {
            for (int64_t r = 0; r < K + sh; r++) rp[r] = c.xp + (iy0 + r) * c.iw - c.pw;
            if (sh == 1)
                row2_v(K, S, 1, &c, rp, wv, init, y, y + c.ow);
            else
                row2_v(K, S, 2, &c, rp, wv, init, y, y + c.ow);
            oy += 2;
        } else {
            dwp_taps(iy0, c.ih, c.kh, c.dh, &ky_lo, &ky_hi);
            if (OP == DWP_AVG) cy = dwp_avg_taps(iy0, c.ih, a->pe_h, c.kh, c.dh, a->include_pad);
            /* column 0 of each row read; before the row's start by the pad (masked lanes only) */
            for (int64_t ky = ky_lo; ky < ky_hi; ky++)
                rp[ky] = c.xp + (iy0 + ky * c.dh) * c.iw - c.pw;
            if (K && ky_lo == 0 && ky_hi == K)
                row_v(OP, K, S, true, &c, rp, ky_lo, ky_hi, wv, init, oy, cy, y);
            else
                row_v(OP, K, S, false, &c, rp, ky_lo, ky_hi, wv, init, oy, cy, y);
            oy++;
        }
        if (OP == DWP_CONV && c.epilogue && ((oy - epi_from) * c.ow >= DWP_EPI_RUN || oy == oy1)) {
            const int64_t at = epi_from * c.ow;
            conv_epilogue_v(c.yp + at, c.zp ? c.zp + at : NULL, (oy - epi_from) * c.ow,
                            (gemm_act)a->act, a->alpha, a->beta);
            epi_from = oy;
        }
    }
}

#define DWP_ROWS(OP, K, S, suffix)                                                                 \
    static void NAME(rows_##suffix)(const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1)        \
    {                                                                                              \
        rows_t_v(OP, K, S, a, p, oy0, oy1);                                                        \
    }

DWP_ROWS(DWP_CONV, 3, 1, conv3s1)
DWP_ROWS(DWP_CONV, 3, 2, conv3s2)
DWP_ROWS(DWP_CONV, 3, 0, conv3)
DWP_ROWS(DWP_CONV, 5, 1, conv5s1)
DWP_ROWS(DWP_CONV, 5, 2, conv5s2)
DWP_ROWS(DWP_CONV, 5, 0, conv5)
DWP_ROWS(DWP_CONV, 0, 1, convs1)
DWP_ROWS(DWP_CONV, 0, 2, convs2)
DWP_ROWS(DWP_CONV, 0, 0, conv)
DWP_ROWS(DWP_MAX, 0, 1, maxs1)
DWP_ROWS(DWP_MAX, 0, 2, maxs2)
DWP_ROWS(DWP_MAX, 0, 0, max)
DWP_ROWS(DWP_AVG, 0, 1, avgs1)
DWP_ROWS(DWP_AVG, 0, 2, avgs2)
DWP_ROWS(DWP_AVG, 0, 0, avg)

typedef void (*dwp_rows_fn)(const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1);

void NAME(dwp_rows)(const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1)
{
    /* [op][kernel: 3x3, 5x5, other][column stride: 1, 2, other] */
    static const dwp_rows_fn fns[3][3][3] = {
        {{rows_conv3s1_v, rows_conv3s2_v, rows_conv3_v},
         {rows_conv5s1_v, rows_conv5s2_v, rows_conv5_v},
         {rows_convs1_v, rows_convs2_v, rows_conv_v}},
        {{rows_maxs1_v, rows_maxs2_v, rows_max_v},
         {rows_maxs1_v, rows_maxs2_v, rows_max_v},
         {rows_maxs1_v, rows_maxs2_v, rows_max_v}},
        {{rows_avgs1_v, rows_avgs2_v, rows_avg_v},
         {rows_avgs1_v, rows_avgs2_v, rows_avg_v},
         {rows_avgs1_v, rows_avgs2_v, rows_avg_v}},
    };
    /* the K x K paths have dilation 1 along the row (their taps' offsets are constants) */
    const int k = a->dw != 1 ? 2 : a->kh == 3 && a->kw == 3 ? 0 : a->kh == 5 && a->kw == 5 ? 1 : 2;
    const int s = a->sw == 1 ? 0 : a->sw == 2 ? 1 : 2;
    fns[a->op][k][s](a, p, oy0, oy1);
}

/* ---- global pools ---- */

/* GlobalMaxPool of one plane: the vector maximum, then the reference's exact answer where
 * lanes could disagree with it: a NaN (the first one wins) or a maximum of zero (the first
 * zero wins, +0.0 or -0.0). */
static float global_max_v(const float *x, int64_t size)
{
    VF best = VF_SET1(-INFINITY);
    LM nan = LM_RANGE(0, 0);
    int64_t i = 0;
    for (; i + VL <= size; i += VL) {
        const VF v = VF_LOAD(x + i);
        best = VF_MAX(v, best);
        nan = LM_OR(nan, LM_NAN(v, LM_ALL));
    }
    if (i < size) {
        const LM m = LM_RANGE(0, size - i);
        const VF v = VF_LOADM(x + i, m);
        best = VF_MAXM(best, v, m);
        nan = LM_OR(nan, LM_NAN(v, m));
    }
    if (LM_ANY(nan)) {
        for (i = 0; i < size; i++)
            if (x[i] != x[i]) return x[i];
    }
    float lanes[VL], r = -INFINITY;
    VF_STORE(lanes, best);
    for (int l = 0; l < VL; l++)
        if (lanes[l] > r) r = lanes[l];
    if (r == 0.0f)
        for (i = 0; i < size; i++)
            if (x[i] == 0.0f) return x[i];
    return r;
}

/* GlobalAveragePool of one plane: sums in double, as the reference (in another order, which
 * the float result almost never sees). */
static float global_avg_v(const float *x, int64_t size)
{
    VD s0 = VD_ZERO, s1 = VD_ZERO;
    int64_t i = 0;
    for (; i + VL <= size; i += VL) {
        const VF v = VF_LOAD(x + i);
        s0 = VD_ADD(s0, VD_LO(v));
        s1 = VD_ADD(s1, VD_HI(v));
    }
    if (i < size) {
        const VF v = VF_LOADM(x + i, LM_RANGE(0, size - i));
        s0 = VD_ADD(s0, VD_LO(v));
        s1 = VD_ADD(s1, VD_HI(v));
    }
    return (float)(VD_SUM(VD_ADD(s0, s1)) / (double)size);
}

void NAME(dwp_global)(const dwp_global *g, int64_t p0, int64_t p1)
{
    for (int64_t p = p0; p < p1; p++) {
        const float *x = g->x + p * g->size;
        g->y[p] = g->is_max ? global_max_v(x, g->size) : global_avg_v(x, g->size);
    }
}

#endif /* KILN_DWPOOL_SIMD_H */
