/* gemm_impl.h - private to the GEMM engine: what each ISA file (gemm_f32_*.c) gives the
 * driver (gemm.c): its micro-kernels, epilogue and packing routines, and its blocking. */
#ifndef KILN_GEMM_IMPL_H
#define KILN_GEMM_IMPL_H

#include "backends/cpu/gemm/gemm.h"

/* What a micro-kernel applies in registers before it stores a tile, after the tile's last K
 * block: bias, residual and the activations that cost a compare (relu, leaky relu, clip). The
 * others (exp, erfc, tanh) run afterwards over the stored tile (gemm_kernel.epilogue with
 * only `act` set), while it is in L1. Pointers are at the tile's corner. */
typedef struct gemm_post {
    const float *bias_col; /* [nr]: added to each row; or NULL */
    const float *bias_row; /* [mr]: bias_row[i] added to row i; or NULL */
    const float *res;      /* [mr x nr], row stride ldr; or NULL */
    size_t ldr;
    gemm_act act; /* GEMM_ACT_NONE, _RELU, _LEAKY_RELU or _CLIP here */
    float alpha, beta;
} gemm_post;

/* C[mr x nr] (row stride ldc) = (accumulate ? C : 0) + A-panel x B-panel over kc steps, each
 * element one FMA chain in k order, then `post` (NULL: none). a: kc groups of MR floats (the
 * tile's rows, k-major); b: kc rows of NR floats, b_stride floats apart (NR for packed
 * panels, ldb when B is read in place), readable up to NR columns (lanes past nr are
 * computed and dropped; packed panels hold zeros there). mr <= MR, nr <= NR, kc >= 0. */
typedef void (*gemm_ukernel_fn)(size_t mr, size_t nr, size_t kc, const float *a, const float *b,
                                size_t b_stride, float *c, size_t ldc, bool accumulate,
                                const gemm_post *post);

/* The narrow-N kernel: the same chains vectorized along M, for N <= 4 where a tile of NR
 * columns would waste lanes. Rows: `panels` (1..4) A-panels of MR rows, `a_panel_stride`
 * floats apart, the last holding `mr_last` rows; columns: nc (1..nkernel_cols), B element
 * (k, j) at
 * b[k * b_ks + j * b_js] read as it is (raw or a packed panel). */
typedef void (*gemm_nkernel_fn)(size_t panels, size_t mr_last, size_t nc, size_t kc, const float *a,
                                size_t a_panel_stride, const float *b, size_t b_ks, size_t b_js,
                                float *c, size_t ldc, bool accumulate);

/* Applies the epilogue to the C block [m x n] at c (global position row0, col0). */
typedef void (*gemm_epilogue_fn)(float *c, size_t ldc, size_t m, size_t n, size_t row0, size_t col0,
                                 const gemm_epilogue *ep);

/* Packs a block of a strided matrix into panels of width w: panel q, step k, lane t gets
 * src[k * s_k + (q * w + t) * s_w] for q * w + t < wc and 0 past it; panels are kc * w floats
 * apart. Used for A (w = MR, the rows) and B (w = NR, the columns). */
typedef void (*gemm_pack_fn)(float *dst, const float *src, size_t s_k, size_t s_w, size_t kc,
                             size_t wc, size_t w);

typedef struct gemm_kernel {
    gemm_isa isa;
    int32_t mr, nr;     /* the micro-kernel's tile */
    int32_t mc, kc, nc; /* cache blocks: mc a multiple of mr, nc of nr */
    gemm_ukernel_fn ukernel;
    gemm_nkernel_fn nkernel; /* NULL: narrow N goes through ukernel */
    int32_t nkernel_cols;    /* columns per nkernel call (1..4) */
    gemm_epilogue_fn epilogue;
    gemm_pack_fn pack; /* NULL: the portable gemm_pack_generic */
} gemm_kernel;

/* One per ISA file; the x86 ones exist only in x86-64 builds. */
extern const gemm_kernel gemm_f32_4x16_generic;
#if defined(__x86_64__)
extern const gemm_kernel gemm_f32_6x16_avx2;
extern const gemm_kernel gemm_f32_14x32_avx512;
#endif

/* Portable pieces the ISA files reuse. */
void gemm_pack_generic(float *dst, const float *src, size_t s_k, size_t s_w, size_t kc, size_t wc,
                       size_t w);
void gemm_epilogue_generic(float *c, size_t ldc, size_t m, size_t n, size_t row0, size_t col0,
                           const gemm_epilogue *ep);
/* The scalar activation of fused_act.c's formulas. */
float gemm_act_scalar(float x, gemm_act act, float alpha, float beta);

#endif /* KILN_GEMM_IMPL_H */
