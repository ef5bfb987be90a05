/* gemm_bench.c - microbenchmark of the CPU GEMM engine (src/backends/cpu/gemm): measures the
 * machine's FP32 FMA limit per ISA path with an FMA-throughput loop, then GFLOP/s and share of
 * that limit for square and layer-shaped products on 1 and 2 threads (median of many runs).
 * Prints a table; --json PATH also writes the numbers. Built as bench_gemm, not run by ctest.
 *   bench_gemm [--json PATH] [--isa avx512|avx2|generic] [--shape TEXT: names containing it]
 *              [--time SECONDS per case] [--clock wall|cpu (1 thread only)] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "backends/cpu/gemm/gemm.h"

/* --clock cpu: this thread's CPU time instead of the wall clock, for 1-thread runs on a
 * machine shared with other work (time the thread spends descheduled does not count;
 * caches and memory are still shared). */
static clockid_t g_clock = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec t;
    clock_gettime(g_clock, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the FMA limit: independent FMA chains, enough to cover latency x ports ---- */

#if defined(__x86_64__)
/* Named accumulators (an array would live in memory around the asm barrier), each FMA
 * chain independent: latency x ports of FMAs in flight. */
#define CHAINS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

/* 12 chains of zmm FMAs (4-cycle latency x 2 ports needs 8). */
__attribute__((target("avx512f"))) static float fma_loop_avx512(long iters)
{
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
#define DECL(i) __m512 a##i = _mm512_set1_ps((float)i);
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, x, y);
#define SUM(i)  s = _mm512_add_ps(s, a##i);
    CHAINS12(DECL)
    for (long it = 0; it < iters; it++) {
        CHAINS12(STEP)
        /* keeps the chains in registers and the loop from being folded */
        __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));
        __asm__ volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));
    }
    __m512 s = _mm512_setzero_ps();
    CHAINS12(SUM)
    return _mm512_reduce_add_ps(s);
#undef DECL
#undef STEP
#undef SUM
}

/* 12 chains of ymm FMAs (AVX2 has 16 registers). */
__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters)
{
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
#define DECL(i) __m256 a##i = _mm256_set1_ps((float)i);
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, x, y);
#define SUM(i)  s = _mm256_add_ps(s, a##i);
    CHAINS12(DECL)
    for (long it = 0; it < iters; it++) {
        CHAINS12(STEP)
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
        __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    __m256 s = _mm256_setzero_ps();
    CHAINS12(SUM)
    float o[8];
    _mm256_storeu_ps(o, s);
    return o[0] + o[7];
#undef DECL
#undef STEP
#undef SUM
}

/* The portable path has no FMA: 12 chains of SSE2 multiply then add (2 flops per lane). */
static float fma_loop_generic(long iters)
{
    const __m128 x = _mm_set1_ps(0.999999f), y = _mm_set1_ps(1e-7f);
#define DECL(i) __m128 a##i = _mm_set1_ps((float)i);
#define STEP(i) a##i = _mm_add_ps(_mm_mul_ps(a##i, x), y);
#define SUM(i)  s = _mm_add_ps(s, a##i);
    CHAINS12(DECL)
    for (long it = 0; it < iters; it++) {
        CHAINS12(STEP)
        __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
        __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
    }
    __m128 s = _mm_setzero_ps();
    CHAINS12(SUM)
    return _mm_cvtss_f32(s);
#undef DECL
#undef STEP
#undef SUM
}
#endif

static volatile float g_sink;

/* Flops of one loop iteration and the loop, for each path. */
static double fma_once(gemm_isa isa, long iters)
{
#if defined(__x86_64__)
    switch (isa) {
    case GEMM_ISA_AVX512: g_sink += fma_loop_avx512(iters); return 12.0 * 16 * 2 * iters;
    case GEMM_ISA_AVX2: g_sink += fma_loop_avx2(iters); return 12.0 * 8 * 2 * iters;
    case GEMM_ISA_GENERIC: g_sink += fma_loop_generic(iters); return 12.0 * 4 * 2 * iters;
    }
#endif
    return 0;
}

/* The best GFLOP/s of the loop over `reps` runs on `threads` threads at once (the total): a
 * limit is what the machine reaches, and on a shared machine other work only lowers it. */
static double fma_limit(gemm_isa isa, int threads, int reps)
{
    const long iters = 20 * 1000 * 1000;
    double r[64];
    for (int k = 0; k < reps; k++) {
        double flops = 0;
        const double t0 = now();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        flops += fma_once(isa, iters);
#else
        for (int i = 0; i < threads; i++) flops += fma_once(isa, iters);
#endif
        r[k] = flops / (now() - t0) / 1e9;
    }
    qsort(r, (size_t)reps, sizeof *r, cmp_double);
    return r[reps - 1];
}

/* ---- GEMM cases ---- */

typedef enum pack_mode { PACK_NONE, PACK_A, PACK_B } pack_mode;
static const char *const k_mode_names[] = {"raw", "A packed", "B packed"};

typedef struct shape {
    const char *name;
    int64_t m, n, k;
    pack_mode mode; /* which operand holds the weights */
} shape;

static const shape k_shapes[] = {
    {"square 256", 256, 256, 256, PACK_B},
    {"square 512", 512, 512, 512, PACK_B},
    {"square 1024", 1024, 1024, 1024, PACK_B},
    {"square 1024 raw", 1024, 1024, 1024, PACK_NONE},
    {"square 2048", 2048, 2048, 2048, PACK_B},
    {"conv 3x3 64ch 56x56", 64, 3136, 576, PACK_A},
    {"conv 3x3 256ch 28x28", 256, 784, 1152, PACK_A},
    {"fc batch 1 (W x)", 1000, 1, 2048, PACK_A},
    {"fc batch 1 (x W^T)", 1, 1000, 2048, PACK_B},
    {"transformer 128x128x768", 128, 128, 768, PACK_B},
    {"transformer 128x3072x768", 128, 3072, 768, PACK_B},
};
#define N_SHAPES ((int)(sizeof k_shapes / sizeof *k_shapes))

typedef struct result {
    double median_s, best_s;
    int reps;
} result;

/* 64-byte aligned, as plans keep weights and contexts keep activations: a packed B at
 * malloc's 16-byte alignment has every 64-byte load straddle two cache lines (measured:
 * -10% at 1024^3 on AVX-512). */
static void *xmalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 1) != 0) p = NULL;
    if (!p) {
        fprintf(stderr, "bench_gemm: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* Times gemm_run: warm-up, then repetitions until `budget` seconds (at least 5). */
static int time_case(gemm_isa isa, const shape *s, int threads, double budget, result *out)
{
    const int64_t m = s->m, n = s->n, k = s->k;
    float *a = xmalloc((size_t)(m * k) * sizeof(float));
    float *b = xmalloc((size_t)(k * n) * sizeof(float));
    float *c = xmalloc((size_t)(m * n) * sizeof(float));
    float *bias = xmalloc((size_t)(m > n ? m : n) * sizeof(float));
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (int64_t i = 0; i < k * n; i++) b[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    for (int64_t i = 0; i < (m > n ? m : n); i++) bias[i] = 0.01f * (float)(i % 7);
    gemm_args g = {
        .isa = isa, .m = m, .n = n, .k = k, .a = a, .lda = k, .b = b, .ldb = n, .c = c, .ldc = n};
    void *packed = NULL;
    if (s->mode == PACK_A) {
        const size_t bytes = gemm_pack_a_bytes(isa, m, k);
        packed = xmalloc(bytes);
        if (gemm_pack_a(isa, m, k, a, k, false, packed, bytes)) goto fail;
        g.a = NULL;
        g.a_packed = packed;
        g.ep.bias_kind = GEMM_BIAS_ROW; /* conv: one bias per output channel */
    } else if (s->mode == PACK_B) {
        const size_t bytes = gemm_pack_b_bytes(isa, k, n);
        packed = xmalloc(bytes);
        if (gemm_pack_b(isa, k, n, b, n, false, packed, bytes)) goto fail;
        g.b = NULL;
        g.b_packed = packed;
        g.ep.bias_kind = GEMM_BIAS_COL;
    }
    g.ep.bias = bias;
    const size_t sbytes = gemm_scratch_bytes(&g, threads);
    void *scratch = sbytes ? xmalloc(sbytes) : NULL;
    static double times[1000];
    int reps = 0;
    double total = 0;
    for (int w = 0; w < 2; w++)
        if (gemm_run(&g, scratch, sbytes, threads)) goto fail_scratch;
    while (reps < 1000 && (reps < 5 || total < budget)) {
        const double t0 = now();
        gemm_run(&g, scratch, sbytes, threads);
        times[reps] = now() - t0;
        total += times[reps++];
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    out->median_s = times[reps / 2];
    out->best_s = times[0];
    out->reps = reps;
    free(scratch);
    free(packed);
    free(a);
    free(b);
    free(c);
    free(bias);
    return 0;
fail_scratch:
    free(scratch);
fail:
    fprintf(stderr, "bench_gemm: %s\n", kiln_last_error());
    free(packed);
    free(a);
    free(b);
    free(c);
    free(bias);
    return 1;
}

/* CPU time the process burns during a 100 ms sleep right after a 2-thread GEMM: libgomp's
 * idle workers spin for a while (OMP_WAIT_POLICY, GOMP_SPINCOUNT) before they sleep. */
static double spin_after_region(gemm_isa isa)
{
    result r;
    const shape s = {"spin", 256, 256, 256, PACK_B};
    if (time_case(isa, &s, 2, 0.0, &r)) return -1;
    const double c0 = cpu_now();
    const struct timespec d = {0, 100 * 1000 * 1000};
    nanosleep(&d, NULL);
    return (cpu_now() - c0) * 1e3;
}

int main(int argc, char **argv)
{
    const char *json_path = NULL, *only = NULL, *shape_filter = NULL;
    double budget = 0.4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json_path = argv[++i];
        else if (strcmp(argv[i], "--isa") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc)
            shape_filter = argv[++i];
        else if (strcmp(argv[i], "--clock") == 0 && i + 1 < argc &&
                 (strcmp(argv[i + 1], "cpu") == 0 || strcmp(argv[i + 1], "wall") == 0))
            g_clock = strcmp(argv[++i], "cpu") == 0 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
        else if (strcmp(argv[i], "--time") == 0 && i + 1 < argc)
            budget = atof(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--json PATH] [--isa avx512|avx2|generic] [--shape TEXT] [--time S] "
                    "[--clock wall|cpu]\n",
                    argv[0]);
            return 2;
        }
    }
    const uint64_t feats = kiln_cpu_features();
    char fs[256];
    kiln_cpu_features_str(feats, fs, sizeof fs);
    FILE *js = NULL;
    if (json_path && !(js = fopen(json_path, "w"))) {
        fprintf(stderr, "bench_gemm: cannot write %s\n", json_path);
        return 1;
    }
    printf("CPU features: %s; %d hardware threads\n", fs, kiln_cpu_threads());
    printf("Times: %s, median of repetitions filling %.2f s per case (the machine may be "
           "shared: medians, and the best run for reference). Share of the limit: median GFLOP/s "
           "over the FMA loop's best on as many threads.\n\n",
           g_clock == CLOCK_MONOTONIC ? "wall clock" : "thread CPU time", budget);
    if (js)
        fprintf(js, "{\n  \"cpu_features\": \"%s\",\n  \"clock\": \"%s\",\n  \"paths\": [\n", fs,
                g_clock == CLOCK_MONOTONIC ? "wall" : "thread_cpu");

    const gemm_isa isas[] = {GEMM_ISA_AVX512, GEMM_ISA_AVX2, GEMM_ISA_GENERIC};
    bool first_isa = true;
    for (int p = 0; p < 3; p++) {
        const gemm_isa isa = isas[p];
        if (!gemm_isa_supported(isa, feats)) continue;
        if (only && strcmp(only, gemm_isa_name(isa)) != 0) continue;
        const bool two = g_clock == CLOCK_MONOTONIC;
        const double lim1 = fma_limit(isa, 1, 9), lim2 = two ? fma_limit(isa, 2, 9) : 0;
        int32_t mr, nr;
        gemm_isa_tile(isa, &mr, &nr);
        printf("== %s (%dx%d tiles): FMA limit %.1f GFLOP/s on 1 thread", gemm_isa_name(isa), mr,
               nr, lim1);
        if (two) printf(", %.1f on 2", lim2);
        printf(" ==\n");
        printf("%-26s %5s %5s %5s %-9s %3s %9s %9s %6s %9s\n", "shape", "M", "N", "K", "weights",
               "thr", "median ms", "GFLOP/s", "limit", "best GF/s");
        if (js)
            fprintf(js,
                    "%s    {\"isa\": \"%s\", \"tile\": \"%dx%d\", \"fma_limit_gflops\": "
                    "{\"1\": %.2f, \"2\": %.2f}, \"cases\": [\n",
                    first_isa ? "" : ",\n", gemm_isa_name(isa), mr, nr, lim1, lim2);
        first_isa = false;
        bool first_case = true;
        for (int si = 0; si < N_SHAPES; si++) {
            const shape *s = &k_shapes[si];
            if (shape_filter && !strstr(s->name, shape_filter)) continue;
            /* the portable path is ~10x slower: skip the largest product */
            if (isa == GEMM_ISA_GENERIC && s->m * s->n * s->k > (int64_t)1 << 30) continue;
            for (int threads = 1; threads <= (g_clock == CLOCK_MONOTONIC ? 2 : 1); threads++) {
                result r;
                if (time_case(isa, s, threads, budget, &r)) return 1;
                const double flops = 2.0 * (double)s->m * (double)s->n * (double)s->k;
                const double gf = flops / r.median_s / 1e9, best = flops / r.best_s / 1e9;
                const double lim = threads == 1 ? lim1 : lim2;
                printf("%-26s %5lld %5lld %5lld %-9s %3d %9.3f %9.1f %5.1f%% %9.1f\n", s->name,
                       (long long)s->m, (long long)s->n, (long long)s->k, k_mode_names[s->mode],
                       threads, r.median_s * 1e3, gf, 100.0 * gf / lim, best);
                fflush(stdout);
                if (js)
                    fprintf(js,
                            "%s      {\"shape\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, "
                            "\"weights\": \"%s\", \"threads\": %d, \"reps\": %d, "
                            "\"median_s\": %.9f, \"best_s\": %.9f, \"gflops\": %.3f, "
                            "\"gflops_best\": %.3f, \"share_of_limit\": %.4f}",
                            first_case ? "" : ",\n", s->name, (long long)s->m, (long long)s->n,
                            (long long)s->k, k_mode_names[s->mode], threads, r.reps, r.median_s,
                            r.best_s, gf, best, gf / lim);
                first_case = false;
            }
        }
        const double after1 = fma_limit(isa, 1, 9), after2 = two ? fma_limit(isa, 2, 9) : 0;
        printf("FMA limit measured again after the table: %.1f GFLOP/s on 1 thread", after1);
        if (two) printf(", %.1f on 2", after2);
        printf("\n");
        const double spin = spin_after_region(isa);
        printf("CPU time burnt during a 100 ms sleep after a 2-thread GEMM: %.1f ms "
               "(libgomp's idle spinning)\n\n",
               spin);
        if (js)
            fprintf(js,
                    "\n    ], \"fma_limit_after_gflops\": {\"1\": %.2f, \"2\": %.2f}, "
                    "\"spin_ms_per_100ms_sleep\": %.2f}",
                    after1, after2, spin);
    }
    if (js) {
        fprintf(js, "\n  ]\n}\n");
        fclose(js);
    }
    return 0;
}
