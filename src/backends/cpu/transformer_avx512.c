/* transformer_avx512.c - the AVX-512 routines of the transformer kernels: a softmax row (scale,
 * mask, max, the vector exp of gemm_vact.h, sum) for kiln.Attention and a 2-D transpose of
 * 4-byte elements in 16x16 register tiles for Transpose. Built with AVX-512 flags (CMake, this
 * file only) and called only when the CPU has AVX-512 F. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/transformer_impl.h"

/* ---- the vector math of gemm_vact.h on zmm (the GEMM epilogue's exp) ---- */
#include "backends/cpu/vec_avx512.h"
/* written in the operations above */
#include "backends/cpu/gemm/gemm_vact.h"

/* The lanes below n (n <= 16: that many, more: all). */
static inline __mmask16 lanes(int64_t n)
{
    return n >= 16 ? 0xFFFF : (__mmask16)((1u << (n > 0 ? n : 0)) - 1u);
}

/* ---- softmax row ---- */

float tf_softmax_row_avx512(float *s, int64_t n, const tf_softmax *p)
{
    const __m512 mul = _mm512_set1_ps(p->mul), div = _mm512_set1_ps(p->div);
    const bool bcast = p->mask && p->mask_step == 0;
    const __m512 mconst = _mm512_set1_ps(bcast ? p->mask[0] : 0.0f);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int64_t j = 0; j < n; j += 16) {
        const __mmask16 mk = lanes(n - j);
        __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, s + j), mul);
        if (p->has_div) x = _mm512_div_ps(x, div);
        if (p->mask) x = _mm512_add_ps(x, bcast ? mconst : _mm512_maskz_loadu_ps(mk, p->mask + j));
        _mm512_mask_storeu_ps(s + j, mk, x);
        mx = _mm512_mask_max_ps(mx, mk, x, mx);
    }
    /* a NaN score may be lost from the max, but its own exponential is NaN and so the sum */
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 32 <= n; j += 32) {
        const __m512 e0 = vact_exp(_mm512_sub_ps(_mm512_loadu_ps(s + j), m));
        const __m512 e1 = vact_exp(_mm512_sub_ps(_mm512_loadu_ps(s + j + 16), m));
        _mm512_storeu_ps(s + j, e0);
        _mm512_storeu_ps(s + j + 16, e1);
        acc0 = _mm512_add_ps(acc0, e0);
        acc1 = _mm512_add_ps(acc1, e1);
    }
    for (; j < n; j += 16) {
        const __mmask16 mk = lanes(n - j);
        const __m512 e = vact_exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, s + j), m));
        _mm512_mask_storeu_ps(s + j, mk, e);
        acc0 = _mm512_mask_add_ps(acc0, mk, acc0, e);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* ---- 2-D transpose ---- */

/* Strips of 16 output rows, tiles of 16 x 16 along them: each tile reads 16 input lines of 64
 * bytes and writes 16 output lines of 64 bytes, so every cache line is touched once. Shuffles
 * move bits unchanged, so float registers carry any 4-byte type. */
void tf_transpose32_avx512(const uint32_t *in, int64_t ldi, uint32_t *out, int64_t ldo,
                           int64_t rows, int64_t cols)
{
    for (int64_t a0 = 0; a0 < rows; a0 += 16) {
        const int64_t na = rows - a0 < 16 ? rows - a0 : 16;
        const __mmask16 ma = lanes(na);
        for (int64_t b0 = 0; b0 < cols; b0 += 16) {
            const int64_t nb = cols - b0 < 16 ? cols - b0 : 16;
            const uint32_t *src = in + b0 * ldi + a0;
            uint32_t *dst = out + a0 * ldo + b0;
            __m512 r[16];
            if (na == 16 && nb == 16) {
                for (int t = 0; t < 16; t++) r[t] = _mm512_loadu_ps(src + t * ldi);
                transpose16(r);
                for (int l = 0; l < 16; l++) _mm512_storeu_ps(dst + l * ldo, r[l]);
                continue;
            }
            for (int t = 0; t < 16; t++)
                r[t] = t < nb ? _mm512_maskz_loadu_ps(ma, src + t * ldi) : _mm512_setzero_ps();
            transpose16(r);
            const __mmask16 mb = lanes(nb);
            for (int l = 0; l < na; l++) _mm512_mask_storeu_ps(dst + l * ldo, mb, r[l]);
        }
    }
}
