/* cpu.c - CPU feature detection at run time (cpuid + xgetbv), limited by KILN_ISA. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint64_t detect(void)
{
    unsigned a, b, c, d;
    uint64_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    bool osxsave = (c >> 27) & 1;
    if ((c >> 20) & 1) f |= KILN_CPU_SSE42;
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool ymm = (xcr0 & 6) == 6, zmm = (xcr0 & 0xe6) == 0xe6;
    if (ymm && ((c >> 12) & 1)) f |= KILN_CPU_FMA;
    if (ymm && ((c >> 29) & 1)) f |= KILN_CPU_F16C;
    if (__get_cpuid_max(0, NULL) < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    if (ymm && ((b >> 5) & 1)) f |= KILN_CPU_AVX2;
    if (zmm && ((b >> 16) & 1)) f |= KILN_CPU_AVX512F;
    if (zmm && ((b >> 30) & 1)) f |= KILN_CPU_AVX512BW;
    if (zmm && ((b >> 31) & 1)) f |= KILN_CPU_AVX512VL;
    if (zmm && ((c >> 11) & 1)) f |= KILN_CPU_AVX512VNNI;
    __cpuid_count(7, 1, a, b, c, d);
    if (zmm && ((a >> 5) & 1)) f |= KILN_CPU_AVX512BF16;
    return f;
}
#else
static uint64_t detect(void) { return 0; }
#endif

/* Detected once: cpuid is slow under a hypervisor (it traps), and kernels check this before
 * running ISA code. Bit 63 marks "detected"; racing first calls store the same value. */
static _Atomic uint64_t g_hw;

uint64_t kiln_cpu_features_hw(void)
{
    uint64_t f = atomic_load_explicit(&g_hw, memory_order_relaxed);
    if (!f) {
        f = detect() | (1ull << 63);
        atomic_store_explicit(&g_hw, f, memory_order_relaxed);
    }
    return f & ~(1ull << 63);
}

uint64_t kiln_cpu_features(void)
{
    uint64_t f = kiln_cpu_features_hw();
    /* KILN_ISA forces a kernel path down (never up): "portable" (or "generic") hides every
     * feature, "avx2" hides AVX-512, "avx512" keeps all that was detected. Read on every
     * call, not cached, so tests can switch paths with setenv. */
    const char *isa = getenv("KILN_ISA");
    if (isa && *isa) {
        if (strcmp(isa, "portable") == 0 || strcmp(isa, "generic") == 0)
            f = 0;
        else if (strcmp(isa, "avx2") == 0)
            f &= KILN_CPU_SSE42 | KILN_CPU_AVX2 | KILN_CPU_FMA | KILN_CPU_F16C;
    }
    return f;
}

void kiln_cpu_features_str(uint64_t f, char *buf, size_t n)
{
    static const char *names[] = {"sse4.2",   "avx2",       "fma",        "avx512f", "avx512bw",
                                  "avx512vl", "avx512vnni", "avx512bf16", "f16c"};
    size_t off = 0;
    buf[0] = 0;
    for (unsigned i = 0; i < sizeof names / sizeof *names; i++) {
        if (!(f & (1ull << i))) continue;
        int w = snprintf(buf + off, n - off, off ? " %s" : "%s", names[i]);
        if (w < 0 || (size_t)w >= n - off) break;
        off += (size_t)w;
    }
    if (!off) snprintf(buf, n, "none");
}

/* Threads of the runs under way, each run's own (its caller's) thread included. */
static _Atomic int32_t g_busy;

int32_t kiln_threads_acquire(int32_t want)
{
    int32_t busy = atomic_fetch_add(&g_busy, 1) + 1, hw = kiln_cpu_threads();
    if (want <= 1) return 1;
    for (;;) {
        int32_t free = hw - busy, extra = want - 1;
        int32_t take = extra < free ? extra : (free > 0 ? free : 0);
        if (take == 0) return 1;
        if (atomic_compare_exchange_weak(&g_busy, &busy, busy + take)) return 1 + take;
    }
}

void kiln_threads_release(int32_t got) { atomic_fetch_sub(&g_busy, got > 1 ? got : 1); }

void kiln_cpu_model(char *buf, size_t n)
{
    if (!n) return;
    snprintf(buf, n, "unknown");
#if defined(__x86_64__) || defined(__i386__)
    unsigned r[12];
    if (__get_cpuid_max(0x80000000u, NULL) < 0x80000004u) return;
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002u + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char s[49];
    memcpy(s, r, 48);
    s[48] = 0;
    /* trim the padding spaces cpuid puts around the name */
    char *p = s, *e = s + strlen(s);
    while (*p == ' ') p++;
    while (e > p && e[-1] == ' ') e--;
    *e = 0;
    if (*p) snprintf(buf, n, "%s", p);
#endif
}

uint64_t kiln_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int32_t kiln_cpu_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}
