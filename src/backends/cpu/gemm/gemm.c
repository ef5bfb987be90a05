/* gemm.c - the GEMM driver: path choice, the packed-operand format, argument checks, the
 * split of C among threads and the cache-blocked loops around the ISA files' micro-kernels
 * (Goto's order: N blocks, K blocks with B packed, M blocks with A packed, then tiles). */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/gemm/gemm_impl.h"

/* Below this many flops one thread finishes in ~10 us, about what waking a second one
 * costs; measured with bench_gemm (docs/ARCHITECTURE.md, "GEMM"). */
#define GEMM_PARALLEL_MIN_FLOPS ((int64_t)1 << 21)
/* Narrow N: at most this many columns go through the nkernel instead of NR-wide tiles. */
#define GEMM_NARROW_N 4

/* ---- paths ---- */

static const gemm_kernel *kernel_of(gemm_isa isa)
{
    switch (isa) {
    case GEMM_ISA_GENERIC: return &gemm_f32_4x16_generic;
#if defined(__x86_64__)
    case GEMM_ISA_AVX2: return &gemm_f32_6x16_avx2;
    case GEMM_ISA_AVX512: return &gemm_f32_14x32_avx512;
#else
    case GEMM_ISA_AVX2:
    case GEMM_ISA_AVX512: return NULL;
#endif
    }
    return NULL;
}

uint64_t gemm_isa_features(gemm_isa isa)
{
    switch (isa) {
    case GEMM_ISA_GENERIC: return 0;
    case GEMM_ISA_AVX2: return KILN_CPU_AVX2 | KILN_CPU_FMA;
    /* every AVX-512 CPU has AVX2 and FMA; the file is built with them too */
    case GEMM_ISA_AVX512: return KILN_CPU_AVX512F | KILN_CPU_AVX2 | KILN_CPU_FMA;
    }
    return 0;
}

bool gemm_isa_supported(gemm_isa isa, uint64_t cpu_features)
{
    const uint64_t need = gemm_isa_features(isa);
    return kernel_of(isa) != NULL && (need & ~cpu_features) == 0;
}

gemm_isa gemm_isa_best(uint64_t cpu_features)
{
    if (gemm_isa_supported(GEMM_ISA_AVX512, cpu_features)) return GEMM_ISA_AVX512;
    if (gemm_isa_supported(GEMM_ISA_AVX2, cpu_features)) return GEMM_ISA_AVX2;
    return GEMM_ISA_GENERIC;
}

const char *gemm_isa_name(gemm_isa isa)
{
    switch (isa) {
    case GEMM_ISA_GENERIC: return "generic";
    case GEMM_ISA_AVX2: return "avx2";
    case GEMM_ISA_AVX512: return "avx512";
    }
    return "?";
}

bool gemm_isa_tile(gemm_isa isa, int32_t *mr, int32_t *nr)
{
    const gemm_kernel *kr = kernel_of(isa);
    if (!kr) return false;
    *mr = kr->mr;
    *nr = kr->nr;
    return true;
}

static size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }
static size_t round_up(size_t a, size_t b) { return ceil_div(a, b) * b; }
static size_t min_sz(size_t a, size_t b) { return a < b ? a : b; }

/* The K block for K: K in blocks of equal size, a multiple of 8, at most the path's kc (1
 * for K = 0). Packed operands are laid out by it. */
static size_t kblock_of(const gemm_kernel *kr, size_t k)
{
    const size_t blocks = k ? ceil_div(k, (size_t)kr->kc) : 1;
    return blocks > 1 ? round_up(ceil_div(k, blocks), 8) : (k ? k : 1);
}

/* ---- the packed format ---- */

/* Header, 64 bytes, little-endian (kiln builds only for little-endian hosts):
 *    0 u32 magic "KGPK"    4 u32 format version   8 u32 isa   12 u32 operand (1 A, 2 B)
 *   16 u32 panel width    20 u32 K block kb      24 i64 rows  32 i64 cols
 *   40 u64 payload bytes  48..63 zero
 * Payload: K blocks of kb steps (the last may be shorter: kc = min(kb, K - k0)), each the
 * block's W' = ceil(W / panel) * panel lines (W = M for A, N for B) as W' / panel panels of
 * kc groups of `panel` floats, i.e. exactly what the driver packs into its scratch for one K
 * block, so a prepacked operand is read the same way. A (i, k): block k0 = k - k % kb at
 * k0 * M', then panel i / mr at (i / mr) * kc * mr, then [(k - k0) * mr + i % mr]; B (k, j)
 * likewise with N', nr and j. Lanes past M (N) are 0. kb is the K block the path's driver
 * uses for this K (kblock_of), so it is checked, not chosen. */
#define PACK_MAGIC   0x4b50474bu /* "KGPK" */
#define PACK_VERSION 1u
#define PACK_HEADER  64

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Payload floats of `w` lines (rows of A, columns of B) by k in panels of `panel`; false on
 * overflow. */
static bool payload_floats(int64_t w, int64_t k, int32_t panel, uint64_t *out)
{
    if (w < 0 || k < 0) return false;
    const uint64_t panels = ((uint64_t)w + (uint64_t)panel - 1) / (uint64_t)panel;
    const uint64_t per = (uint64_t)k * (uint64_t)panel;
    if (per && panels > (UINT64_MAX / 4 - PACK_HEADER) / per) return false;
    *out = panels * per;
    return *out <= (SIZE_MAX - PACK_HEADER) / sizeof(float);
}

static size_t pack_bytes(gemm_isa isa, gemm_operand which, int64_t w, int64_t k)
{
    const gemm_kernel *kr = kernel_of(isa);
    uint64_t floats;
    if (!kr || !payload_floats(w, k, which == GEMM_OPERAND_A ? kr->mr : kr->nr, &floats)) return 0;
    return PACK_HEADER + (size_t)floats * sizeof(float);
}

size_t gemm_pack_a_bytes(gemm_isa isa, int64_t m, int64_t k)
{
    return pack_bytes(isa, GEMM_OPERAND_A, m, k);
}

size_t gemm_pack_b_bytes(gemm_isa isa, int64_t k, int64_t n)
{
    return pack_bytes(isa, GEMM_OPERAND_B, n, k);
}

static const float *packed_data(const void *p)
{
    return (const float *)(const void *)((const uint8_t *)p + PACK_HEADER);
}

/* `rows` x `cols` of the matrix as given (after any transpose), row stride ld. */
static kiln_status check_matrix(const char *what, const float *p, int64_t rows, int64_t cols,
                                int64_t ld)
{
    if (rows < 0 || cols < 0)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: %s has negative dims %lld x %lld", what,
                          (long long)rows, (long long)cols);
    if (ld < (cols > 1 ? cols : 1))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "gemm: %s row stride %lld is below its row length %lld", what,
                          (long long)ld, (long long)cols);
    if (!p && rows > 0 && cols > 0)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: %s is NULL", what);
    return KILN_OK;
}

static kiln_status pack_operand(gemm_isa isa, gemm_operand which, int64_t w, int64_t k,
                                const float *src, size_t s_k, size_t s_w, void *dst,
                                size_t dst_bytes)
{
    const gemm_kernel *kr = kernel_of(isa);
    if (!kr)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: isa %d is not built into this kiln",
                          (int)isa);
    const size_t need = pack_bytes(isa, which, w, k);
    if (!need)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: packed size of %lld x %lld overflows",
                          (long long)w, (long long)k);
    if (!dst || dst_bytes < need)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "gemm: packing needs %zu bytes, the buffer has %zu", need,
                          dst ? dst_bytes : 0);
    const int32_t panel = which == GEMM_OPERAND_A ? kr->mr : kr->nr;
    uint8_t *h = dst;
    memset(h, 0, PACK_HEADER);
    put_u32(h + 0, PACK_MAGIC);
    put_u32(h + 4, PACK_VERSION);
    put_u32(h + 8, (uint32_t)isa);
    put_u32(h + 12, (uint32_t)which);
    put_u32(h + 16, (uint32_t)panel);
    put_u32(h + 20, (uint32_t)kblock_of(kr, (size_t)k));
    put_u64(h + 24, (uint64_t)(which == GEMM_OPERAND_A ? w : k));
    put_u64(h + 32, (uint64_t)(which == GEMM_OPERAND_A ? k : w));
    put_u64(h + 40, need - PACK_HEADER);
    if (w > 0 && k > 0) {
        const gemm_pack_fn pack = kr->pack ? kr->pack : gemm_pack_generic;
        const size_t kb = kblock_of(kr, (size_t)k), wpad = round_up((size_t)w, (size_t)panel);
        float *out = (float *)(void *)(h + PACK_HEADER);
        for (size_t k0 = 0; k0 < (size_t)k; k0 += kb)
            pack(out + k0 * wpad, src + k0 * s_k, s_k, s_w, min_sz(kb, (size_t)k - k0), (size_t)w,
                 (size_t)panel);
    }
    return KILN_OK;
}

kiln_status gemm_pack_a(gemm_isa isa, int64_t m, int64_t k, const float *a, int64_t lda,
                        bool trans_a, void *dst, size_t dst_bytes)
{
    KILN_TRY(
        check_matrix(trans_a ? "A^T [K,M]" : "A [M,K]", a, trans_a ? k : m, trans_a ? m : k, lda));
    return pack_operand(isa, GEMM_OPERAND_A, m, k, a, trans_a ? (size_t)lda : 1,
                        trans_a ? 1 : (size_t)lda, dst, dst_bytes);
}

kiln_status gemm_pack_b(gemm_isa isa, int64_t k, int64_t n, const float *b, int64_t ldb,
                        bool trans_b, void *dst, size_t dst_bytes)
{
    KILN_TRY(
        check_matrix(trans_b ? "B^T [N,K]" : "B [K,N]", b, trans_b ? n : k, trans_b ? k : n, ldb));
    return pack_operand(isa, GEMM_OPERAND_B, n, k, b, trans_b ? 1 : (size_t)ldb,
                        trans_b ? (size_t)ldb : 1, dst, dst_bytes);
}

kiln_status gemm_packed_check(const void *p, size_t bytes, gemm_isa isa, gemm_operand which,
                              int64_t rows, int64_t cols)
{
    const char *name = which == GEMM_OPERAND_A ? "A" : "B";
    if (!p || bytes < PACK_HEADER)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: %zu bytes, smaller than its header",
                          name, p ? bytes : 0);
    const uint8_t *h = p;
    if (get_u32(h) != PACK_MAGIC)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: bad magic 0x%08x", name, get_u32(h));
    if (get_u32(h + 4) != PACK_VERSION)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: format version %u, expected %u", name,
                          get_u32(h + 4), PACK_VERSION);
    if (get_u32(h + 8) != (uint32_t)isa)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: packed for isa %u (%s), expected %s",
                          name, get_u32(h + 8), gemm_isa_name((gemm_isa)get_u32(h + 8)),
                          gemm_isa_name(isa));
    if (get_u32(h + 12) != (uint32_t)which)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: holds operand %u", name,
                          get_u32(h + 12));
    for (size_t i = 48; i < PACK_HEADER; i++)
        if (h[i])
            return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: reserved header byte %zu is %u",
                              name, i, h[i]);
    const gemm_kernel *kr = kernel_of(isa);
    if (!kr)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: isa %s is not built into this kiln",
                          name, gemm_isa_name(isa));
    const uint32_t panel = (uint32_t)(which == GEMM_OPERAND_A ? kr->mr : kr->nr);
    if (get_u32(h + 16) != panel)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: panel width %u, expected %u", name,
                          get_u32(h + 16), panel);
    const int64_t kdim = which == GEMM_OPERAND_A ? cols : rows;
    const uint32_t kb = kdim >= 0 ? (uint32_t)kblock_of(kr, (size_t)kdim) : 0;
    if (get_u32(h + 20) != kb)
        return kiln_error(KILN_ERR_CORRUPT_PLAN, "packed %s: K block %u, expected %u", name,
                          get_u32(h + 20), kb);
    if (get_u64(h + 24) != (uint64_t)rows || get_u64(h + 32) != (uint64_t)cols)
        return kiln_error(KILN_ERR_CORRUPT_PLAN,
                          "packed %s: holds %lld x %lld, expected %lld x %lld", name,
                          (long long)get_u64(h + 24), (long long)get_u64(h + 32), (long long)rows,
                          (long long)cols);
    const size_t need = which == GEMM_OPERAND_A ? gemm_pack_a_bytes(isa, rows, cols)
                                                : gemm_pack_b_bytes(isa, rows, cols);
    if (!need || get_u64(h + 40) != need - PACK_HEADER || bytes < need)
        return kiln_error(KILN_ERR_CORRUPT_PLAN,
                          "packed %s: payload of %llu bytes in %zu, expected %zu", name,
                          (unsigned long long)get_u64(h + 40), bytes, need);
    return KILN_OK;
}

/* ---- the plan of one call: path, thread grid, block sizes ---- */

typedef struct gemm_plan {
    const gemm_kernel *kr;
    size_t m, n, k;
    size_t mtiles, ntiles; /* tiles of mr rows, nr columns (1 when narrow) */
    bool narrow;           /* N <= GEMM_NARROW_N through the nkernel */
    int32_t threads, tm, tn;
    size_t kc, mc, nc;   /* block sizes used */
    size_t slice_floats; /* scratch per thread: A block then B block, 64-byte aligned each */
    size_t a_floats;     /* the A block's part of a slice */
} gemm_plan;

/* Picks tm x tn = t threads over the tile grid, minimizing the largest share's cost: its
 * FMAs plus what it packs (about one cycle per element against 32 FMA lanes a cycle). */
static bool pick_grid(const gemm_args *g, const gemm_plan *p, int32_t t, int32_t *tm, int32_t *tn)
{
    const size_t mr = (size_t)p->kr->mr, nr = (size_t)p->kr->nr;
    double best = -1;
    for (int32_t a = 1; a <= t; a++) {
        if (t % a) continue;
        const size_t b = (size_t)(t / a);
        if ((size_t)a > p->mtiles || b > p->ntiles) continue;
        const double rows = (double)(ceil_div(p->mtiles, (size_t)a) * mr);
        const double cols = p->narrow ? (double)p->n : (double)(ceil_div(p->ntiles, b) * nr);
        double cost = rows * cols * (double)p->k;
        if (!g->a_packed)
            cost += 32.0 * rows * (double)p->k * (double)ceil_div((size_t)cols, p->nc);
        if (!g->b_packed && !p->narrow) cost += 32.0 * cols * (double)p->k;
        if (best < 0 || cost < best) {
            best = cost;
            *tm = a;
            *tn = (int32_t)b;
        }
    }
    return best >= 0;
}

/* Deterministic in (g, threads): gemm_scratch_bytes and gemm_run agree. Expects checked
 * dims. */
static void plan_make(const gemm_args *g, int32_t threads, gemm_plan *p)
{
    memset(p, 0, sizeof *p);
    const gemm_kernel *kr = p->kr = kernel_of(g->isa);
    p->m = (size_t)g->m;
    p->n = (size_t)g->n;
    p->k = (size_t)g->k;
    p->narrow = kr->nkernel && p->n <= GEMM_NARROW_N;
    p->mtiles = ceil_div(p->m, (size_t)kr->mr);
    p->ntiles = p->narrow ? 1 : ceil_div(p->n, (size_t)kr->nr);
    p->kc = kblock_of(kr, p->k);
    p->mc = (size_t)kr->mc;
    /* A raw B is packed block by block; a packed one needs no N blocks (its panels are all
     * there). Reading a raw B in place (row stride ldb) was tried: each K step then touches
     * another page, and TLB misses cost more than the packing pass saves. */
    p->nc = g->b_packed || p->narrow ? round_up(p->n ? p->n : 1, (size_t)kr->nr) : (size_t)kr->nc;

    p->threads = 1;
    p->tm = p->tn = 1;
    const double flops = 2.0 * (double)p->m * (double)p->n * (double)p->k;
    for (int32_t t = threads; t > 1 && flops >= (double)GEMM_PARALLEL_MIN_FLOPS; t--)
        if (pick_grid(g, p, t, &p->tm, &p->tn)) {
            p->threads = t;
            break;
        }

    /* the largest block any thread packs */
    const size_t kc = min_sz(p->kc, p->k);
    p->a_floats =
        g->a_packed ? 0 : round_up(min_sz(p->mc, round_up(p->m, (size_t)kr->mr)) * kc, 16);
    size_t b_floats = 0;
    if (!g->b_packed && !p->narrow)
        b_floats = round_up(min_sz(p->nc, round_up(p->n, (size_t)kr->nr)) * kc, 16);
    p->slice_floats = p->a_floats + b_floats;
}

static float *cblk_at(const gemm_args *g, size_t row, size_t col)
{
    return g->c + row * (size_t)g->ldc + col;
}

/* Where B's element (k, j) is in a raw B. */
static const float *b_at(const gemm_args *g, size_t k, size_t j)
{
    return g->trans_b ? g->b + j * (size_t)g->ldb + k : g->b + k * (size_t)g->ldb + j;
}

static bool has_epilogue(const gemm_epilogue *ep)
{
    return ep->bias_kind != GEMM_BIAS_NONE || ep->residual || ep->act != GEMM_ACT_NONE;
}

/* C = 0 (or kept) then the epilogue, for K = 0. */
static void run_k0(const gemm_args *g, const gemm_plan *p, size_t m0, size_t m1, size_t n0,
                   size_t n1)
{
    for (size_t i = m0; i < m1; i++)
        if (!g->accumulate) memset(g->c + i * (size_t)g->ldc + n0, 0, (n1 - n0) * sizeof(float));
    if (has_epilogue(&g->ep))
        p->kr->epilogue(g->c + m0 * (size_t)g->ldc + n0, (size_t)g->ldc, m1 - m0, n1 - n0, m0, n0,
                        &g->ep);
}

static bool act_is_cheap(gemm_act act)
{
    return act == GEMM_ACT_NONE || act == GEMM_ACT_RELU || act == GEMM_ACT_LEAKY_RELU ||
           act == GEMM_ACT_CLIP;
}

/* The narrow-N product of one A block (mcur rows at ic) and K block (pc, kcur): B is read in
 * place, element (k, j) at bcol[k * b_ks + j * b_js]. */
static void run_narrow(const gemm_args *g, const gemm_plan *p, const float *ablk, size_t astride,
                       size_t ic, size_t mcur, size_t pc, size_t kcur, bool acc, bool last)
{
    const gemm_kernel *kr = p->kr;
    const size_t mr = (size_t)kr->mr, nr = (size_t)kr->nr, ldb = (size_t)g->ldb;
    const size_t ldc = (size_t)g->ldc, cols = (size_t)kr->nkernel_cols;
    const float *bcol;
    size_t b_ks, b_js;
    if (g->b_packed) { /* N <= 4: one panel per K block */
        bcol = packed_data(g->b_packed) + pc * nr;
        b_ks = nr;
        b_js = 1;
    } else if (g->trans_b) {
        bcol = g->b + pc;
        b_ks = 1;
        b_js = ldb;
    } else {
        bcol = g->b + pc * ldb;
        b_ks = ldb;
        b_js = 1;
    }
    float *cblk = cblk_at(g, ic, 0);
    for (size_t ir = 0; ir < mcur; ir += 4 * mr) {
        const size_t rows = min_sz(4 * mr, mcur - ir), panels = ceil_div(rows, mr);
        for (size_t j = 0; j < p->n; j += cols)
            kr->nkernel(panels, rows - (panels - 1) * mr, min_sz(cols, p->n - j), kcur,
                        ablk + (ir / mr) * astride, astride, bcol + j * b_js, b_ks, b_js,
                        cblk + ir * ldc + j, ldc, acc);
    }
    if (last && has_epilogue(&g->ep)) kr->epilogue(cblk, ldc, mcur, p->n, ic, 0, &g->ep);
}

/* Prefetches part `t` of `tiles` of the B panel at nb (`floats` long) into L2, one line at a
 * time, spread over the tiles that use the current panel, so that the next one is there when
 * its first tile starts: it begins 64 KiB on, past where the hardware prefetcher has got to
 * (measured on a prepacked B: +2-8% at 2048^3, neutral at 1024^3). */
static void prefetch_panel(const float *nb, size_t floats, size_t t, size_t tiles)
{
    const size_t lines = floats / 16;
    for (size_t l = t * lines / tiles; l < (t + 1) * lines / tiles; l++)
        __builtin_prefetch(nb + l * 16, 0, 2);
}

/* The serial blocked product over C[m0:m1, n0:n1] (m0 a multiple of mr, n0 of nr), packing
 * into sa / sb. */
static void run_region(const gemm_args *g, const gemm_plan *p, size_t m0, size_t m1, size_t n0,
                       size_t n1, float *sa, float *sb)
{
    const gemm_kernel *kr = p->kr;
    const size_t mr = (size_t)kr->mr, nr = (size_t)kr->nr, K = p->k, ldc = (size_t)g->ldc;
    const size_t lda = (size_t)g->lda, ldb = (size_t)g->ldb;
    const float *ap = g->a_packed ? packed_data(g->a_packed) : NULL;
    const float *bp = g->b_packed ? packed_data(g->b_packed) : NULL;
    const gemm_pack_fn pack = kr->pack ? kr->pack : gemm_pack_generic;
    const gemm_epilogue *ep = &g->ep;
    const bool epi = has_epilogue(ep), cheap = act_is_cheap(ep->act);
    /* what the micro-kernel does in registers, and the rest after it stores */
    gemm_post post = {.ldr = (size_t)ep->ldr,
                      .act = cheap ? ep->act : GEMM_ACT_NONE,
                      .alpha = ep->alpha,
                      .beta = ep->beta};
    const gemm_epilogue act_only = {.act = ep->act, .alpha = ep->alpha, .beta = ep->beta};
    /* A raw B is packed block by block for all of the region's M blocks, or, when there is
     * one M block, a group of panels (~512 KiB) at a time right before their tiles: then the
     * packed panels are still in L2 when the micro-kernel reads them (conv at M = 64: +8%;
     * one panel at a time reads B in narrow strips, a page per row, and loses that again). */
    const bool panelwise = !bp && !p->narrow && m1 - m0 <= p->mc;

    if (K == 0) {
        run_k0(g, p, m0, m1, n0, n1);
        return;
    }
    for (size_t jc = n0; jc < n1; jc += p->nc) {
        const size_t ncur = min_sz(p->nc, n1 - jc);
        for (size_t pc = 0; pc < K; pc += p->kc) {
            const size_t kcur = min_sz(p->kc, K - pc);
            const bool acc = pc > 0 || g->accumulate, last = pc + kcur == K;
            const size_t group = (size_t)1 << 17 > kcur * nr ? ((size_t)1 << 17) / (kcur * nr) : 1;
            /* B block: kcur x ncur in panels of nr, bstride floats apart */
            const float *bblk = NULL;
            size_t bstride = 0;
            if (bp) {
                bblk = bp + pc * round_up(p->n, nr) + (jc / nr) * kcur * nr;
                bstride = kcur * nr;
            } else if (!p->narrow && !panelwise) {
                pack(sb, b_at(g, pc, jc), g->trans_b ? 1 : ldb, g->trans_b ? ldb : 1, kcur, ncur,
                     nr);
                bblk = sb;
                bstride = kcur * nr;
            }
            for (size_t ic = m0; ic < m1; ic += p->mc) {
                const size_t mcur = min_sz(p->mc, m1 - ic);
                const float *ablk;
                size_t astride;
                if (ap) {
                    ablk = ap + pc * round_up(p->m, mr) + (ic / mr) * kcur * mr;
                    astride = kcur * mr;
                } else {
                    const float *src = g->trans_a ? g->a + pc * lda + ic : g->a + ic * lda + pc;
                    pack(sa, src, g->trans_a ? lda : 1, g->trans_a ? 1 : lda, kcur, mcur, mr);
                    ablk = sa;
                    astride = kcur * mr;
                }
                if (p->narrow) {
                    run_narrow(g, p, ablk, astride, ic, mcur, pc, kcur, acc, last);
                    continue;
                }
                const size_t tiles = ceil_div(mcur, mr);
                for (size_t jr = 0; jr < ncur; jr += nr) {
                    const size_t nrc = min_sz(nr, ncur - jr), col = jc + jr;
                    const float *bpanel = bblk + (jr / nr) * bstride;
                    if (panelwise) {
                        const size_t q = (jr / nr) % group;
                        if (q == 0)
                            pack(sb, b_at(g, pc, col), g->trans_b ? 1 : ldb, g->trans_b ? ldb : 1,
                                 kcur, min_sz(group * nr, ncur - jr), nr);
                        bpanel = sb + q * kcur * nr;
                    }
                    post.bias_col = ep->bias_kind == GEMM_BIAS_COL ? ep->bias + col : NULL;
                    for (size_t ir = 0; ir < mcur; ir += mr) {
                        const size_t mrc = min_sz(mr, mcur - ir), row = ic + ir;
                        float *ct = cblk_at(g, row, col);
                        if (bp && jr + nr < ncur)
                            prefetch_panel(bpanel + bstride, kcur * nr, ir / mr, tiles);
                        post.bias_row = ep->bias_kind == GEMM_BIAS_ROW ? ep->bias + row : NULL;
                        post.res = ep->residual ? ep->residual + row * post.ldr + col : NULL;
                        kr->ukernel(mrc, nrc, kcur, ablk + (ir / mr) * astride, bpanel, nr, ct, ldc,
                                    acc, last && epi ? &post : NULL);
                        if (last && !cheap) kr->epilogue(ct, ldc, mrc, nrc, row, col, &act_only);
                    }
                }
            }
        }
    }
}

/* Thread `r`'s share of the grid: whole tiles, balanced. */
static void run_share(const gemm_args *g, const gemm_plan *p, int32_t r, float *slice)
{
    const size_t ti = (size_t)(r / p->tn), tj = (size_t)(r % p->tn);
    const size_t mr = (size_t)p->kr->mr, nr = (size_t)p->kr->nr;
    const size_t m0 = min_sz(ti * p->mtiles / (size_t)p->tm * mr, p->m);
    const size_t m1 = min_sz((ti + 1) * p->mtiles / (size_t)p->tm * mr, p->m);
    size_t n0 = 0, n1 = p->n;
    if (!p->narrow) {
        n0 = min_sz(tj * p->ntiles / (size_t)p->tn * nr, p->n);
        n1 = min_sz((tj + 1) * p->ntiles / (size_t)p->tn * nr, p->n);
    }
    if (m0 < m1 && n0 < n1) run_region(g, p, m0, m1, n0, n1, slice, slice + p->a_floats);
}

/* ---- checks and entry points ---- */

static kiln_status check_args(const gemm_args *g)
{
    const gemm_kernel *kr = kernel_of(g->isa);
    if (!kr)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: isa %d is not built into this kiln",
                          (int)g->isa);
    if (g->m < 0 || g->n < 0 || g->k < 0)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: negative dims M=%lld N=%lld K=%lld",
                          (long long)g->m, (long long)g->n, (long long)g->k);
    if (g->a_packed) {
        if (g->a)
            return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: A is given both raw and packed");
        KILN_TRY(gemm_packed_check(g->a_packed, gemm_pack_a_bytes(g->isa, g->m, g->k), g->isa,
                                   GEMM_OPERAND_A, g->m, g->k));
    } else {
        KILN_TRY(check_matrix(g->trans_a ? "A^T [K,M]" : "A [M,K]", g->a, g->trans_a ? g->k : g->m,
                              g->trans_a ? g->m : g->k, g->lda));
    }
    if (g->b_packed) {
        if (g->b)
            return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: B is given both raw and packed");
        KILN_TRY(gemm_packed_check(g->b_packed, gemm_pack_b_bytes(g->isa, g->k, g->n), g->isa,
                                   GEMM_OPERAND_B, g->k, g->n));
    } else {
        KILN_TRY(check_matrix(g->trans_b ? "B^T [N,K]" : "B [K,N]", g->b, g->trans_b ? g->n : g->k,
                              g->trans_b ? g->k : g->n, g->ldb));
    }
    KILN_TRY(check_matrix("C", g->c, g->m, g->n, g->ldc));
    const gemm_epilogue *ep = &g->ep;
    if (ep->bias_kind != GEMM_BIAS_NONE && !ep->bias && g->m > 0 && g->n > 0)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: a bias kind without a bias");
    if (ep->bias_kind > GEMM_BIAS_ROW || ep->act > GEMM_ACT_ELU)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "gemm: unknown bias kind %d or activation %d",
                          (int)ep->bias_kind, (int)ep->act);
    if (ep->residual) KILN_TRY(check_matrix("residual", ep->residual, g->m, g->n, ep->ldr));
    return KILN_OK;
}

size_t gemm_scratch_bytes(const gemm_args *g, int32_t threads)
{
    if (!kernel_of(g->isa) || g->m < 0 || g->n < 0 || g->k < 0) return 0;
    gemm_plan p;
    plan_make(g, threads < 1 ? 1 : threads, &p);
    if (!p.slice_floats) return 0;
    /* 64 bytes to align the caller's pointer */
    return (size_t)p.threads * p.slice_floats * sizeof(float) + 64;
}

kiln_status gemm_run(const gemm_args *g, void *scratch, size_t scratch_bytes, int32_t threads)
{
    KILN_TRY(check_args(g));
    const uint64_t need = gemm_isa_features(g->isa) & ~kiln_cpu_features_hw();
    if (need) {
        char buf[128];
        kiln_cpu_features_str(need, buf, sizeof buf);
        return kiln_error(KILN_ERR_DEVICE, "gemm: the %s path needs %s, which this CPU lacks",
                          gemm_isa_name(g->isa), buf);
    }
    if (g->m == 0 || g->n == 0) return KILN_OK;
    gemm_plan p;
    plan_make(g, threads < 1 ? 1 : threads, &p);
    float *base = NULL;
    if (p.slice_floats) {
        const size_t need_bytes = (size_t)p.threads * p.slice_floats * sizeof(float) + 64;
        if (!scratch || scratch_bytes < need_bytes)
            return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                              "gemm: scratch of %zu bytes, this call needs %zu",
                              scratch ? scratch_bytes : 0, need_bytes);
        base = (float *)(void *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    }
    if (p.threads == 1) {
        run_share(g, &p, 0, base);
        return KILN_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(p.threads)
    {
        /* the runtime may give fewer threads than asked: each takes every nth share */
        const int32_t id = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int32_t r = id; r < p.threads; r += nt)
            run_share(g, &p, r, base ? base + (size_t)id * p.slice_floats : NULL);
    }
#else
    for (int32_t r = 0; r < p.threads; r++) run_share(g, &p, r, base);
#endif
    return KILN_OK;
}
