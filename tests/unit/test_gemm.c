/* test_gemm.c - the CPU GEMM engine (src/backends/cpu/gemm) on every ISA path this machine
 * runs, against a double-accumulating reference: shapes with every tail, strides, transposes,
 * packed and raw operands, bias, residual, accumulate, each activation; the packed format;
 * bit-identical results for any thread count; argument checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/gemm/gemm_impl.h"
#include "testutil.h"

static const gemm_isa k_isas[] = {GEMM_ISA_GENERIC, GEMM_ISA_AVX2, GEMM_ISA_AVX512};
#define N_ISAS 3

static bool runs(gemm_isa isa) { return gemm_isa_supported(isa, kiln_cpu_features_hw()); }

/* Tolerance of the rel L2 error against the double reference: 1e-6, or u sqrt(K) (u = 2^-24)
 * when that is larger, i.e. for K above 281. Each output is a chain of K float FMAs; each add
 * rounds with relative error up to u, and for zero-mean inputs those errors add up like a
 * random walk: the expected rel error of a K-term dot product is about 0.4 u sqrt(K) (the
 * partial sums grow like sqrt(k)): 1.6e-6 at K = 4096, so no float accumulation in order can
 * promise 1e-6 there. Rel L2 over many outputs stays close to that expectation; measured here
 * up to 2.5e-6 at K = 4096 and below 7.5e-7 for K <= 257. */
static double tolerance(int64_t k)
{
    const double u = 5.9604644775390625e-8;
    const double t = u * sqrt((double)(k > 1 ? k : 1));
    return t > 1e-6 ? t : 1e-6;
}

/* gemm_run with a scratch of the size it asks for. */
static kiln_status run_alloc(const gemm_args *g, int32_t threads)
{
    const size_t bytes = gemm_scratch_bytes(g, threads);
    void *scratch = bytes ? malloc(bytes) : NULL;
    const kiln_status st = gemm_run(g, scratch, bytes, threads);
    free(scratch);
    return st;
}

/* ---- the reference ---- */

static double act_ref(double x, gemm_act act, double alpha, double beta)
{
    switch (act) {
    case GEMM_ACT_NONE: return x;
    case GEMM_ACT_RELU: return x < 0 ? 0 : x;
    case GEMM_ACT_LEAKY_RELU: return x < 0 ? alpha * x : x;
    case GEMM_ACT_CLIP: return x < alpha ? alpha : (x > beta ? beta : x);
    case GEMM_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case GEMM_ACT_HARD_SWISH: return x * fmin(1.0, fmax(0.0, x / 6.0 + 0.5));
    case GEMM_ACT_HARD_SIGMOID: return fmin(1.0, fmax(0.0, alpha * x + beta));
    case GEMM_ACT_SILU: return x / (1.0 + exp(-x));
    case GEMM_ACT_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    case GEMM_ACT_GELU_TANH:
        return x / (1.0 + exp(-2.0 * 0.79788456080286535588 * (x + 0.044715 * x * x * x)));
    case GEMM_ACT_TANH: return tanh(x);
    case GEMM_ACT_ELU: return x < 0 ? alpha * expm1(x) : x;
    }
    return x;
}

static float a_at(const gemm_args *g, int64_t i, int64_t k)
{
    return g->trans_a ? g->a[k * g->lda + i] : g->a[i * g->lda + k];
}

static float b_at(const gemm_args *g, int64_t k, int64_t j)
{
    return g->trans_b ? g->b[j * g->ldb + k] : g->b[k * g->ldb + j];
}

/* The expected C (dense, [M,N]) in double before the activation; c0: C before the call
 * (for accumulate). `mag` (may be NULL) gets the same sums of absolute values of the terms. */
static void reference(const gemm_args *g, const float *c0, double *out, double *mag)
{
    const gemm_epilogue *ep = &g->ep;
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = 0; j < g->n; j++) {
            double s = g->accumulate ? c0[i * g->ldc + j] : 0.0, a = fabs(s);
            for (int64_t k = 0; k < g->k; k++) {
                const double p = (double)a_at(g, i, k) * b_at(g, k, j);
                s += p;
                a += fabs(p);
            }
            const double extra = (ep->bias_kind == GEMM_BIAS_COL   ? ep->bias[j]
                                  : ep->bias_kind == GEMM_BIAS_ROW ? ep->bias[i]
                                                                   : 0.0) +
                                 (ep->residual ? ep->residual[i * ep->ldr + j] : 0.0);
            s += extra;
            out[i * g->n + j] = s;
            if (mag) mag[i * g->n + j] = a + fabs(extra);
        }
}

/* ||c - want|| / ||want||, or over ||mag|| / sqrt(terms) when that is larger: a sum of `terms`
 * zero-mean terms typically has that size, and a smaller one means cancellation, where the
 * float result's error relative to the result is not bounded (a single output of a sum that
 * nearly cancels, say). For the random data here the plain denominator is larger except in
 * such cases. */
static double rel_l2(const float *c, int64_t ldc, const double *want, const double *mag,
                     int64_t terms, int64_t m, int64_t n)
{
    double num = 0, den = 0, dmag = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            const double d = (double)c[i * ldc + j] - want[i * n + j];
            num += d * d;
            den += want[i * n + j] * want[i * n + j];
            if (mag) dmag += mag[i * n + j] * mag[i * n + j];
        }
    if (isnan(num)) return INFINITY;
    den = sqrt(den);
    if (mag) {
        const double alt = sqrt(dmag / (double)(terms > 1 ? terms : 1));
        if (alt > den) den = alt;
    }
    return den < 1e-30 ? sqrt(num) : sqrt(num) / den;
}

/* ---- one random case ---- */

typedef struct gcase {
    gemm_args g;
    float *a, *b, *c, *c0, *bias, *res;
    void *ap, *bp;
    size_t c_len;
} gcase;

static const float k_sentinel = -12345.0f;

/* Random operands, strides, flags and epilogue for M x N x K; the raw A / B are kept even
 * when packed copies are used, for the reference. */
static void case_make(gcase *t, tu_rng *r, gemm_isa isa, int64_t m, int64_t n, int64_t k,
                      gemm_act act)
{
    memset(t, 0, sizeof *t);
    gemm_args *g = &t->g;
    g->isa = isa;
    g->m = m;
    g->n = n;
    g->k = k;
    g->trans_a = tu_int(r, 0, 1);
    g->trans_b = tu_int(r, 0, 1);
    g->lda = (g->trans_a ? m : k) + tu_int(r, 0, 3);
    g->ldb = (g->trans_b ? k : n) + tu_int(r, 0, 3);
    g->ldc = n + tu_int(r, 0, 5);
    if (g->lda < 1) g->lda = 1;
    if (g->ldb < 1) g->ldb = 1;
    const size_t a_len = (size_t)((g->trans_a ? k : m) * g->lda) + 1;
    const size_t b_len = (size_t)((g->trans_b ? n : k) * g->ldb) + 1;
    t->c_len = (size_t)(m * g->ldc) + 1;
    t->a = malloc(a_len * sizeof(float));
    t->b = malloc(b_len * sizeof(float));
    t->c = malloc(t->c_len * sizeof(float));
    t->c0 = malloc(t->c_len * sizeof(float));
    tu_fill(r, t->a, (int64_t)a_len, -1, 1);
    tu_fill(r, t->b, (int64_t)b_len, -1, 1);
    g->accumulate = tu_int(r, 0, 3) == 0;
    /* C: old values for accumulate, NaN otherwise (each must be written); sentinels in the
     * stride padding (must stay) */
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < g->ldc; j++)
            t->c0[i * g->ldc + j] =
                j >= n ? k_sentinel : (g->accumulate ? tu_uniform(r, -1, 1) : NAN);
    t->c0[t->c_len - 1] = k_sentinel;
    memcpy(t->c, t->c0, t->c_len * sizeof(float));
    g->c = t->c;

    gemm_epilogue *ep = &g->ep;
    ep->bias_kind = (gemm_bias)tu_int(r, 0, 2);
    if (ep->bias_kind != GEMM_BIAS_NONE) {
        const int64_t len = ep->bias_kind == GEMM_BIAS_COL ? n : m;
        t->bias = malloc((size_t)(len + 1) * sizeof(float));
        tu_fill(r, t->bias, len + 1, -1, 1);
        ep->bias = t->bias;
    }
    if (tu_int(r, 0, 2) == 0) {
        ep->ldr = n + tu_int(r, 0, 4);
        const size_t len = (size_t)(m * ep->ldr) + 1;
        t->res = malloc(len * sizeof(float));
        tu_fill(r, t->res, (int64_t)len, -1, 1);
        ep->residual = t->res;
    }
    ep->act = act;
    switch (act) {
    case GEMM_ACT_LEAKY_RELU: ep->alpha = 0.1f; break;
    case GEMM_ACT_CLIP:
        ep->alpha = -0.5f;
        ep->beta = 0.7f;
        break;
    case GEMM_ACT_HARD_SIGMOID:
        ep->alpha = 0.2f;
        ep->beta = 0.5f;
        break;
    case GEMM_ACT_ELU: ep->alpha = 1.3f; break;
    default: break;
    }
    g->a = t->a;
    g->b = t->b;
}

/* Switches A and/or B to packed copies made by gemm_pack_a / gemm_pack_b. */
static void case_pack(gcase *t, bool pack_a, bool pack_b)
{
    gemm_args *g = &t->g;
    if (pack_a) {
        const size_t bytes = gemm_pack_a_bytes(g->isa, g->m, g->k);
        assert_true(bytes >= 64);
        t->ap = malloc(bytes);
        assert_int_equal(gemm_pack_a(g->isa, g->m, g->k, t->a, g->lda, g->trans_a, t->ap, bytes),
                         KILN_OK);
        g->a_packed = t->ap;
        g->a = NULL;
    }
    if (pack_b) {
        const size_t bytes = gemm_pack_b_bytes(g->isa, g->k, g->n);
        assert_true(bytes >= 64);
        t->bp = malloc(bytes);
        assert_int_equal(gemm_pack_b(g->isa, g->k, g->n, t->b, g->ldb, g->trans_b, t->bp, bytes),
                         KILN_OK);
        g->b_packed = t->bp;
        g->b = NULL;
    }
}

static void case_free(gcase *t)
{
    free(t->a);
    free(t->b);
    free(t->c);
    free(t->c0);
    free(t->bias);
    free(t->res);
    free(t->ap);
    free(t->bp);
}

/* Runs with `threads` into t->c (reset to c0 first), scratch filled with NaN. */
static void case_run(gcase *t, int32_t threads)
{
    memcpy(t->c, t->c0, t->c_len * sizeof(float));
    const size_t bytes = gemm_scratch_bytes(&t->g, threads);
    float *scratch = bytes ? malloc(bytes) : NULL;
    for (size_t i = 0; i < bytes / sizeof(float); i++) scratch[i] = NAN;
    const kiln_status st = gemm_run(&t->g, scratch, bytes, threads);
    if (st != KILN_OK) fail_msg("gemm_run: %s", kiln_last_error());
    free(scratch);
}

static void fail_case(const gemm_args *g, const char *what, const char *part, double e, double tol)
{
    fail_msg("%s (%s): isa %s M=%lld N=%lld K=%lld transA=%d transB=%d packA=%d packB=%d "
             "acc=%d bias=%d res=%d act=%d: rel L2 %.3g > %.3g",
             what, part, gemm_isa_name(g->isa), (long long)g->m, (long long)g->n, (long long)g->k,
             g->trans_a, g->trans_b, g->a_packed != NULL, g->b_packed != NULL, g->accumulate,
             (int)g->ep.bias_kind, g->ep.residual != NULL, (int)g->ep.act, e, tol);
}

/* Runs the case and checks it in two parts, so that each error is measured against what
 * it depends on: C before the activation (a run with act = none) against the double
 * reference within tolerance(K); then C with the activation against the double activation
 * of that float C, within 1e-6 (an activation amplifies its input's rounding where it is
 * steep relative to its value, e.g. hard swish near -3: that is not the GEMM's error).
 * Also checks that the stride padding of C is untouched. Leaves the final C in t->c. */
static void case_run_check(gcase *t, int32_t threads, const char *what)
{
    gemm_args *g = &t->g;
    const gemm_act act = g->ep.act;
    const int64_t mn = g->m * g->n;
    double *want = malloc((size_t)(mn + 1) * sizeof(double));
    double *mag = malloc((size_t)(mn + 1) * sizeof(double));
    gemm_args raw = *g;
    raw.a = t->a;
    raw.b = t->b;
    reference(&raw, t->c0, want, mag);
    const int64_t terms = g->k + (g->accumulate ? 1 : 0) + (g->ep.bias_kind != GEMM_BIAS_NONE) +
                          (g->ep.residual != NULL);
    g->ep.act = GEMM_ACT_NONE;
    case_run(t, threads);
    g->ep.act = act;
    const double e = rel_l2(t->c, g->ldc, want, mag, terms, g->m, g->n), tol = tolerance(g->k);
    if (!(e <= tol)) fail_case(g, what, "before the activation", e, tol);
    if (act != GEMM_ACT_NONE) {
        /* relative to the larger of the output and the input: the activations are
         * Lipschitz (slope <= 1.5), so their error scales with the input where they squash it
         * towards 0 (gelu's tail, hard swish's root); test_activations checks them point by
         * point */
        for (int64_t i = 0; i < g->m; i++)
            for (int64_t j = 0; j < g->n; j++) {
                const float x = t->c[i * g->ldc + j];
                want[i * g->n + j] = act_ref(x, act, g->ep.alpha, g->ep.beta);
                mag[i * g->n + j] = fabs(x);
            }
        case_run(t, threads);
        const double ea = rel_l2(t->c, g->ldc, want, mag, 1, g->m, g->n);
        if (!(ea <= 1e-6)) fail_case(g, what, "the activation", ea, 1e-6);
    }
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = g->n; j < g->ldc; j++)
            if (t->c[i * g->ldc + j] != k_sentinel)
                fail_msg("%s: C[%lld][%lld] past N was written", what, (long long)i, (long long)j);
    assert_true(t->c[t->c_len - 1] == k_sentinel);
    free(want);
    free(mag);
}

static const int64_t k_dims[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,   10,  11,  12, 13,
                                 14, 15, 16, 17, 31, 33, 63, 65, 127, 129, 255, 257};
#define N_DIMS ((int)(sizeof k_dims / sizeof *k_dims))

/* One random case on `isa` with a random activation and random packing; checked. */
static void one_case(tu_rng *r, gemm_isa isa, int64_t m, int64_t n, int64_t k)
{
    gcase t;
    case_make(&t, r, isa, m, n, k, (gemm_act)tu_int(r, 0, GEMM_ACT_ELU));
    case_pack(&t, tu_int(r, 0, 1), tu_int(r, 0, 1));
    case_run_check(&t, (int32_t)tu_int(r, 1, 2), "random case");
    case_free(&t);
}

/* Every small M x N (all tails of every tile, narrow N) with random K from the list. */
static void test_small_shapes(void **state)
{
    tu_rng r = {11};
    for (int s = 0; s < N_ISAS; s++) {
        if (!runs(k_isas[s])) continue;
        for (int64_t m = 1; m <= 17; m++)
            for (int64_t n = 1; n <= 17; n++)
                one_case(&r, k_isas[s], m, n, k_dims[tu_int(&r, 0, N_DIMS - 1)]);
    }
}

/* Random triples from the whole list, then a few large K (several K blocks, uneven). */
static void test_mixed_shapes(void **state)
{
    tu_rng r = {12};
    for (int s = 0; s < N_ISAS; s++) {
        if (!runs(k_isas[s])) continue;
        for (int c = 0; c < 120; c++)
            one_case(&r, k_isas[s], k_dims[tu_int(&r, 0, N_DIMS - 1)],
                     k_dims[tu_int(&r, 0, N_DIMS - 1)], k_dims[tu_int(&r, 0, N_DIMS - 1)]);
        const int64_t big[][3] = {{33, 65, 1100}, {17, 40, 2049}, {29, 3, 4096}, {70, 33, 4096},
                                  {1, 100, 777},  {200, 1, 1500}, {5, 257, 600}, {20, 700, 1000}};
        for (size_t c = 0; c < sizeof big / sizeof *big; c++)
            one_case(&r, k_isas[s], big[c][0], big[c][1], big[c][2]);
    }
}

/* Each activation over a wide range of inputs (K = 1: C = x * 1, so the epilogue sees x
 * exactly), point by point against the scalar formulas of fused_act.c (gemm_act_scalar): the
 * portable path gives their bits, the vector paths a relative error below 1e-6 where
 * |y| > 1e-30 (absolute below). NaN passes through every activation, as in the scalar code. */
static void test_activations(void **state)
{
    enum { N = 4000 };
    float *x = malloc(N * sizeof(float)), *c = malloc(N * sizeof(float)), one = 1.0f;
    for (int i = 0; i < N; i++) x[i] = -60.0f + 120.0f * (float)i / (N - 1);
    const float special[] = {1e-30f,  1e-7f,  -3e-5f, 110.0f, -110.0f,
                             -0.625f, 0.625f, -3.0f,  3.0f,   NAN};
    memcpy(x, special, sizeof special);
    for (int s = 0; s < N_ISAS; s++) {
        if (!runs(k_isas[s])) continue;
        for (int a = GEMM_ACT_NONE; a <= GEMM_ACT_ELU; a++) {
            gemm_args g = {.isa = k_isas[s],
                           .m = N,
                           .n = 1,
                           .k = 1,
                           .a = x,
                           .lda = 1,
                           .b = &one,
                           .ldb = 1,
                           .c = c,
                           .ldc = 1};
            g.ep.act = (gemm_act)a;
            g.ep.alpha = a == GEMM_ACT_CLIP ? -2.0f : (a == GEMM_ACT_HARD_SIGMOID ? 0.2f : 0.3f);
            g.ep.beta = a == GEMM_ACT_CLIP ? 3.0f : 0.5f;
            assert_int_equal(run_alloc(&g, 1), KILN_OK);
            double worst = 0;
            int at = 0;
            for (int i = 0; i < N; i++) {
                const float want = gemm_act_scalar(x[i], (gemm_act)a, g.ep.alpha, g.ep.beta);
                if (isnan(want) || isnan(c[i])) {
                    if (isnan(want) != isnan(c[i]))
                        fail_msg("isa %s act %d: x = %g gives %g, expected %g",
                                 gemm_isa_name(k_isas[s]), a, x[i], c[i], want);
                    continue;
                }
                if (k_isas[s] == GEMM_ISA_GENERIC && memcmp(&want, &c[i], 4) != 0)
                    fail_msg("generic act %d: x = %.9g gives %.9g, the scalar formula %.9g", a,
                             x[i], c[i], want);
                const double d = fabs((double)c[i] - want);
                const double e = fabs(want) > 1e-30 ? d / fabs(want) : d;
                if (e > worst) worst = e, at = i;
            }
            if (!(worst <= 1e-6))
                fail_msg("isa %s act %d: error %.3g at x = %.9g (got %.9g, expected %.9g)",
                         gemm_isa_name(k_isas[s]), a, worst, x[at], c[at],
                         gemm_act_scalar(x[at], (gemm_act)a, g.ep.alpha, g.ep.beta));
        }
    }
    free(x);
    free(c);
}

/* Results are bit-identical for 1 and 2 threads (and 3: an odd split), on products large
 * enough to be split, with raw and packed operands. */
static void test_threads_bit_identical(void **state)
{
    tu_rng r = {13};
    const int64_t shapes[][3] = {{129, 257, 65}, {257, 63, 129}, {64, 300, 200},
                                 {1000, 2, 300}, {3, 900, 400},  {255, 255, 255}};
    for (int s = 0; s < N_ISAS; s++) {
        if (!runs(k_isas[s])) continue;
        for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++)
            for (int pk = 0; pk < 4; pk++) {
                gcase t;
                case_make(&t, &r, k_isas[s], shapes[c][0], shapes[c][1], shapes[c][2],
                          (gemm_act)tu_int(&r, 0, GEMM_ACT_ELU));
                case_pack(&t, pk & 1, pk & 2);
                case_run_check(&t, 1, "1 thread");
                float *one = malloc(t.c_len * sizeof(float));
                memcpy(one, t.c, t.c_len * sizeof(float));
                for (int32_t th = 2; th <= 3; th++) {
                    case_run(&t, th);
                    if (memcmp(one, t.c, t.c_len * sizeof(float)) != 0)
                        fail_msg("isa %s %lldx%lldx%lld: %d threads differ from 1",
                                 gemm_isa_name(k_isas[s]), (long long)shapes[c][0],
                                 (long long)shapes[c][1], (long long)shapes[c][2], th);
                }
                free(one);
                case_free(&t);
            }
    }
}

/* The AVX2 and AVX-512 paths compute the same FMA chains: equal bits before the
 * activation, raw or packed operands alike. */
static void test_paths_agree(void **state)
{
    const int64_t shapes[][3] = {{1, 1, 1}, {14, 32, 9}, {37, 3, 300}, {65, 129, 700}, {6, 47, 17}};
    for (size_t c = 0; c < sizeof shapes / sizeof *shapes; c++) {
        float *first = NULL;
        const char *first_isa = NULL;
        for (int s = 0; s < N_ISAS; s++) {
            if (k_isas[s] == GEMM_ISA_GENERIC || !runs(k_isas[s])) continue;
            for (int pk = 0; pk < 4; pk++) {
                gcase t;
                tu_rng r = {100 + c}; /* the same operands on every path */
                case_make(&t, &r, k_isas[s], shapes[c][0], shapes[c][1], shapes[c][2],
                          GEMM_ACT_NONE);
                case_pack(&t, pk & 1, pk & 2);
                case_run(&t, 1);
                if (!first) {
                    first = malloc(t.c_len * sizeof(float));
                    memcpy(first, t.c, t.c_len * sizeof(float));
                    first_isa = gemm_isa_name(k_isas[s]);
                } else if (memcmp(first, t.c, t.c_len * sizeof(float)) != 0) {
                    fail_msg("%lldx%lldx%lld: isa %s packA=%d packB=%d differs from %s raw",
                             (long long)shapes[c][0], (long long)shapes[c][1],
                             (long long)shapes[c][2], gemm_isa_name(k_isas[s]), pk & 1,
                             (pk & 2) != 0, first_isa);
                }
                case_free(&t);
            }
        }
        free(first);
    }
}

/* Packing writes the same bytes whatever the buffer held, the bytes work after a copy (as
 * from a plan file), and the header is validated. */
static void test_packed_format(void **state)
{
    tu_rng r = {15};
    for (int s = 0; s < N_ISAS; s++) {
        const gemm_isa isa = k_isas[s];
        if (!runs(isa)) continue;
        gcase t;
        case_make(&t, &r, isa, 37, 45, 1100, GEMM_ACT_RELU);
        const gemm_args raw = t.g;
        case_run(&t, 1);
        float *want = malloc(t.c_len * sizeof(float));
        memcpy(want, t.c, t.c_len * sizeof(float));

        const size_t ab = gemm_pack_a_bytes(isa, 37, 1100), bb = gemm_pack_b_bytes(isa, 1100, 45);
        int32_t mr, nr;
        assert_true(gemm_isa_tile(isa, &mr, &nr));
        assert_int_equal(ab, 64 + (size_t)((37 + mr - 1) / mr * mr) * 1100 * 4);
        assert_int_equal(bb, 64 + (size_t)((45 + nr - 1) / nr * nr) * 1100 * 4);
        uint8_t *p1 = malloc(bb), *p2 = malloc(bb), *copy = malloc(bb + 64);
        memset(p1, 0x00, bb);
        memset(p2, 0xA5, bb);
        assert_int_equal(gemm_pack_b(isa, 1100, 45, t.b, raw.ldb, raw.trans_b, p1, bb), KILN_OK);
        assert_int_equal(gemm_pack_b(isa, 1100, 45, t.b, raw.ldb, raw.trans_b, p2, bb), KILN_OK);
        assert_memory_equal(p1, p2, bb);
        /* the documented layout (gemm.c): K blocks of kb, each all panels of kc x nr */
        uint32_t kb;
        memcpy(&kb, p1 + 20, 4);
        assert_true(kb >= 8 && kb < 1100); /* several K blocks on every path */
        const float *pay = (const float *)(const void *)(p1 + 64);
        const int64_t npad = (45 + nr - 1) / nr * nr;
        for (int64_t k = 0; k < 1100; k++)
            for (int64_t j = 0; j < npad; j++) {
                const int64_t k0 = k - k % kb, kc = 1100 - k0 < kb ? 1100 - k0 : kb;
                const float got = pay[k0 * npad + (j / nr) * kc * nr + (k - k0) * nr + j % nr];
                const float expect =
                    j < 45 ? (raw.trans_b ? t.b[j * raw.ldb + k] : t.b[k * raw.ldb + j]) : 0.0f;
                if (got != expect)
                    fail_msg("packed B (%lld, %lld): %g, expected %g", (long long)k, (long long)j,
                             got, expect);
            }
        /* "serialize": an unaligned copy elsewhere, then run from it */
        memcpy(copy + 4, p1, bb);
        assert_int_equal(gemm_packed_check(copy + 4, bb, isa, GEMM_OPERAND_B, 1100, 45), KILN_OK);
        t.g.b = NULL;
        t.g.b_packed = copy + 4;
        case_run(&t, 2);
        assert_memory_equal(t.c, want, t.c_len * sizeof(float));

        /* validation */
        assert_int_equal(gemm_packed_check(p1, bb - 1, isa, GEMM_OPERAND_B, 1100, 45),
                         KILN_ERR_CORRUPT_PLAN);
        assert_int_equal(gemm_packed_check(p1, bb, isa, GEMM_OPERAND_A, 1100, 45),
                         KILN_ERR_CORRUPT_PLAN);
        assert_int_equal(gemm_packed_check(p1, bb, isa, GEMM_OPERAND_B, 1100, 46),
                         KILN_ERR_CORRUPT_PLAN);
        const gemm_isa other = isa == GEMM_ISA_GENERIC ? GEMM_ISA_AVX2 : GEMM_ISA_GENERIC;
        assert_int_equal(gemm_packed_check(p1, bb, other, GEMM_OPERAND_B, 1100, 45),
                         KILN_ERR_CORRUPT_PLAN);
        assert_non_null(strstr(kiln_last_error(), "isa"));
        for (size_t off = 0; off < 64; off++) {
            memcpy(p2, p1, bb);
            p2[off] ^= 0x40;
            if (gemm_packed_check(p2, bb, isa, GEMM_OPERAND_B, 1100, 45) == KILN_OK)
                fail_msg("a flipped bit at header byte %zu passed", off);
        }
        memcpy(p2, p1, bb);
        p2[10] ^= 1; /* isa field */
        t.g.b_packed = p2;
        assert_int_equal(gemm_run(&t.g, NULL, 0, 1), KILN_ERR_CORRUPT_PLAN);

        /* pack_a round trip too */
        uint8_t *pa = malloc(ab);
        assert_int_equal(gemm_pack_a(isa, 37, 1100, t.a, raw.lda, raw.trans_a, pa, ab), KILN_OK);
        assert_int_equal(gemm_packed_check(pa, ab, isa, GEMM_OPERAND_A, 37, 1100), KILN_OK);
        t.g.b_packed = NULL;
        t.g.b = t.b;
        t.g.a = NULL;
        t.g.a_packed = pa;
        case_run(&t, 1);
        assert_memory_equal(t.c, want, t.c_len * sizeof(float));
        assert_int_equal(gemm_pack_a(isa, 37, 1100, t.a, raw.lda, raw.trans_a, pa, ab - 1),
                         KILN_ERR_INVALID_ARGUMENT);
        free(pa);
        free(p1);
        free(p2);
        free(copy);
        free(want);
        t.g.a_packed = NULL;
        case_free(&t);
    }
}

/* K = 0: C is the epilogue of 0 (or of old C); M = 0 or N = 0: nothing happens. */
static void test_degenerate(void **state)
{
    tu_rng r = {16};
    for (int s = 0; s < N_ISAS; s++) {
        if (!runs(k_isas[s])) continue;
        for (int c = 0; c < 12; c++) {
            gcase t;
            case_make(&t, &r, k_isas[s], tu_int(&r, 1, 40), tu_int(&r, 1, 40), 0,
                      (gemm_act)tu_int(&r, 0, GEMM_ACT_ELU));
            case_pack(&t, c & 1, c & 2);
            case_run_check(&t, 2, "K = 0");
            case_free(&t);
        }
        float c = 7.0f, b[3] = {1, 2, 3};
        gemm_args g = {.isa = k_isas[s],
                       .m = 0,
                       .n = 1,
                       .k = 3,
                       .lda = 3,
                       .b = b,
                       .ldb = 1,
                       .ldc = 1,
                       .c = &c};
        assert_int_equal(run_alloc(&g, 1), KILN_OK);
        assert_true(c == 7.0f);
    }
}

static void test_bad_arguments(void **state)
{
    float a[64] = {0}, b[64] = {0}, c[64] = {0};
    const gemm_isa isa = gemm_isa_best(kiln_cpu_features());
    gemm_args g = {
        .isa = isa, .m = 4, .n = 4, .k = 4, .a = a, .lda = 4, .b = b, .ldb = 4, .c = c, .ldc = 4};
    assert_int_equal(gemm_run(&g, NULL, gemm_scratch_bytes(&g, 1), 1), KILN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(kiln_last_error(), "scratch"));
    float *scratch = malloc(gemm_scratch_bytes(&g, 1));
    gemm_args bad = g;
    bad.lda = 3;
    assert_int_equal(gemm_run(&bad, scratch, gemm_scratch_bytes(&g, 1), 1),
                     KILN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(kiln_last_error(), "row stride 3"));
    bad = g;
    bad.ldc = 2;
    assert_int_equal(gemm_run(&bad, scratch, 1 << 20, 1), KILN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.b = NULL;
    assert_int_equal(gemm_run(&bad, scratch, 1 << 20, 1), KILN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.k = -1;
    assert_int_equal(gemm_run(&bad, scratch, 1 << 20, 1), KILN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.isa = (gemm_isa)9;
    assert_int_equal(gemm_run(&bad, scratch, 1 << 20, 1), KILN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.ep.bias_kind = GEMM_BIAS_ROW;
    assert_int_equal(gemm_run(&bad, scratch, 1 << 20, 1), KILN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.ep.residual = a;
    bad.ep.ldr = 1;
    assert_int_equal(gemm_run(&bad, scratch, 1 << 20, 1), KILN_ERR_INVALID_ARGUMENT);
    bad = g;
    bad.a_packed = a; /* both forms */
    assert_int_equal(gemm_run(&bad, scratch, 1 << 20, 1), KILN_ERR_INVALID_ARGUMENT);
    assert_int_equal(gemm_pack_b_bytes(isa, -1, 4), 0);
    assert_int_equal(gemm_pack_b_bytes(isa, INT64_MAX / 2, INT64_MAX / 2), 0);
    assert_int_equal(gemm_pack_a_bytes((gemm_isa)0, 4, 4), 0);
    assert_int_equal(gemm_run(&g, scratch, gemm_scratch_bytes(&g, 1), 1), KILN_OK);
    /* prepacked both: no scratch at all */
    uint8_t pa[4096], pb[4096];
    assert_int_equal(gemm_pack_a(isa, 4, 4, a, 4, false, pa, sizeof pa), KILN_OK);
    assert_int_equal(gemm_pack_b(isa, 4, 4, b, 4, false, pb, sizeof pb), KILN_OK);
    gemm_args pp = {
        .isa = isa, .m = 4, .n = 4, .k = 4, .a_packed = pa, .b_packed = pb, .c = c, .ldc = 4};
    assert_int_equal(gemm_scratch_bytes(&pp, 4), 0);
    assert_int_equal(gemm_run(&pp, NULL, 0, 4), KILN_OK);
    free(scratch);
}

/* The path choice follows kiln_cpu_features, so KILN_ISA forces each path. */
static void test_isa_choice(void **state)
{
    const uint64_t hw = kiln_cpu_features_hw();
    setenv("KILN_ISA", "portable", 1);
    assert_int_equal(gemm_isa_best(kiln_cpu_features()), GEMM_ISA_GENERIC);
    setenv("KILN_ISA", "generic", 1);
    assert_int_equal(gemm_isa_best(kiln_cpu_features()), GEMM_ISA_GENERIC);
    setenv("KILN_ISA", "avx2", 1);
    assert_int_equal(gemm_isa_best(kiln_cpu_features()),
                     runs(GEMM_ISA_AVX2) ? GEMM_ISA_AVX2 : GEMM_ISA_GENERIC);
    setenv("KILN_ISA", "avx512", 1);
    assert_int_equal(gemm_isa_best(kiln_cpu_features()), gemm_isa_best(hw));
    unsetenv("KILN_ISA");
    assert_int_equal(gemm_isa_best(kiln_cpu_features()), gemm_isa_best(hw));
    assert_string_equal(gemm_isa_name(GEMM_ISA_AVX512), "avx512");
    assert_true(gemm_isa_supported(GEMM_ISA_GENERIC, 0));
    assert_false(gemm_isa_supported(GEMM_ISA_AVX512, KILN_CPU_AVX2 | KILN_CPU_FMA));
    char buf[256];
    kiln_cpu_features_str(hw, buf, sizeof buf);
    print_message("CPU: %s; GEMM paths run here:%s%s%s\n", buf,
                  runs(GEMM_ISA_GENERIC) ? " generic" : "", runs(GEMM_ISA_AVX2) ? " avx2" : "",
                  runs(GEMM_ISA_AVX512) ? " avx512" : "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_choice),
        cmocka_unit_test(test_small_shapes),
        cmocka_unit_test(test_mixed_shapes),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_threads_bit_identical),
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_packed_format),
        cmocka_unit_test(test_degenerate),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
