/* fma_peak_avx2.c - the FMA-throughput loop on 256-bit vectors (built with -mavx2 -mfma).
 * 12 accumulators plus the two operands fit the 16 ymm registers and cover FMA latency
 * (4-5 cycles) times two FMA ports. */
#include <immintrin.h>

#include "fma_peak.h"

#define FMA12(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11)

float fma_peak_avx2(int64_t iters)
{
    /* acc = acc * a + b converges to b / (1 - a): no overflow, no denormals */
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
#define DECL(i) __m256 c##i = _mm256_set1_ps((float)(i));
    FMA12(DECL)
#undef DECL
    for (int64_t n = 0; n < iters; n++) {
#define STEP(i) c##i = _mm256_fmadd_ps(c##i, a, b);
        FMA12(STEP)
#undef STEP
    }
    __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, c##i);
    FMA12(SUM)
#undef SUM
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    float t = 0;
    for (int i = 0; i < 8; i++) t += lanes[i];
    return t;
}
