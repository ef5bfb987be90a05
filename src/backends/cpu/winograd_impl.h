/* winograd_impl.h - private to the Winograd convolution (winograd.c): the tiling of a layer
 * and the per-ISA tile transforms F(4x4, 3x3) the driver calls around its GEMMs. */
#ifndef KILN_WINOGRAD_IMPL_H
#define KILN_WINOGRAD_IMPL_H

#include "backends/cpu/gemm/gemm.h"

/* F(4x4, 3x3): tiles of 4x4 outputs read 6x6 inputs (overlapping by 2) and have 36 points
 * in the Winograd domain. */
#define WINO_M      4
#define WINO_ALPHA  6
#define WINO_POINTS 36
/* Tiles go through the transforms in groups of this many (the widest vector path's lanes);
 * a tile block holds a multiple of it. */
#define WINO_GROUP 16

/* A layer's tiles: the output cut into th x tw tiles per image, tiles numbered image by
 * image, row by row; tile t = (b, ty, tx) reads inputs from (4 ty - pad_t, 4 tx - pad_l),
 * zero outside the image, and writes outputs from (4 ty, 4 tx) that fall inside oh x ow. */
typedef struct wino_geom {
    int64_t batch, cin, cout;
    int64_t ih, iw, oh, ow;
    int64_t pad_t, pad_l;
    int64_t th, tw, tiles;
} wino_geom;

/* What the output transform applies to each output: + bias[k], + z (the output's shape),
 * then the activation; all optional. */
typedef struct wino_epilogue {
    const float *bias;
    const float *z;
    gemm_act act;
    float alpha, beta;
} wino_epilogue;

/* The input transform B^T d B of tiles [t0, t0 + nt) of x (NCHW [batch, cin, ih, iw]) into
 * v: point p, channel c, tile t0 + j at v[(p * cin + c) * ldv + j]. Columns nt up to the
 * next multiple of WINO_GROUP are written too (as zero tiles); ldv >= that. */
typedef void (*wino_input_fn)(const wino_geom *g, const float *x, int64_t t0, int64_t nt, float *v,
                              int64_t ldv);
/* The output transform A^T m A of the same tiles from m (point p, output channel k, tile j at
 * m[(p * cout + k) * ldm + j]) with the epilogue, into y (NCHW [batch, cout, oh, ow]). */
typedef void (*wino_output_fn)(const wino_geom *g, const float *m, int64_t ldm, int64_t t0,
                               int64_t nt, const wino_epilogue *ep, float *y);

/* Tile t's position: image b, and the top-left corner of its outputs (oy, ox). */
static inline void wino_tile_pos(const wino_geom *g, int64_t t, int64_t *b, int64_t *oy,
                                 int64_t *ox)
{
    const int64_t per = g->th * g->tw, r = t % per;
    *b = t / per;
    *oy = r / g->tw * WINO_M;
    *ox = r % g->tw * WINO_M;
}

/* The portable path (winograd.c) and the vector ones (winograd_f4_avx2.c, _avx512.c: built
 * with their ISA's flags, called only when the CPU has it). */
void wino_input_generic(const wino_geom *g, const float *x, int64_t t0, int64_t nt, float *v,
                        int64_t ldv);
void wino_output_generic(const wino_geom *g, const float *m, int64_t ldm, int64_t t0, int64_t nt,
                         const wino_epilogue *ep, float *y);
#if defined(__x86_64__)
void wino_input_avx2(const wino_geom *g, const float *x, int64_t t0, int64_t nt, float *v,
                     int64_t ldv);
void wino_output_avx2(const wino_geom *g, const float *m, int64_t ldm, int64_t t0, int64_t nt,
                      const wino_epilogue *ep, float *y);
void wino_input_avx512(const wino_geom *g, const float *x, int64_t t0, int64_t nt, float *v,
                       int64_t ldv);
void wino_output_avx512(const wino_geom *g, const float *m, int64_t ldm, int64_t t0, int64_t nt,
                        const wino_epilogue *ep, float *y);
#endif

#endif /* KILN_WINOGRAD_IMPL_H */
