/* winograd_f4_avx512.c - the F(4x4, 3x3) tile transforms on AVX-512: 16 tiles per vector,
 * their 6x6 input patches loaded row by row with masks (zero padding, image borders,
 * partial tiles) and transposed into lanes in registers; the output tiles transposed back
 * and stored with masks after bias, residual and activation. Built with AVX-512 flags
 * (CMake, this file only) and called only when the CPU has AVX-512 F and VL. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/winograd_impl.h"

/* ---- the vector math of gemm_vact.h on zmm (as gemm_f32_14x32_avx512.c) ---- */
#include "backends/cpu/vec_avx512.h"
/* written in the operations above */
#include "backends/cpu/gemm/gemm_vact.h"

#define L 16 /* tiles per vector: WINO_GROUP */

/* p + off floats as an address only: masked loads and stores touch just the lanes their mask
 * selects, so the address of lane 0 may lie outside the tensor (left padding, a lane offset). */
static inline const float *addr(const float *p, int64_t off)
{
    return (const float *)((uintptr_t)p + (uintptr_t)(off * (int64_t)sizeof(float)));
}

/* 1-D B^T d (6 values to 6), as bt_lanes in winograd.c with the multiply-adds fused. */
static inline void bt6(const __m512 d[6], __m512 t[6])
{
    const __m512 s12 = _mm512_add_ps(d[1], d[2]), s34 = _mm512_add_ps(d[3], d[4]);
    const __m512 u12 = _mm512_sub_ps(d[1], d[2]), u43 = _mm512_sub_ps(d[4], d[3]);
    const __m512 w = _mm512_sub_ps(d[4], d[2]), q = _mm512_sub_ps(d[3], d[1]);
    t[0] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), d[0],
                           _mm512_fmadd_ps(_mm512_set1_ps(-5.0f), d[2], d[4]));
    t[1] = _mm512_fmadd_ps(_mm512_set1_ps(-4.0f), s12, s34);
    t[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), u12, u43);
    t[3] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), q, w);
    t[4] = _mm512_fmadd_ps(_mm512_set1_ps(-2.0f), q, w);
    t[5] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), d[1],
                           _mm512_fmadd_ps(_mm512_set1_ps(-5.0f), d[3], d[5]));
}

/* 1-D A^T m (6 values to 4), as at_lanes in winograd.c. */
static inline void at6(const __m512 m[6], __m512 o[4])
{
    const __m512 s12 = _mm512_add_ps(m[1], m[2]), u12 = _mm512_sub_ps(m[1], m[2]);
    const __m512 s34 = _mm512_add_ps(m[3], m[4]), u34 = _mm512_sub_ps(m[3], m[4]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], s12), s34);
    o[1] = _mm512_fmadd_ps(_mm512_set1_ps(2.0f), u34, u12);
    o[2] = _mm512_fmadd_ps(_mm512_set1_ps(4.0f), s34, s12);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0f), u34, u12), m[5]);
}

/* z[q] holds row r of tile q in lanes 0..7 and of tile q + 8 in lanes 8..15 (columns 0..5
 * used); e[c] gets column c of the 16 tiles, tile j in lane j. In-lane 4x4 transposes, then
 * 128-bit blocks gathered across pairs. */
static inline void transpose_in(const __m512 z[8], __m512 e[6])
{
    __m512 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm512_unpacklo_ps(z[i], z[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(z[i], z[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* s[c] (c < 4) holds, per 128-bit block, column c (blocks 0, 2) or c + 4 (blocks 1, 3) of
     * tiles 0-3 (block 0, 1) and 8-11 (2, 3); s[4 + c] the same for tiles 4-7 and 12-15 */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi =
        _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    for (int c = 0; c < 4; c++) e[c] = _mm512_permutex2var_ps(s[c], lo, s[4 + c]);
    for (int c = 0; c < 2; c++) e[4 + c] = _mm512_permutex2var_ps(s[c], hi, s[4 + c]);
}

void wino_input_avx512(const wino_geom *g, const float *x, int64_t t0, int64_t nt, float *v,
                       int64_t ldv)
{
    const int64_t plane = g->ih * g->iw;
    for (int64_t j0 = 0; j0 < nt; j0 += L) {
        /* per row of the patch and pair: where each half's row starts (relative to channel
         * c's plane of image 0) and which of its lanes are inside the image */
        int64_t off[WINO_ALPHA][L];
        __mmask16 mask[WINO_ALPHA][8];
        for (int r = 0; r < WINO_ALPHA; r++)
            for (int q = 0; q < 8; q++) mask[r][q] = 0;
        for (int j = 0; j < L; j++) {
            int64_t b, oy, ox;
            for (int r = 0; r < WINO_ALPHA; r++) off[r][j] = 0;
            if (j0 + j >= nt) continue;
            wino_tile_pos(g, t0 + j0 + j, &b, &oy, &ox);
            const int64_t iy = oy - g->pad_t, ix = ox - g->pad_l;
            unsigned cols = 0;
            for (int c = 0; c < WINO_ALPHA; c++)
                if (ix + c >= 0 && ix + c < g->iw) cols |= 1u << c;
            const int half = j / 8, q = j % 8;
            for (int r = 0; r < WINO_ALPHA; r++) {
                if (iy + r < 0 || iy + r >= g->ih) continue;
                /* the high half's lane 8 reads its row's column 0 */
                off[r][j] = b * g->cin * plane + (iy + r) * g->iw + ix - 8 * half;
                mask[r][q] |= (__mmask16)(cols << (8 * half));
            }
        }
        for (int64_t c = 0; c < g->cin; c++) {
            const float *xc = x + c * plane;
            __m512 h[WINO_ALPHA][WINO_ALPHA];
            for (int r = 0; r < WINO_ALPHA; r++) {
                __m512 z[8], e[6];
                for (int q = 0; q < 8; q++) {
                    const __mmask16 m = mask[r][q];
                    z[q] = _mm512_maskz_loadu_ps(m & 0xFF, addr(xc, off[r][q]));
                    z[q] = _mm512_mask_loadu_ps(z[q], m & 0xFF00, addr(xc, off[r][q + 8]));
                }
                transpose_in(z, e);
                bt6(e, h[r]);
            }
            for (int k = 0; k < WINO_ALPHA; k++) {
                __m512 d[6], t[6];
                for (int r = 0; r < WINO_ALPHA; r++) d[r] = h[r][k];
                bt6(d, t);
                for (int i = 0; i < WINO_ALPHA; i++)
                    _mm512_storeu_ps(v + ((i * WINO_ALPHA + k) * g->cin + c) * ldv + j0, t[i]);
            }
        }
    }
}

/* o[c] holds output column c of one output row for the 16 tiles (tile j in lane j); w[k]
 * gets, in 128-bit block q, that row of tile 4 q + k. */
static inline void transpose_out(const __m512 o[4], __m512 w[4])
{
    const __m512 u0 = _mm512_unpacklo_ps(o[0], o[1]), u1 = _mm512_unpackhi_ps(o[0], o[1]);
    const __m512 u2 = _mm512_unpacklo_ps(o[2], o[3]), u3 = _mm512_unpackhi_ps(o[2], o[3]);
    w[0] = _mm512_shuffle_ps(u0, u2, 0x44);
    w[1] = _mm512_shuffle_ps(u0, u2, 0xEE);
    w[2] = _mm512_shuffle_ps(u1, u3, 0x44);
    w[3] = _mm512_shuffle_ps(u1, u3, 0xEE);
}

void wino_output_avx512(const wino_geom *g, const float *m, int64_t ldm, int64_t t0, int64_t nt,
                        const wino_epilogue *ep, float *y)
{
    const int64_t plane = g->oh * g->ow;
    const __m512 alpha = _mm512_set1_ps(ep->alpha), beta = _mm512_set1_ps(ep->beta);
    for (int64_t j0 = 0; j0 < nt; j0 += L) {
        /* per output row and tile: where block q = j / 4 of w[j % 4] goes (relative to
         * channel k's plane of image 0; lane 4 q lands on the row's first output) and which
         * of its lanes are inside the output */
        int64_t off[WINO_M][L];
        __mmask16 mask[WINO_M][L];
        for (int j = 0; j < L; j++) {
            int64_t b, oy, ox;
            for (int i = 0; i < WINO_M; i++) {
                off[i][j] = 0;
                mask[i][j] = 0;
            }
            if (j0 + j >= nt) continue;
            wino_tile_pos(g, t0 + j0 + j, &b, &oy, &ox);
            unsigned cols = 0;
            for (int c = 0; c < WINO_M; c++)
                if (ox + c < g->ow) cols |= 1u << c;
            for (int i = 0; i < WINO_M && oy + i < g->oh; i++) {
                off[i][j] = b * g->cout * plane + (oy + i) * g->ow + ox - 4 * (j / 4);
                mask[i][j] = (__mmask16)(cols << (4 * (j / 4)));
            }
        }
        for (int64_t k = 0; k < g->cout; k++) {
            __m512 t[WINO_ALPHA][WINO_M];
            for (int r = 0; r < WINO_ALPHA; r++) {
                __m512 a[6];
                for (int c = 0; c < WINO_ALPHA; c++)
                    a[c] = _mm512_loadu_ps(m + ((r * WINO_ALPHA + c) * g->cout + k) * ldm + j0);
                at6(a, t[r]);
            }
            const __m512 bias = _mm512_set1_ps(ep->bias ? ep->bias[k] : 0.0f);
            __m512 o[WINO_M][WINO_M];
            for (int c = 0; c < WINO_M; c++) {
                __m512 d[6], r4[4];
                for (int r = 0; r < WINO_ALPHA; r++) d[r] = t[r][c];
                at6(d, r4);
                for (int i = 0; i < WINO_M; i++) o[i][c] = r4[i];
            }
            const float *zk = ep->z ? ep->z + k * plane : NULL;
            float *yk = y + k * plane;
            for (int i = 0; i < WINO_M; i++) {
                __m512 w[4];
                transpose_out(o[i], w);
                for (int c = 0; c < 4; c++) {
                    __m512 val = w[c];
                    if (ep->bias) val = _mm512_add_ps(val, bias);
                    if (zk) {
                        __m512 z = _mm512_setzero_ps();
                        for (int q = 0; q < 4; q++)
                            z = _mm512_mask_loadu_ps(z, mask[i][4 * q + c],
                                                     addr(zk, off[i][4 * q + c]));
                        val = _mm512_add_ps(val, z);
                    }
                    val = vact_apply(val, ep->act, alpha, beta);
                    for (int q = 0; q < 4; q++)
                        _mm512_mask_storeu_ps((float *)addr(yk, off[i][4 * q + c]),
                                              mask[i][4 * q + c], val);
                }
            }
        }
    }
}
