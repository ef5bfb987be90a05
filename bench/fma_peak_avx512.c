/* fma_peak_avx512.c - the FMA-throughput loop on 512-bit vectors (built with -mavx512f).
 * 16 independent accumulators cover FMA latency (4 cycles) times two FMA ports. */
#include <immintrin.h>

#include "fma_peak.h"

#define FMA16(op)                                                                                  \
    op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11) op(12) op(13) op(14) \
        op(15)

float fma_peak_avx512(int64_t iters)
{
    /* acc = acc * a + b converges to b / (1 - a): no overflow, no denormals */
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
#define DECL(i) __m512 c##i = _mm512_set1_ps((float)(i));
    FMA16(DECL)
#undef DECL
    for (int64_t n = 0; n < iters; n++) {
#define STEP(i) c##i = _mm512_fmadd_ps(c##i, a, b);
        FMA16(STEP)
#undef STEP
    }
    __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, c##i);
    FMA16(SUM)
#undef SUM
    return _mm512_reduce_add_ps(s);
}
