/* transpose.c - Transpose of any dtype of 1, 2, 4 or 8 bytes. The permutation is first reduced
 * (dims of size 1 dropped, output dims that stay adjacent in the input merged); then either the
 * output's last dim is contiguous in the input and whole runs are copied, or it is a batch of
 * 2-D transposes: 4-byte elements through the ISA file's register tiles (16x16 AVX-512, 8x8
 * AVX2), other sizes through cache-sized tiles of scalar copies. */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/transformer_impl.h"

/* Below this many bytes a transpose runs on one thread (a memory-bound copy). */
#define TP_PARALLEL_MIN_BYTES ((int64_t)1 << 19)
/* The scalar 2-D tiles: 16 x 16 elements, at most 2 KiB of input lines in L1. */
#define TP_TILE 16

tf_transpose32_fn tf_transpose32_of(gemm_isa isa)
{
    switch (isa) {
    case GEMM_ISA_GENERIC: return tf_transpose32_generic;
#if defined(__x86_64__)
    case GEMM_ISA_AVX2: return tf_transpose32_avx2;
    case GEMM_ISA_AVX512: return tf_transpose32_avx512;
#else
    case GEMM_ISA_AVX2:
    case GEMM_ISA_AVX512: return NULL;
#endif
    }
    return NULL;
}

/* out[a * ldo + b] = in[b * ldi + a], in tiles of TP_TILE x TP_TILE. */
#define TP2D(T)                                                                                    \
    static void tp2d_##T(const T *restrict in, int64_t ldi, T *restrict out, int64_t ldo,          \
                         int64_t rows, int64_t cols)                                               \
    {                                                                                              \
        for (int64_t a0 = 0; a0 < rows; a0 += TP_TILE) {                                           \
            const int64_t a1 = rows - a0 < TP_TILE ? rows : a0 + TP_TILE;                          \
            for (int64_t b0 = 0; b0 < cols; b0 += TP_TILE) {                                       \
                const int64_t b1 = cols - b0 < TP_TILE ? cols : b0 + TP_TILE;                      \
                for (int64_t a = a0; a < a1; a++)                                                  \
                    for (int64_t b = b0; b < b1; b++) out[a * ldo + b] = in[b * ldi + a];          \
            }                                                                                      \
        }                                                                                          \
    }
TP2D(uint8_t)
TP2D(uint16_t)
TP2D(uint32_t)
TP2D(uint64_t)

void tf_transpose32_generic(const uint32_t *in, int64_t ldi, uint32_t *out, int64_t ldo,
                            int64_t rows, int64_t cols)
{
    tp2d_uint32_t(in, ldi, out, ldo, rows, cols);
}

/* ---- the reduced permutation ---- */

typedef struct tp_plan {
    int32_t r;                             /* dims after reduction, >= 1 */
    int64_t n[KILN_MAX_RANK];              /* output dims */
    int64_t is[KILN_MAX_RANK];             /* the input stride of each (elements) */
    int64_t os[KILN_MAX_RANK];             /* the output stride of each */
    int32_t q;                             /* the dim with input stride 1 (2-D form), -1: runs */
    int32_t outer[KILN_MAX_RANK], n_outer; /* the dims iterated around a run or a 2-D tile */
    int64_t units, per; /* units of work (runs, or strips of rows of one 2-D tile) */
    int64_t strip;      /* 2-D: rows per strip */
    size_t es;
} tp_plan;

/* The permutation of the layer (its default: reversed dims); false when not one of 0..rank-1. */
static bool perm_of(const ir_node *n, int32_t rank, int32_t *perm)
{
    int32_t cnt = 0;
    const int64_t *p = ir_attr_ints(n, "perm", &cnt);
    bool seen[KILN_MAX_RANK] = {false};
    if (!p) {
        for (int32_t i = 0; i < rank; i++) perm[i] = rank - 1 - i;
        return true;
    }
    if (cnt != rank) return false;
    for (int32_t i = 0; i < rank; i++) {
        if (p[i] < 0 || p[i] >= rank || seen[p[i]]) return false;
        seen[p[i]] = true;
        perm[i] = (int32_t)p[i];
    }
    return true;
}

static bool plan_of(const ir_node *nd, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                    int32_t n_out, tp_plan *p)
{
    memset(p, 0, sizeof *p);
    if (n_in != 1 || n_out != 1 || !ir_tensor_present(&in[0]) || in[0].layout != IR_LAYOUT_PLAIN ||
        out[0].layout != IR_LAYOUT_PLAIN || out[0].dtype != in[0].dtype)
        return false;
    p->es = kiln_dtype_size(in[0].dtype);
    if (p->es != 1 && p->es != 2 && p->es != 4 && p->es != 8) return false;
    const kiln_dims *s = &in[0].shape;
    int32_t perm[KILN_MAX_RANK];
    int64_t st[KILN_MAX_RANK];
    if (s->rank > KILN_MAX_RANK || !perm_of(nd, s->rank, perm)) return false;
    kiln_dims want = *s;
    for (int32_t i = 0; i < s->rank; i++) want.d[i] = s->d[perm[i]];
    if (!kiln_dims_equal(&want, &out[0].shape)) return false;
    if (kiln_dims_count(s) == 0) return true; /* nothing to move: no units */
    kiln_dims_strides(s, st);
    for (int32_t i = 0; i < s->rank; i++) {
        const int64_t dim = s->d[perm[i]], stride = st[perm[i]];
        if (dim == 1) continue;
        /* output dims i-1 and i stay adjacent in the input: one dim */
        if (p->r > 0 && p->is[p->r - 1] == stride * dim) {
            p->n[p->r - 1] *= dim;
            p->is[p->r - 1] = stride;
            continue;
        }
        p->n[p->r] = dim;
        p->is[p->r] = stride;
        p->r++;
    }
    if (p->r == 0) {
        p->r = 1;
        p->n[0] = 1;
        p->is[0] = 1;
    }
    const int32_t r = p->r;
    p->os[r - 1] = 1;
    for (int32_t i = r - 2; i >= 0; i--) p->os[i] = p->os[i + 1] * p->n[i + 1];
    p->q = -1;
    if (p->is[r - 1] != 1)
        for (int32_t i = 0; i < r - 1; i++)
            if (p->is[i] == 1) p->q = i;
    /* the innermost input dim of size > 1 has stride 1 and survives: a q exists */
    if (p->is[r - 1] != 1 && p->q < 0) return false;
    for (int32_t i = 0; i < r - 1; i++)
        if (i != p->q) p->outer[p->n_outer++] = i;
    int64_t outer = 1;
    for (int32_t i = 0; i < p->n_outer; i++) outer *= p->n[p->outer[i]];
    if (p->q < 0) {
        p->units = outer;
        p->per = 1;
    } else {
        /* strips of whole tiles, about 4K elements each, so a unit is worth its bookkeeping */
        const int64_t rows = p->n[p->q], cols = p->n[r - 1];
        int64_t strip = (4096 / cols + 15) / 16 * 16;
        if (strip < 16) strip = 16;
        p->strip = strip < rows ? strip : rows;
        p->per = (rows + p->strip - 1) / p->strip;
        p->units = outer * p->per;
    }
    return true;
}

/* Input and output offsets (elements) of outer index `o` (linear over the outer dims). */
static void outer_offsets(const tp_plan *p, int64_t o, int64_t *io, int64_t *oo)
{
    *io = *oo = 0;
    for (int32_t k = p->n_outer - 1; k >= 0; k--) {
        const int32_t d = p->outer[k];
        const int64_t idx = o % p->n[d];
        o /= p->n[d];
        *io += idx * p->is[d];
        *oo += idx * p->os[d];
    }
}

/* Runs of `bytes` from in (steps of in_step bytes) to consecutive places of out. */
static void copy_runs(const uint8_t *in, int64_t in_step, uint8_t *out, size_t bytes, int64_t count)
{
#define RUNS(B)                                                                                    \
    for (int64_t i = 0; i < count; i++) memcpy(out + (size_t)i * B, in + i * in_step, B);          \
    return;
    switch (bytes) {
    case 1: RUNS(1)
    case 2: RUNS(2)
    case 4: RUNS(4)
    case 8: RUNS(8)
    case 16: RUNS(16)
    default: break;
    }
#undef RUNS
    for (int64_t i = 0; i < count; i++) memcpy(out + (size_t)i * bytes, in + i * in_step, bytes);
}

/* Units [u0, u1) of the plan. */
static void tp_units(const tp_plan *p, tf_transpose32_fn t32, const uint8_t *in, uint8_t *out,
                     int64_t u0, int64_t u1)
{
    const int32_t r = p->r;
    const size_t es = p->es;
    if (p->q < 0) {
        /* runs of n[r-1] elements; the outer dims' last one is walked in place */
        const size_t run = (size_t)p->n[r - 1] * es;
        const int32_t last = p->n_outer > 0 ? p->outer[p->n_outer - 1] : -1;
        const int64_t len = last >= 0 ? p->n[last] : 1, step = last >= 0 ? p->is[last] : 0;
        for (int64_t u = u0; u < u1;) {
            int64_t io, oo;
            outer_offsets(p, u, &io, &oo);
            const int64_t at = u % len, cnt = len - at < u1 - u ? len - at : u1 - u;
            copy_runs(in + (size_t)io * es, step * (int64_t)es, out + (size_t)oo * es, run, cnt);
            u += cnt;
        }
        return;
    }
    const int64_t rows = p->n[p->q], cols = p->n[r - 1];
    const int64_t ldi = p->is[r - 1], ldo = p->os[p->q];
    for (int64_t u = u0; u < u1; u++) {
        int64_t io, oo;
        outer_offsets(p, u / p->per, &io, &oo);
        const int64_t a0 = u % p->per * p->strip;
        const int64_t na = rows - a0 < p->strip ? rows - a0 : p->strip;
        io += a0; /* input stride 1 along a */
        oo += a0 * ldo;
        switch (es) {
        case 1:
            tp2d_uint8_t((const uint8_t *)in + io, ldi, (uint8_t *)out + oo, ldo, na, cols);
            break;
        case 2:
            tp2d_uint16_t((const uint16_t *)(const void *)in + io, ldi,
                          (uint16_t *)(void *)out + oo, ldo, na, cols);
            break;
        case 4:
            t32((const uint32_t *)(const void *)in + io, ldi, (uint32_t *)(void *)out + oo, ldo, na,
                cols);
            break;
        default:
            tp2d_uint64_t((const uint64_t *)(const void *)in + io, ldi,
                          (uint64_t *)(void *)out + oo, ldo, na, cols);
            break;
        }
    }
}

bool tf_transpose_applies(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                          const ir_tensor *out, int32_t n_out)
{
    tp_plan p;
    return tf_isa_runs(isa) && tf_transpose32_of(isa) && plan_of(n, in, n_in, out, n_out, &p);
}

size_t tf_transpose_scratch(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                            const ir_tensor *out, int32_t n_out, int32_t threads)
{
    (void)isa, (void)n, (void)in, (void)n_in, (void)out, (void)n_out, (void)threads;
    return 0;
}

kiln_status tf_transpose_run(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                             ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    tp_plan p;
    if (!plan_of(n, in, n_in, out, n_out, &p))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the transpose kernel does not run this layer");
    const int64_t count = ir_tensor_count(&out[0]);
    if (count == 0) return KILN_OK;
    tf_transpose32_fn t32 = tf_transpose32_of(isa);
    if (!t32 || (gemm_isa_features(isa) & ~kiln_cpu_features_hw()))
        return ir_node_error(n, KILN_ERR_DEVICE,
                             "the %s transpose needs CPU features this CPU lacks",
                             gemm_isa_name(isa));
    const uint8_t *src = in[0].data;
    uint8_t *dst = out[0].data;
    if (p.r == 1) {
        memcpy(dst, src, (size_t)count * p.es);
        return KILN_OK;
    }
    int64_t threads = x->threads;
    const int64_t bytes = count * (int64_t)p.es;
    if (threads > bytes / TP_PARALLEL_MIN_BYTES) threads = bytes / TP_PARALLEL_MIN_BYTES;
    if (threads > p.units) threads = p.units;
    if (threads <= 1) {
        tp_units(&p, t32, src, dst, 0, p.units);
        return KILN_OK;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads((int)threads)
    {
        /* contiguous shares of the units (a copy: any split gives the same bytes) */
        const int64_t id = omp_get_thread_num(), nt = omp_get_num_threads();
        tp_units(&p, t32, src, dst, p.units * id / nt, p.units * (id + 1) / nt);
    }
#else
    tp_units(&p, t32, src, dst, 0, p.units);
#endif
    return KILN_OK;
}
