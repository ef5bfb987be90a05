/* fma_peak.h - the FMA-throughput loops of bench_fma_peak, one per ISA; each file is
 * compiled with its own ISA flags and only called when cpuid says the CPU has them. */
#ifndef KILN_BENCH_FMA_PEAK_H
#define KILN_BENCH_FMA_PEAK_H

#include <stdint.h>

/* Each runs `iters` iterations of FMA_PEAK_*_FLOPS floating-point operations (an FMA
 * counts 2) on independent accumulators and returns their sum, so the work cannot be
 * optimized away. */
#define FMA_PEAK_AVX512_FLOPS (16 * 16 * 2) /* 16 accumulators of 16 lanes */
#define FMA_PEAK_AVX2_FLOPS   (12 * 8 * 2)  /* 12 accumulators of 8 lanes */

float fma_peak_avx512(int64_t iters);
float fma_peak_avx2(int64_t iters);

#endif
