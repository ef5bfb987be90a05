/* transformer_avx2.c - the AVX2 + FMA routines of the transformer kernels: a softmax row (scale,
 * mask, max, the vector exp of gemm_vact.h, sum) for kiln.Attention and a 2-D transpose of
 * 4-byte elements in 8x8 register tiles for Transpose. Built with AVX2/FMA flags (CMake, this
 * file only) and called only when the CPU has both. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/transformer_impl.h"

/* ---- the vector math of gemm_vact.h on ymm (the GEMM epilogue's exp) ---- */
#include "backends/cpu/vec_avx2.h"
/* written in the operations above */
#include "backends/cpu/gemm/gemm_vact.h"

/* All-ones in the lanes below n (n >= 8: all), for maskload / maskstore. */
static inline __m256i lanes(int64_t n)
{
    const int v = n >= 8 ? 8 : (int)n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hmax(__m256 v)
{
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

static inline float hsum(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

/* ---- softmax row ---- */

float tf_softmax_row_avx2(float *s, int64_t n, const tf_softmax *p)
{
    const __m256 mul = _mm256_set1_ps(p->mul), div = _mm256_set1_ps(p->div);
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    const bool bcast = p->mask && p->mask_step == 0;
    const __m256 mconst = _mm256_set1_ps(bcast ? p->mask[0] : 0.0f);
    __m256 mx = ninf;
    for (int64_t j = 0; j < n; j += 8) {
        const __m256i mk = lanes(n - j);
        __m256 x = _mm256_mul_ps(_mm256_maskload_ps(s + j, mk), mul);
        if (p->has_div) x = _mm256_div_ps(x, div);
        if (p->mask) x = _mm256_add_ps(x, bcast ? mconst : _mm256_maskload_ps(p->mask + j, mk));
        _mm256_maskstore_ps(s + j, mk, x);
        /* lanes past the row count as -inf; a NaN score may be lost from the max, but its own
         * exponential is NaN and so the sum */
        mx = _mm256_max_ps(_mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(mk)), mx);
    }
    const __m256 m = _mm256_set1_ps(hmax(mx));
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m256 e0 = vact_exp(_mm256_sub_ps(_mm256_loadu_ps(s + j), m));
        const __m256 e1 = vact_exp(_mm256_sub_ps(_mm256_loadu_ps(s + j + 8), m));
        _mm256_storeu_ps(s + j, e0);
        _mm256_storeu_ps(s + j + 8, e1);
        acc0 = _mm256_add_ps(acc0, e0);
        acc1 = _mm256_add_ps(acc1, e1);
    }
    for (; j < n; j += 8) {
        const __m256i mk = lanes(n - j);
        const __m256 e = vact_exp(_mm256_sub_ps(_mm256_maskload_ps(s + j, mk), m));
        _mm256_maskstore_ps(s + j, mk, e);
        acc0 = _mm256_add_ps(acc0, _mm256_and_ps(e, _mm256_castsi256_ps(mk)));
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/* ---- 2-D transpose ---- */

/* r[l] lane t <- r[t] lane l. */
static inline void transpose8(__m256 r[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
    r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* Strips of 8 output rows, tiles of 8 x 8 along them (32-byte lines in and out); edge tiles
 * through masked loads and stores. Shuffles move bits unchanged, so float registers carry any
 * 4-byte type. */
void tf_transpose32_avx2(const uint32_t *in, int64_t ldi, uint32_t *out, int64_t ldo, int64_t rows,
                         int64_t cols)
{
    for (int64_t a0 = 0; a0 < rows; a0 += 8) {
        const int64_t na = rows - a0 < 8 ? rows - a0 : 8;
        const __m256i ma = lanes(na);
        for (int64_t b0 = 0; b0 < cols; b0 += 8) {
            const int64_t nb = cols - b0 < 8 ? cols - b0 : 8;
            const uint32_t *src = in + b0 * ldi + a0;
            uint32_t *dst = out + a0 * ldo + b0;
            __m256 r[8];
            if (na == 8 && nb == 8) {
                for (int t = 0; t < 8; t++) r[t] = _mm256_loadu_ps((const float *)(src + t * ldi));
                transpose8(r);
                for (int l = 0; l < 8; l++) _mm256_storeu_ps((float *)(dst + l * ldo), r[l]);
                continue;
            }
            for (int t = 0; t < 8; t++)
                r[t] = t < nb ? _mm256_maskload_ps((const float *)(src + t * ldi), ma)
                              : _mm256_setzero_ps();
            transpose8(r);
            const __m256i mb = lanes(nb);
            for (int l = 0; l < na; l++) _mm256_maskstore_ps((float *)(dst + l * ldo), mb, r[l]);
        }
    }
}
