/* winograd.c - 3x3 stride-1 convolutions (Conv, kiln.Conv; NCHW f32, one group) by Winograd's
 * F(4x4, 3x3): weights transformed G g G^T at build time and packed for the GEMM, then per
 * block of tiles the input transform B^T d B, 36 GEMMs (one per point) and the output
 * transform A^T m A with bias, residual and activation. One kernel per ISA path
 * ("winograd_f4_avx512", "winograd_f4_avx2", "winograd_f4_generic"); the portable
 * transforms live here too. */
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/gemm/gemm_impl.h"
#include "backends/cpu/winograd_impl.h"

/* Where Winograd beats the GEMM kernels (im2col), measured one thread on this project's
 * machine (AVX-512; docs/ARCHITECTURE.md, "Winograd"): from 8 input channels (below, the
 * output transform outweighs the small GEMMs), outputs of 4 x 4 and more, and enough tiles
 * to pay for weights 4x the size of the direct ones (36 points instead of 9 taps), which
 * stream from memory once per tile block when they outgrow the caches: any layer of 16
 * tiles, 8 if cin x cout <= 256 x 256, 4 if <= 64 x 64. */
#define WINO_MIN_CIN  8
#define WINO_MIN_SIZE 4
/* Tiles per block: the transformed inputs and products, 36 x (cin + cout) floats per tile,
 * stay in a core's L2 (2 MiB here) between the transforms and the GEMMs up to 256 channels,
 * and 32 is the AVX-512 GEMM's tile width; of 16..256, 32 measured best (or within noise)
 * on ResNet-50's 3x3 layers, 512 channels included. */
#define WINO_BLOCK 32
/* Threads split tile blocks when the layer has at least this many flops (as the GEMM's
 * threshold: below it waking a thread costs about what it saves). */
#define WINO_PARALLEL_MIN_FLOPS ((double)(1 << 22))

static bool is_op(const ir_node *n, const char *op) { return strcmp(n->op->name, op) == 0; }

static bool plain_f32(const ir_tensor *t)
{
    return ir_tensor_present(t) && t->dtype == KILN_DTYPE_F32 && t->layout == IR_LAYOUT_PLAIN;
}

static bool present(const ir_tensor *in, int32_t n_in, int32_t k)
{
    return k < n_in && ir_tensor_present(&in[k]);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* ---- which layers, and their tiles ---- */

typedef struct wino_layer {
    wino_geom g;
    int32_t bias, z; /* input slots, -1: none */
    gemm_act act;
    float alpha, beta;
} wino_layer;

/* Whether this file can run the layer (any size), and its geometry. */
static bool layer_of(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                     int32_t n_out, wino_layer *l)
{
    memset(l, 0, sizeof *l);
    l->bias = l->z = -1;
    if (!is_op(n, "Conv") && !is_op(n, "kiln.Conv")) return false;
    if (n_out != 1 || n_in < 2 || !plain_f32(&in[0]) || !ir_tensor_present(&in[1]) ||
        in[1].dtype != KILN_DTYPE_F32 || !in[1].data || out[0].dtype != KILN_DTYPE_F32 ||
        out[0].layout != IR_LAYOUT_PLAIN)
        return false;
    bool fused = is_op(n, "kiln.Conv");
    int32_t act = fused ? ir_fused_act_code(n) : 0;
    if (act < 0) return false;
    const kiln_dims *x = &in[0].shape, *w = &in[1].shape, *y = &out[0].shape;
    if (x->rank != 4 || w->rank != 4 || y->rank != 4 || ir_attr_int(n, "group") != 1) return false;
    ir_window win;
    if (ir_window_of(n, in, n_in, &win) != KILN_OK || win.ns != 2) return false;
    for (int32_t i = 0; i < 2; i++)
        if (win.kernel[i] != 3 || win.stride[i] != 1 || win.dilation[i] != 1) return false;
    wino_geom *g = &l->g;
    g->batch = x->d[0];
    g->cin = x->d[1];
    g->cout = w->d[0];
    g->ih = win.in[0];
    g->iw = win.in[1];
    g->oh = win.out[0];
    g->ow = win.out[1];
    g->pad_t = win.pad_begin[0];
    g->pad_l = win.pad_begin[1];
    if (w->d[1] != g->cin || w->d[2] != 3 || w->d[3] != 3 || y->d[0] != g->batch ||
        y->d[1] != g->cout || y->d[2] != g->oh || y->d[3] != g->ow || g->oh < 0 || g->ow < 0)
        return false;
    g->th = ceil_div(g->oh, WINO_M);
    g->tw = ceil_div(g->ow, WINO_M);
    g->tiles = g->batch * g->th * g->tw;
    if (present(in, n_in, 2)) {
        if (in[2].dtype != KILN_DTYPE_F32 || ir_tensor_count(&in[2]) != g->cout ||
            in[2].layout != IR_LAYOUT_PLAIN)
            return false;
        l->bias = 2;
    }
    if (present(in, n_in, 3)) {
        if (!fused || !plain_f32(&in[3]) || !kiln_dims_equal(&in[3].shape, y)) return false;
        l->z = 3;
    }
    l->act = (gemm_act)act;
    if (fused) {
        l->alpha = ir_attr_float(n, "act_alpha");
        l->beta = ir_attr_float(n, "act_beta");
    }
    return true;
}

/* The prepared data: per point, the transformed weights U_p [cout, cin] packed as the GEMM's
 * A operand, each slot rounded up to 64 bytes. */
static size_t slot_bytes(gemm_isa isa, const wino_geom *g)
{
    size_t one = gemm_pack_a_bytes(isa, g->cout, g->cin);
    return one ? (one + 63) & ~(size_t)63 : 0;
}

static size_t packed_bytes(gemm_isa isa, const wino_geom *g)
{
    size_t one = slot_bytes(isa, g);
    return one && one <= SIZE_MAX / WINO_POINTS ? one * WINO_POINTS : 0;
}

/* Tiles per block for `threads` threads: WINO_BLOCK, or with several threads an equal
 * share each when that is less (16 at least). Results do not depend on it: each output is
 * the same chain of operations whatever the block. */
static int64_t block_tiles(const wino_geom *g, int32_t threads)
{
    int64_t share = round_up(ceil_div(g->tiles, threads < 1 ? 1 : threads), WINO_GROUP);
    int64_t nb = share < WINO_BLOCK ? share : WINO_BLOCK;
    return nb < WINO_GROUP ? WINO_GROUP : nb;
}

/* One GEMM: point p's products [cout, nt] = U_p [cout, cin] x V_p [cin, nt]. */
static gemm_args point_args(gemm_isa isa, const wino_geom *g, const void *packed, int32_t p,
                            const float *v, float *m, int64_t nt, int64_t ld)
{
    gemm_args a;
    memset(&a, 0, sizeof a);
    a.isa = isa;
    a.m = g->cout;
    a.k = g->cin;
    a.n = nt;
    a.a_packed = (const uint8_t *)packed + (size_t)p * slot_bytes(isa, g);
    a.b = v + (size_t)p * (size_t)g->cin * (size_t)ld;
    a.ldb = ld;
    a.c = m + (size_t)p * (size_t)g->cout * (size_t)ld;
    a.ldc = ld;
    return a;
}

/* One thread's scratch for blocks of nb tiles: V [36][cin][nb], M [36][cout][nb] (64-byte
 * aligned), then the GEMM's (it packs blocks of V). 0 on overflow. */
static size_t slice_bytes(gemm_isa isa, const wino_geom *g, int64_t nb)
{
    double floats = (double)WINO_POINTS * (double)(g->cin + g->cout) * (double)nb;
    if (floats * sizeof(float) > (double)(SIZE_MAX / 4)) return 0;
    gemm_args a;
    memset(&a, 0, sizeof a);
    a.isa = isa;
    a.m = g->cout;
    a.k = g->cin;
    a.n = a.ldb = a.ldc = nb;
    a.a_packed = "";
    size_t v = ((size_t)(WINO_POINTS * g->cin * nb) * sizeof(float) + 63) & ~(size_t)63;
    size_t m = ((size_t)(WINO_POINTS * g->cout * nb) * sizeof(float) + 63) & ~(size_t)63;
    return v + m + ((gemm_scratch_bytes(&a, 1) + 63) & ~(size_t)63);
}

/* Threads that get blocks when a run has `threads`. */
static int32_t run_threads(const wino_geom *g, int64_t nb, int32_t threads)
{
    int64_t blocks = ceil_div(g->tiles, nb);
    double flops = 72.0 * (double)g->tiles * (double)g->cin * (double)g->cout;
    if (threads <= 1 || blocks <= 1 || flops < WINO_PARALLEL_MIN_FLOPS) return 1;
    return blocks < threads ? (int32_t)blocks : threads;
}

/* ---- the portable transforms ---- */

/* 1-D B^T d over 6 values a stride apart, for WINO_GROUP lanes: the same operations, in the
 * same order, as the vector paths (which fuse the multiply-adds). */
static void bt_lanes(const float *d, size_t ds, float *t, size_t ts)
{
    for (int j = 0; j < WINO_GROUP; j++) {
        const float d0 = d[j], d1 = d[ds + j], d2 = d[2 * ds + j], d3 = d[3 * ds + j],
                    d4 = d[4 * ds + j], d5 = d[5 * ds + j];
        const float s12 = d1 + d2, s34 = d3 + d4, u12 = d1 - d2, u43 = d4 - d3;
        const float w = d4 - d2, q = d3 - d1;
        t[j] = 4.0f * d0 + (-5.0f * d2 + d4);
        t[ts + j] = -4.0f * s12 + s34;
        t[2 * ts + j] = 4.0f * u12 + u43;
        t[3 * ts + j] = 2.0f * q + w;
        t[4 * ts + j] = -2.0f * q + w;
        t[5 * ts + j] = 4.0f * d1 + (-5.0f * d3 + d5);
    }
}

/* 1-D A^T m over 6 values a stride apart, for WINO_GROUP lanes. */
static void at_lanes(const float *m, size_t ms, float *o, size_t os)
{
    for (int j = 0; j < WINO_GROUP; j++) {
        const float m0 = m[j], m1 = m[ms + j], m2 = m[2 * ms + j], m3 = m[3 * ms + j],
                    m4 = m[4 * ms + j], m5 = m[5 * ms + j];
        const float s12 = m1 + m2, u12 = m1 - m2, s34 = m3 + m4, u34 = m3 - m4;
        o[j] = (m0 + s12) + s34;
        o[os + j] = 2.0f * u34 + u12;
        o[2 * os + j] = 4.0f * s34 + s12;
        o[3 * os + j] = (8.0f * u34 + u12) + m5;
    }
}

void wino_input_generic(const wino_geom *g, const float *x, int64_t t0, int64_t nt, float *v,
                        int64_t ldv)
{
    const int64_t plane = g->ih * g->iw;
    float d[WINO_POINTS][WINO_GROUP], t[WINO_POINTS][WINO_GROUP];
    for (int64_t j0 = 0; j0 < nt; j0 += WINO_GROUP) {
        int64_t base[WINO_GROUP], iy[WINO_GROUP], ix[WINO_GROUP];
        for (int j = 0; j < WINO_GROUP; j++) {
            int64_t b = -1, oy = 0, ox = 0;
            if (j0 + j < nt) wino_tile_pos(g, t0 + j0 + j, &b, &oy, &ox);
            base[j] = b < 0 ? -1 : b * g->cin * plane;
            iy[j] = oy - g->pad_t;
            ix[j] = ox - g->pad_l;
        }
        for (int64_t c = 0; c < g->cin; c++) {
            for (int r = 0; r < WINO_ALPHA; r++)
                for (int col = 0; col < WINO_ALPHA; col++)
                    for (int j = 0; j < WINO_GROUP; j++) {
                        int64_t y = iy[j] + r, xx = ix[j] + col;
                        bool in = base[j] >= 0 && y >= 0 && y < g->ih && xx >= 0 && xx < g->iw;
                        d[r * WINO_ALPHA + col][j] =
                            in ? x[base[j] + c * plane + y * g->iw + xx] : 0.0f;
                    }
            /* rows first (along x), then columns: point (i, k) = sum B[r][i] d[r][c] B[c][k] */
            for (int r = 0; r < WINO_ALPHA; r++)
                bt_lanes(d[r * WINO_ALPHA], WINO_GROUP, t[r * WINO_ALPHA], WINO_GROUP);
            for (int k = 0; k < WINO_ALPHA; k++)
                bt_lanes(t[k], WINO_ALPHA * WINO_GROUP, d[k], WINO_ALPHA * WINO_GROUP);
            for (int p = 0; p < WINO_POINTS; p++)
                memcpy(v + (p * g->cin + c) * ldv + j0, d[p], sizeof d[p]);
        }
    }
}

void wino_output_generic(const wino_geom *g, const float *m, int64_t ldm, int64_t t0, int64_t nt,
                         const wino_epilogue *ep, float *y)
{
    const int64_t plane = g->oh * g->ow;
    float a[WINO_POINTS][WINO_GROUP], t[WINO_ALPHA * WINO_M][WINO_GROUP],
        o[WINO_M * WINO_M][WINO_GROUP];
    for (int64_t j0 = 0; j0 < nt; j0 += WINO_GROUP) {
        const int64_t n = nt - j0 < WINO_GROUP ? nt - j0 : WINO_GROUP;
        for (int64_t k = 0; k < g->cout; k++) {
            for (int p = 0; p < WINO_POINTS; p++)
                memcpy(a[p], m + (p * g->cout + k) * ldm + j0, sizeof a[p]);
            /* rows of points first (along x), then columns, as the input transform */
            for (int r = 0; r < WINO_ALPHA; r++)
                at_lanes(a[r * WINO_ALPHA], WINO_GROUP, t[r * WINO_M], WINO_GROUP);
            for (int c = 0; c < WINO_M; c++)
                at_lanes(t[c], WINO_M * WINO_GROUP, o[c], WINO_M * WINO_GROUP);
            const float bias = ep->bias ? ep->bias[k] : 0.0f;
            for (int64_t j = 0; j < n; j++) {
                int64_t b, oy, ox;
                wino_tile_pos(g, t0 + j0 + j, &b, &oy, &ox);
                const int64_t off = (b * g->cout + k) * plane;
                for (int i = 0; i < WINO_M && oy + i < g->oh; i++)
                    for (int c = 0; c < WINO_M && ox + c < g->ow; c++) {
                        const int64_t at = off + (oy + i) * g->ow + ox + c;
                        float val = o[i * WINO_M + c][j];
                        if (ep->bias) val += bias;
                        if (ep->z) val += ep->z[at];
                        y[at] = gemm_act_scalar(val, ep->act, ep->alpha, ep->beta);
                    }
            }
        }
    }
}

/* ---- build time: the weights in the Winograd domain ---- */

/* G (6x3) of F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity. */
static const double k_g[WINO_ALPHA][3] = {
    {1.0 / 4, 0, 0},
    {-1.0 / 6, -1.0 / 6, -1.0 / 6},
    {-1.0 / 6, 1.0 / 6, -1.0 / 6},
    {1.0 / 24, 1.0 / 12, 1.0 / 6},
    {1.0 / 24, -1.0 / 12, 1.0 / 6},
    {0, 0, 1},
};

/* u [36][cout][cin] = G g G^T for each filter, in double, rounded once. */
static void transform_weights(const wino_geom *g, const float *w, float *u)
{
    const int64_t planes = g->cout * g->cin;
    for (int64_t f = 0; f < planes; f++) {
        const float *k = w + f * 9;
        double gk[WINO_ALPHA][3];
        for (int i = 0; i < WINO_ALPHA; i++)
            for (int c = 0; c < 3; c++)
                gk[i][c] = k_g[i][0] * k[c] + k_g[i][1] * k[3 + c] + k_g[i][2] * k[6 + c];
        for (int i = 0; i < WINO_ALPHA; i++)
            for (int j = 0; j < WINO_ALPHA; j++) {
                double s = gk[i][0] * k_g[j][0] + gk[i][1] * k_g[j][1] + gk[i][2] * k_g[j][2];
                u[(size_t)(i * WINO_ALPHA + j) * (size_t)planes + (size_t)f] = (float)s;
            }
    }
}

/* ---- kernels, one per ISA path ---- */

typedef struct wino_path {
    gemm_isa isa;
    wino_input_fn input;
    wino_output_fn output;
} wino_path;

static bool wins(const wino_layer *l)
{
    const wino_geom *g = &l->g;
    const int64_t prod = g->cin * g->cout;
    if (g->cin < WINO_MIN_CIN || g->cout < 1 || g->oh < WINO_MIN_SIZE || g->ow < WINO_MIN_SIZE)
        return false;
    return g->tiles >= 16 || (g->tiles >= 8 && prod <= 256 * 256) ||
           (g->tiles >= 4 && prod <= 64 * 64);
}

static bool applies_path(const wino_path *pa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                         const ir_tensor *out, int32_t n_out)
{
    wino_layer l;
    return pa->input && gemm_isa_supported(pa->isa, kiln_cpu_features()) &&
           layer_of(n, in, n_in, out, n_out, &l) && wins(&l) && packed_bytes(pa->isa, &l.g) > 0 &&
           slice_bytes(pa->isa, &l.g, WINO_BLOCK) > 0;
}

static kiln_status prepare_path(const wino_path *pa, const ir_node *n, const ir_tensor *in,
                                int32_t n_in, const ir_tensor *out, int32_t n_out, kiln_buf *data)
{
    wino_layer l;
    if (!layer_of(n, in, n_in, out, n_out, &l))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the Winograd kernel does not run this layer");
    const wino_geom *g = &l.g;
    size_t bytes = packed_bytes(pa->isa, g), one = slot_bytes(pa->isa, g), at = data->len;
    size_t count = (size_t)(g->cout * g->cin);
    float *u = kiln_malloc(sizeof(float) * WINO_POINTS * (count ? count : 1));
    if (!u) return KILN_ERR_OUT_OF_MEMORY;
    kiln_status st = KILN_OK;
    kiln_buf_zeros(data, bytes);
    if (data->failed) {
        st = KILN_ERR_OUT_OF_MEMORY;
        goto fail;
    }
    transform_weights(g, in[1].data, u);
    for (int32_t p = 0; p < WINO_POINTS; p++) {
        st = gemm_pack_a(pa->isa, g->cout, g->cin, u + (size_t)p * count, g->cin, false,
                         data->data + at + (size_t)p * one, one);
        if (st) goto fail;
    }
fail:
    kiln_free(u);
    return st;
}

static bool data_ok_path(const wino_path *pa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                         const ir_tensor *out, int32_t n_out, const void *data, uint64_t bytes)
{
    wino_layer l;
    if (!layer_of(n, in, n_in, out, n_out, &l) || bytes != packed_bytes(pa->isa, &l.g))
        return false;
    size_t one = slot_bytes(pa->isa, &l.g);
    for (int32_t p = 0; p < WINO_POINTS; p++)
        if (gemm_packed_check((const uint8_t *)data + (size_t)p * one, one, pa->isa, GEMM_OPERAND_A,
                              l.g.cout, l.g.cin) != KILN_OK)
            return false;
    return true;
}

/* The most any run with up to `threads` threads needs at these (the largest) shapes: the
 * block size depends on the thread count, so each count up to `threads` is tried. */
static size_t scratch_path(const wino_path *pa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                           const ir_tensor *out, int32_t n_out, int32_t threads)
{
    wino_layer l;
    if (!layer_of(n, in, n_in, out, n_out, &l)) return 0;
    size_t most = 0;
    for (int32_t t = 1; t <= (threads < 1 ? 1 : threads); t++) {
        int64_t nb = block_tiles(&l.g, t);
        size_t need = (size_t)run_threads(&l.g, nb, t) * slice_bytes(pa->isa, &l.g, nb);
        if (need > most) most = need;
    }
    return most;
}

/* Tiles [t0, t0 + nt) through the transforms and the GEMMs, in one thread's slice. */
static kiln_status run_block(const wino_path *pa, const wino_layer *l, const float *x,
                             const void *packed, const wino_epilogue *ep, float *y, int64_t t0,
                             int64_t nt, int64_t nb, uint8_t *slice, size_t slice_size)
{
    const wino_geom *g = &l->g;
    float *v = (float *)(void *)slice;
    size_t vb = ((size_t)(WINO_POINTS * g->cin * nb) * sizeof(float) + 63) & ~(size_t)63;
    float *m = (float *)(void *)(slice + vb);
    size_t mb = ((size_t)(WINO_POINTS * g->cout * nb) * sizeof(float) + 63) & ~(size_t)63;
    uint8_t *gs = slice + vb + mb;
    pa->input(g, x, t0, nt, v, nb);
    /* the whole last group: its missing tiles are zero, and the output transform reads it */
    const int64_t cols = round_up(nt, WINO_GROUP);
    for (int32_t p = 0; p < WINO_POINTS; p++) {
        gemm_args a = point_args(pa->isa, g, packed, p, v, m, cols, nb);
        KILN_TRY(gemm_run(&a, gs, slice_size - vb - mb, 1));
    }
    pa->output(g, m, nb, t0, nt, ep, y);
    return KILN_OK;
}

static kiln_status run_path(const wino_path *pa, const ir_node *n, const ir_tensor *in,
                            int32_t n_in, ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    wino_layer l;
    if (!layer_of(n, in, n_in, out, n_out, &l) || !x->data ||
        x->data_bytes != packed_bytes(pa->isa, &l.g))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the Winograd kernel does not run this layer");
    const wino_geom *g = &l.g;
    if (g->tiles == 0 || g->cout == 0) return KILN_OK;
    const int32_t threads = x->threads < 1 ? 1 : x->threads;
    const int64_t nb = block_tiles(g, threads), blocks = ceil_div(g->tiles, nb);
    const size_t slice = slice_bytes(pa->isa, g, nb);
    if (!slice || slice > x->scratch_bytes || !x->scratch)
        return ir_node_error(n, KILN_ERR_INTERNAL, "kernel scratch of %zu bytes, %zu needed",
                             x->scratch_bytes, slice);
    /* scratch_path sized it for these shapes or larger ones; should a smaller shape want more
     * slices, fewer threads run (the bytes are the same) */
    int32_t nt = run_threads(g, nb, threads);
    if ((size_t)nt > x->scratch_bytes / slice) nt = (int32_t)(x->scratch_bytes / slice);
    const wino_epilogue ep = {l.bias >= 0 ? in[l.bias].data : NULL, l.z >= 0 ? in[l.z].data : NULL,
                              l.act, l.alpha, l.beta};
    const float *xd = in[0].data;
    float *yd = out[0].data;
    uint8_t *scratch = x->scratch;
    if (nt == 1) {
        for (int64_t b = 0; b < blocks; b++) {
            int64_t t0 = b * nb, cnt = g->tiles - t0 < nb ? g->tiles - t0 : nb;
            KILN_TRY(run_block(pa, &l, xd, x->data, &ep, yd, t0, cnt, nb, scratch, slice));
        }
        return KILN_OK;
    }
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        /* the runtime may give fewer threads than asked: each takes every nth block */
        const int32_t id = omp_get_thread_num(), cnt_t = omp_get_num_threads();
        for (int64_t b = id; b < blocks; b += cnt_t) {
            int64_t t0 = b * nb, cnt = g->tiles - t0 < nb ? g->tiles - t0 : nb;
            if (run_block(pa, &l, xd, x->data, &ep, yd, t0, cnt, nb, scratch + (size_t)id * slice,
                          slice) != KILN_OK) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
#else
    for (int64_t b = 0; b < blocks; b++) {
        int64_t t0 = b * nb, cnt = g->tiles - t0 < nb ? g->tiles - t0 : nb;
        if (run_block(pa, &l, xd, x->data, &ep, yd, t0, cnt, nb, scratch, slice)) failed = 1;
    }
#endif
    /* A worker's error message is in its own thread: say here that one failed. */
    if (failed) return ir_node_error(n, KILN_ERR_INTERNAL, "a Winograd tile block failed");
    return KILN_OK;
}

#if defined(__x86_64__)
static const wino_path k_avx512 = {GEMM_ISA_AVX512, wino_input_avx512, wino_output_avx512};
static const wino_path k_avx2 = {GEMM_ISA_AVX2, wino_input_avx2, wino_output_avx2};
#else
static const wino_path k_avx512 = {GEMM_ISA_AVX512, NULL, NULL};
static const wino_path k_avx2 = {GEMM_ISA_AVX2, NULL, NULL};
#endif
static const wino_path k_generic = {GEMM_ISA_GENERIC, wino_input_generic, wino_output_generic};

#define WINO_PATH(suffix, PATH)                                                                    \
    static bool applies_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,              \
                                 const ir_tensor *out, int32_t n_out)                              \
    {                                                                                              \
        return applies_path(&PATH, n, in, n_in, out, n_out);                                       \
    }                                                                                              \
    static kiln_status prepare_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,       \
                                        const ir_tensor *out, int32_t n_out, kiln_buf *data)       \
    {                                                                                              \
        return prepare_path(&PATH, n, in, n_in, out, n_out, data);                                 \
    }                                                                                              \
    static bool data_ok_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,              \
                                 const ir_tensor *out, int32_t n_out, const void *data,            \
                                 uint64_t bytes)                                                   \
    {                                                                                              \
        return data_ok_path(&PATH, n, in, n_in, out, n_out, data, bytes);                          \
    }                                                                                              \
    static size_t scratch_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,            \
                                   const ir_tensor *out, int32_t n_out, int32_t threads)           \
    {                                                                                              \
        return scratch_path(&PATH, n, in, n_in, out, n_out, threads);                              \
    }                                                                                              \
    static kiln_status run_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,           \
                                    ir_tensor *out, int32_t n_out, const backend_exec *x)          \
    {                                                                                              \
        return run_path(&PATH, n, in, n_in, out, n_out, x);                                        \
    }

WINO_PATH(avx512, k_avx512)
WINO_PATH(avx2, k_avx2)
WINO_PATH(generic, k_generic)

#define KERNEL(suffix, OP, FEATURES)                                                               \
    {                                                                                              \
        .name = "winograd_f4_" #suffix, .op = OP, .features = FEATURES,                            \
        .applies = applies_##suffix, .run = run_##suffix, .prepare = prepare_##suffix,             \
        .data_ok = data_ok_##suffix, .scratch = scratch_##suffix, .prepared_inputs = 1u << 1       \
    }

/* The AVX-512 transforms use masked 128/256-bit loads and stores (VL). */
#define F_AVX512 (KILN_CPU_AVX512F | KILN_CPU_AVX512VL | KILN_CPU_AVX2 | KILN_CPU_FMA)
#define F_AVX2   (KILN_CPU_AVX2 | KILN_CPU_FMA)

#define PATHS(OP) KERNEL(avx512, OP, F_AVX512), KERNEL(avx2, OP, F_AVX2), KERNEL(generic, OP, 0)

const backend_kernel cpu_winograd_kernels[] = {PATHS("Conv"), PATHS("kiln.Conv")};
const int32_t cpu_winograd_kernel_count =
    sizeof cpu_winograd_kernels / sizeof *cpu_winograd_kernels;
