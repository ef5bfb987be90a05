/* fma_peak.c - bench_fma_peak: the machine's FP32 limit, measured as FMA throughput on
 * independent accumulators, for 1 thread and for N threads (pthreads). bench.py divides
 * a network's effective GFLOP/s by it. The loop's ISA is chosen at run time by cpuid
 * (kiln_cpu_features, so KILN_ISA=avx2 / portable forces the narrower loops). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "fma_peak.h"

#define MAX_THREADS 1024
#define MAX_COUNTS  64

/* The loop for CPUs without FMA: scalar multiply-adds, 2 flops each. */
#define PORTABLE_ACCS           8
#define FMA_PEAK_PORTABLE_FLOPS (PORTABLE_ACCS * 2)

static float fma_peak_portable(int64_t iters)
{
    float c[PORTABLE_ACCS];
    for (int i = 0; i < PORTABLE_ACCS; i++) c[i] = (float)i;
    for (int64_t n = 0; n < iters; n++)
        for (int i = 0; i < PORTABLE_ACCS; i++) c[i] = c[i] * 0.999999f + 1e-6f;
    float s = 0;
    for (int i = 0; i < PORTABLE_ACCS; i++) s += c[i];
    return s;
}

typedef struct {
    const char *isa;
    int vector_bits;
    int flops_per_iter;
    float (*loop)(int64_t iters);
} kernel;

static kernel pick_kernel(void)
{
    uint64_t f = kiln_cpu_features();
#ifdef KILN_BENCH_X86
    if (f & KILN_CPU_AVX512F)
        return (kernel){"avx512f", 512, FMA_PEAK_AVX512_FLOPS, fma_peak_avx512};
    if ((f & KILN_CPU_AVX2) && (f & KILN_CPU_FMA))
        return (kernel){"avx2+fma", 256, FMA_PEAK_AVX2_FLOPS, fma_peak_avx2};
#else
    (void)f;
#endif
    return (kernel){"portable", 32, FMA_PEAK_PORTABLE_FLOPS, fma_peak_portable};
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    const kernel *k;
    int64_t iters;
    pthread_barrier_t *start;
    double t0, t1;
    volatile float sink;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->start);
    w->t0 = now_s();
    w->sink = w->k->loop(w->iters);
    w->t1 = now_s();
    return NULL;
}

/* GFLOP/s of `threads` threads each running `iters` iterations: all the work over the
 * wall time from the first start to the last finish. Negative on a thread error. */
static double run_threads(const kernel *k, int threads, int64_t iters)
{
    static worker w[MAX_THREADS];
    static pthread_t tid[MAX_THREADS];
    pthread_barrier_t start;
    if (pthread_barrier_init(&start, NULL, (unsigned)threads) != 0) return -1;
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.k = k, .iters = iters, .start = &start};
        int rc = i > 0 ? pthread_create(&tid[i], NULL, work, &w[i]) : 0;
        if (rc != 0) { /* the started threads would wait at the barrier forever */
            fprintf(stderr, "bench_fma_peak: cannot start thread %d of %d: %s\n", i + 1, threads,
                    strerror(rc));
            exit(1);
        }
    }
    work(&w[0]);
    for (int i = 1; i < threads; i++) pthread_join(tid[i], NULL);
    pthread_barrier_destroy(&start);
    double t0 = w[0].t0, t1 = w[0].t1;
    for (int i = 1; i < threads; i++) {
        if (w[i].t0 < t0) t0 = w[i].t0;
        if (w[i].t1 > t1) t1 = w[i].t1;
    }
    return (double)threads * (double)iters * k->flops_per_iter / (t1 - t0) * 1e-9;
}

/* Iterations one thread runs in about `seconds`. */
static int64_t calibrate(const kernel *k, double seconds)
{
    int64_t iters = 1 << 12;
    for (;;) {
        double t = now_s();
        volatile float sink = k->loop(iters);
        (void)sink;
        t = now_s() - t;
        if (t > 0.02 || iters > ((int64_t)1 << 40))
            return (int64_t)((double)iters * seconds / t) + 1;
        iters *= 4;
    }
}

static int parse_counts(const char *s, int *counts)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > MAX_THREADS || n == MAX_COUNTS) return -1;
        counts[n++] = (int)v;
        s = end;
        if (*s == ',')
            s++;
        else if (*s)
            return -1;
    }
    return n;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: bench_fma_peak [--threads N,M,...] [--seconds S] [--repeat R] [--json]\n"
                "  FP32 FMA throughput (GFLOP/s) for each thread count (default: 1 and every\n"
                "  hardware thread); the best of R runs of about S seconds each (0.3 s, 3).\n");
}

int main(int argc, char **argv)
{
    int counts[MAX_COUNTS], n_counts = 0, repeat = 3, json = 0;
    double seconds = 0.3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--threads") == 0 && v) {
            if ((n_counts = parse_counts(v, counts)) <= 0) {
                fprintf(stderr,
                        "bench_fma_peak: --threads wants counts 1..%d like 1,2 (got '%s')\n",
                        MAX_THREADS, v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--seconds") == 0 && v) {
            seconds = strtod(v, NULL);
            if (!(seconds > 0 && seconds < 60)) {
                fprintf(stderr, "bench_fma_peak: --seconds wants 0 < S < 60 (got '%s')\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--repeat") == 0 && v) {
            repeat = atoi(v);
            if (repeat < 1 || repeat > 100) {
                fprintf(stderr, "bench_fma_peak: --repeat wants 1..100 (got '%s')\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench_fma_peak: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    int hw = kiln_cpu_threads();
    if (n_counts == 0) {
        counts[n_counts++] = 1;
        if (hw > 1) counts[n_counts++] = hw > MAX_THREADS ? MAX_THREADS : hw;
    }
    kernel k = pick_kernel();
    int64_t iters = calibrate(&k, seconds);
    if (json)
        printf("{\"isa\": \"%s\", \"vector_bits\": %d, \"flops_per_iteration\": %d, "
               "\"hardware_threads\": %d, \"seconds\": %g, \"repeat\": %d, \"results\": [",
               k.isa, k.vector_bits, k.flops_per_iter, hw, seconds, repeat);
    else
        printf("FMA loop: %s (%d-bit vectors), %d hardware threads; best of %d runs of %.2g s\n",
               k.isa, k.vector_bits, hw, repeat, seconds);
    for (int c = 0; c < n_counts; c++) {
        double best = 0;
        for (int r = 0; r < repeat; r++) {
            double g = run_threads(&k, counts[c], iters);
            if (g < 0) {
                fprintf(stderr, "bench_fma_peak: cannot set up a barrier for %d threads\n",
                        counts[c]);
                return 1;
            }
            if (g > best) best = g;
        }
        if (json)
            printf("%s{\"threads\": %d, \"gflops\": %.2f, \"gflops_per_thread\": %.2f}",
                   c ? ", " : "", counts[c], best, best / counts[c]);
        else
            printf("threads %d: %.1f GFLOP/s (%.1f per thread)\n", counts[c], best,
                   best / counts[c]);
    }
    if (json) printf("]}\n");
    return 0;
}
