/* winograd_f4_avx2.c - the F(4x4, 3x3) tile transforms on AVX2 + FMA: 8 tiles per vector,
 * their 6x6 input patches loaded row by row with masks (zero padding, image borders, partial
 * tiles) and transposed into lanes in registers; the output tiles transposed back and
 * stored with masks after bias, residual and activation. Built with AVX2/FMA flags (CMake,
 * this file only) and called only when the CPU has both. */
#include <immintrin.h>
#include <math.h>

#include "backends/cpu/winograd_impl.h"

/* ---- the vector math of gemm_vact.h on ymm (as gemm_f32_6x16_avx2.c) ---- */
#include "backends/cpu/vec_avx2.h"
/* written in the operations above */
#include "backends/cpu/gemm/gemm_vact.h"

#define L 8 /* tiles per vector */

/* p + off floats as an address only: maskload / maskstore touch just the lanes their mask
 * selects, so the address of lane 0 may lie outside the tensor (left padding, a lane offset). */
static inline const float *addr(const float *p, int64_t off)
{
    return (const float *)((uintptr_t)p + (uintptr_t)(off * (int64_t)sizeof(float)));
}

/* All-ones in the lanes whose bit is set. */
static inline __m256i lanes_of(unsigned bits)
{
    const __m256i b = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)bits), b), b);
}

/* 1-D B^T d (6 values to 6), as bt_lanes in winograd.c with the multiply-adds fused. */
static inline void bt6(const __m256 d[6], __m256 t[6])
{
    const __m256 s12 = _mm256_add_ps(d[1], d[2]), s34 = _mm256_add_ps(d[3], d[4]);
    const __m256 u12 = _mm256_sub_ps(d[1], d[2]), u43 = _mm256_sub_ps(d[4], d[3]);
    const __m256 w = _mm256_sub_ps(d[4], d[2]), q = _mm256_sub_ps(d[3], d[1]);
    t[0] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), d[0],
                           _mm256_fmadd_ps(_mm256_set1_ps(-5.0f), d[2], d[4]));
    t[1] = _mm256_fmadd_ps(_mm256_set1_ps(-4.0f), s12, s34);
    t[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), u12, u43);
    t[3] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), q, w);
    t[4] = _mm256_fmadd_ps(_mm256_set1_ps(-2.0f), q, w);
    t[5] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), d[1],
                           _mm256_fmadd_ps(_mm256_set1_ps(-5.0f), d[3], d[5]));
}

/* 1-D A^T m (6 values to 4), as at_lanes in winograd.c. */
static inline void at6(const __m256 m[6], __m256 o[4])
{
    const __m256 s12 = _mm256_add_ps(m[1], m[2]), u12 = _mm256_sub_ps(m[1], m[2]);
    const __m256 s34 = _mm256_add_ps(m[3], m[4]), u34 = _mm256_sub_ps(m[3], m[4]);
    o[0] = _mm256_add_ps(_mm256_add_ps(m[0], s12), s34);
    o[1] = _mm256_fmadd_ps(_mm256_set1_ps(2.0f), u34, u12);
    o[2] = _mm256_fmadd_ps(_mm256_set1_ps(4.0f), s34, s12);
    o[3] = _mm256_add_ps(_mm256_fmadd_ps(_mm256_set1_ps(8.0f), u34, u12), m[5]);
}

/* z[j] holds a row of tile j (columns 0..5 used); e[c] gets column c, tile j in lane j. */
static inline void transpose_in(const __m256 z[8], __m256 e[6])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(z[i], z[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(z[i], z[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* s[c] (c < 4): column c of tiles 0-3 in lanes 0-3, column c + 4 in lanes 4-7; s[4 + c]
     * the same for tiles 4-7 */
    for (int c = 0; c < 4; c++) e[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
    for (int c = 0; c < 2; c++) e[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
}

void wino_input_avx2(const wino_geom *g, const float *x, int64_t t0, int64_t nt, float *v,
                     int64_t ldv)
{
    const int64_t plane = g->ih * g->iw;
    const int64_t groups = (nt + WINO_GROUP - 1) / WINO_GROUP * WINO_GROUP;
    for (int64_t j0 = 0; j0 < groups; j0 += L) {
        /* per row of the patch and tile: where the row starts (relative to channel c's plane
         * of image 0) and which of its lanes are inside the image */
        int64_t off[WINO_ALPHA][L];
        __m256i mask[WINO_ALPHA][L];
        for (int j = 0; j < L; j++) {
            int64_t b, oy, ox;
            for (int r = 0; r < WINO_ALPHA; r++) {
                off[r][j] = 0;
                mask[r][j] = _mm256_setzero_si256();
            }
            if (j0 + j >= nt) continue;
            wino_tile_pos(g, t0 + j0 + j, &b, &oy, &ox);
            const int64_t iy = oy - g->pad_t, ix = ox - g->pad_l;
            unsigned cols = 0;
            for (int c = 0; c < WINO_ALPHA; c++)
                if (ix + c >= 0 && ix + c < g->iw) cols |= 1u << c;
            for (int r = 0; r < WINO_ALPHA; r++) {
                if (iy + r < 0 || iy + r >= g->ih) continue;
                off[r][j] = b * g->cin * plane + (iy + r) * g->iw + ix;
                mask[r][j] = lanes_of(cols);
            }
        }
        for (int64_t c = 0; c < g->cin; c++) {
            const float *xc = x + c * plane;
            __m256 h[WINO_ALPHA][WINO_ALPHA];
            for (int r = 0; r < WINO_ALPHA; r++) {
                __m256 z[8], e[6];
                for (int j = 0; j < L; j++)
                    z[j] = _mm256_maskload_ps(addr(xc, off[r][j]), mask[r][j]);
                transpose_in(z, e);
                bt6(e, h[r]);
            }
            for (int k = 0; k < WINO_ALPHA; k++) {
                __m256 d[6], t[6];
                for (int r = 0; r < WINO_ALPHA; r++) d[r] = h[r][k];
                bt6(d, t);
                for (int i = 0; i < WINO_ALPHA; i++)
                    _mm256_storeu_ps(v + ((i * WINO_ALPHA + k) * g->cin + c) * ldv + j0, t[i]);
            }
        }
    }
}

/* o[c] holds output column c of one output row for the 8 tiles; w[k] gets, in lanes
 * 4 q .. 4 q + 3, that row of tile 4 q + k. */
static inline void transpose_out(const __m256 o[4], __m256 w[4])
{
    const __m256 u0 = _mm256_unpacklo_ps(o[0], o[1]), u1 = _mm256_unpackhi_ps(o[0], o[1]);
    const __m256 u2 = _mm256_unpacklo_ps(o[2], o[3]), u3 = _mm256_unpackhi_ps(o[2], o[3]);
    w[0] = _mm256_shuffle_ps(u0, u2, 0x44);
    w[1] = _mm256_shuffle_ps(u0, u2, 0xEE);
    w[2] = _mm256_shuffle_ps(u1, u3, 0x44);
    w[3] = _mm256_shuffle_ps(u1, u3, 0xEE);
}

void wino_output_avx2(const wino_geom *g, const float *m, int64_t ldm, int64_t t0, int64_t nt,
                      const wino_epilogue *ep, float *y)
{
    const int64_t plane = g->oh * g->ow;
    const __m256 alpha = _mm256_set1_ps(ep->alpha), beta = _mm256_set1_ps(ep->beta);
    for (int64_t j0 = 0; j0 < nt; j0 += L) {
        /* per output row and tile: where lanes 4 q .. of w[j % 4] (q = j / 4) go, relative
         * to channel k's plane of image 0, and which of them are inside the output */
        int64_t off[WINO_M][L];
        __m256i mask[WINO_M][L];
        for (int j = 0; j < L; j++) {
            int64_t b, oy, ox;
            for (int i = 0; i < WINO_M; i++) {
                off[i][j] = 0;
                mask[i][j] = _mm256_setzero_si256();
            }
            if (j0 + j >= nt) continue;
            wino_tile_pos(g, t0 + j0 + j, &b, &oy, &ox);
            unsigned cols = 0;
            for (int c = 0; c < WINO_M; c++)
                if (ox + c < g->ow) cols |= 1u << c;
            for (int i = 0; i < WINO_M && oy + i < g->oh; i++) {
                off[i][j] = b * g->cout * plane + (oy + i) * g->ow + ox - 4 * (j / 4);
                mask[i][j] = lanes_of(cols << (4 * (j / 4)));
            }
        }
        for (int64_t k = 0; k < g->cout; k++) {
            __m256 t[WINO_ALPHA][WINO_M];
            for (int r = 0; r < WINO_ALPHA; r++) {
                __m256 a[6];
                for (int c = 0; c < WINO_ALPHA; c++)
                    a[c] = _mm256_loadu_ps(m + ((r * WINO_ALPHA + c) * g->cout + k) * ldm + j0);
                at6(a, t[r]);
            }
            const __m256 bias = _mm256_set1_ps(ep->bias ? ep->bias[k] : 0.0f);
            __m256 o[WINO_M][WINO_M];
            for (int c = 0; c < WINO_M; c++) {
                __m256 d[6], r4[4];
                for (int r = 0; r < WINO_ALPHA; r++) d[r] = t[r][c];
                at6(d, r4);
                for (int i = 0; i < WINO_M; i++) o[i][c] = r4[i];
            }
            const float *zk = ep->z ? ep->z + k * plane : NULL;
            float *yk = y + k * plane;
            for (int i = 0; i < WINO_M; i++) {
                __m256 w[4];
                transpose_out(o[i], w);
                for (int c = 0; c < 4; c++) {
                    __m256 val = w[c];
                    if (ep->bias) val = _mm256_add_ps(val, bias);
                    if (zk) {
                        /* the two halves' masks are disjoint: the loads' zeros add nothing */
                        const __m256 z0 = _mm256_maskload_ps(addr(zk, off[i][c]), mask[i][c]);
                        const __m256 z1 =
                            _mm256_maskload_ps(addr(zk, off[i][4 + c]), mask[i][4 + c]);
                        val = _mm256_add_ps(val, _mm256_or_ps(z0, z1));
                    }
                    val = vact_apply(val, ep->act, alpha, beta);
                    _mm256_maskstore_ps((float *)addr(yk, off[i][c]), mask[i][c], val);
                    _mm256_maskstore_ps((float *)addr(yk, off[i][4 + c]), mask[i][4 + c], val);
                }
            }
        }
    }
}
