/* attention.c - kiln.Attention on the FP32 GEMM (gemm/gemm.h), and the table of the transformer
 * kernel family (attention, transpose.c, matmul_act.c). Per (batch, head) and block of query
 * rows: the scores Q.K^T by one GEMM into the scratch, then per row the scale, the mask and the
 * exponentials (the ISA file's vector exp), then the exponentials times V by a second GEMM and
 * each output row times 1 / its row's sum. */
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/transformer_impl.h"

/* Scores one thread holds at once: 256 KiB (a share of L2), or one row when a row is longer.
 * Query rows come in blocks of that many floats over Sk; each block packs K and V once for the
 * GEMMs, so a block of few rows would spend more on packing than on the products. */
#define ATT_BLOCK_FLOATS ((int64_t)1 << 16)

static bool plain_f32(const ir_tensor *t)
{
    return ir_tensor_present(t) && t->dtype == KILN_DTYPE_F32 && t->layout == IR_LAYOUT_PLAIN;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

/* ---- the ISA paths shared by the family ---- */

tf_softmax_row_fn tf_softmax_row_of(gemm_isa isa)
{
    switch (isa) {
    case GEMM_ISA_GENERIC: return tf_softmax_row_generic;
#if defined(__x86_64__)
    case GEMM_ISA_AVX2: return tf_softmax_row_avx2;
    case GEMM_ISA_AVX512: return tf_softmax_row_avx512;
#else
    case GEMM_ISA_AVX2:
    case GEMM_ISA_AVX512: return NULL;
#endif
    }
    return NULL;
}

bool tf_isa_runs(gemm_isa isa)
{
    return gemm_isa_supported(isa, kiln_cpu_features()) && tf_softmax_row_of(isa) != NULL;
}

/* The path's features on this hardware (KILN_ISA aside, as gemm_run checks them). */
static kiln_status isa_check(const ir_node *n, gemm_isa isa)
{
    const uint64_t need = gemm_isa_features(isa) & ~kiln_cpu_features_hw();
    if (!need && tf_softmax_row_of(isa)) return KILN_OK;
    char buf[128];
    kiln_cpu_features_str(need, buf, sizeof buf);
    return ir_node_error(n, KILN_ERR_DEVICE, "the %s kernel path needs %s, which this CPU lacks",
                         gemm_isa_name(isa), buf);
}

/* Portable: libm's expf, the sum in order. */
float tf_softmax_row_generic(float *s, int64_t n, const tf_softmax *p)
{
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        float x = s[j] * p->mul;
        if (p->has_div) x = x / p->div;
        if (p->mask) x = x + p->mask[j * p->mask_step];
        s[j] = x;
        if (x > mx) mx = x;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        const float e = expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    return sum;
}

/* ---- the layer's geometry ---- */

typedef struct att_shape {
    int32_t nb;            /* batch dims (rank - 2) */
    int64_t sq, sk, d, dv; /* query rows, key rows, head size, V's head size */
    bool kt;               /* K given as [..., D, Sk] */
    bool mask;
    tf_softmax sm;   /* mul, div: from q_scale, scale and scale_mode */
    kiln_dims ob;    /* the output's batch dims */
    int64_t batches; /* their count */
    /* per output batch dim: strides of Q, K, V in whole matrices, of the mask in elements
     * (then the mask's row and column strides) */
    int64_t qs[KILN_MAX_RANK], ks[KILN_MAX_RANK], vs[KILN_MAX_RANK], ms[KILN_MAX_RANK];
} att_shape;

/* Whether this is a kiln.Attention layer the kernels run, and its geometry. Checks what the
 * kernel's memory accesses rely on, since a plan's layers are untrusted. */
static bool shape_of(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                     int32_t n_out, att_shape *s)
{
    memset(s, 0, sizeof *s);
    if (n_out != 1 || n_in < 3 || n_in > 4 || !plain_f32(&in[0]) || !plain_f32(&in[1]) ||
        !plain_f32(&in[2]) || out[0].dtype != KILN_DTYPE_F32 || out[0].layout != IR_LAYOUT_PLAIN)
        return false;
    s->mask = n_in == 4 && ir_tensor_present(&in[3]);
    if (s->mask && !plain_f32(&in[3])) return false;
    const int64_t kt = ir_attr_int(n, "k_transposed");
    const char *mode = ir_attr_string(n, "scale_mode");
    if ((kt != 0 && kt != 1) || !mode || (strcmp(mode, "mul") != 0 && strcmp(mode, "div") != 0))
        return false;
    s->kt = kt == 1;
    const float qscale = ir_attr_float(n, "q_scale"), scale = ir_attr_float(n, "scale");
    /* The reference scales Q by q_scale before the dot products; here the dot products are
     * scaled instead (the same up to rounding), with the scale folded in when it multiplies. */
    s->sm.has_div = mode[0] == 'd' && scale != 1.0f;
    s->sm.mul = mode[0] == 'd' ? qscale : qscale * scale;
    s->sm.div = scale;

    const kiln_dims *q = &in[0].shape, *k = &in[1].shape, *v = &in[2].shape;
    const int32_t r = q->rank;
    if ((r != 3 && r != 4) || k->rank != r || v->rank != r) return false;
    s->nb = r - 2;
    s->sq = q->d[r - 2];
    s->d = q->d[r - 1];
    s->sk = k->d[s->kt ? r - 1 : r - 2];
    s->dv = v->d[r - 1];
    if (k->d[s->kt ? r - 2 : r - 1] != s->d || v->d[r - 2] != s->sk) return false;
    kiln_dims qb = kiln_dims_make(s->nb, q->d), kb = kiln_dims_make(s->nb, k->d);
    kiln_dims vb = kiln_dims_make(s->nb, v->d), qk;
    if (!ir_broadcast(&qb, &kb, &qk) || !ir_broadcast(&qk, &vb, &s->ob)) return false;
    kiln_dims o = s->ob;
    o.d[o.rank++] = s->sq;
    o.d[o.rank++] = s->dv;
    if (!kiln_dims_equal(&o, &out[0].shape)) return false;
    s->batches = kiln_dims_count(&s->ob);
    ir_broadcast_strides(&qb, &s->ob, s->qs);
    ir_broadcast_strides(&kb, &s->ob, s->ks);
    ir_broadcast_strides(&vb, &s->ob, s->vs);
    if (s->mask) {
        /* unidirectional: the mask broadcasts to the scores without growing them */
        kiln_dims sc = o, got;
        sc.d[sc.rank - 1] = s->sk;
        if (in[3].shape.rank > sc.rank || !ir_broadcast(&in[3].shape, &sc, &got) ||
            !kiln_dims_equal(&got, &sc))
            return false;
        ir_broadcast_strides(&in[3].shape, &sc, s->ms);
    }
    return true;
}

/* Offset of batch `t` (a linear index over ob) in a tensor of batch strides `st`. */
static int64_t batch_offset(const att_shape *s, int64_t t, const int64_t *st)
{
    int64_t off = 0;
    if (t == 0) return 0; /* also when a dim is 0 */
    for (int32_t i = s->nb - 1; i >= 0; i--) {
        off += (t % s->ob.d[i]) * st[i];
        t /= s->ob.d[i];
    }
    return off;
}

/* ---- scratch: per thread a slice of scores, row sums' reciprocals and GEMM scratch ---- */

typedef struct att_slice {
    size_t inv, gemm, gemm_bytes, bytes; /* offsets in the slice, its size (64-byte multiples) */
} att_slice;

/* The slice for any run of shapes up to `s`'s (a dynamic engine's largest): rows per block
 * stay below max(1, ATT_BLOCK_FLOATS / Sk) and Sq, so a block's scores below
 * max(ATT_BLOCK_FLOATS, Sk) and Sq * Sk; the GEMM's scratch grows with each dim. */
static att_slice slice_of(gemm_isa isa, const att_shape *s)
{
    att_slice l;
    const int64_t sk = max64(s->sk, 1), rows = max64(min64(s->sq, ATT_BLOCK_FLOATS), 1);
    const int64_t scores = min64(rows * sk, max64(ATT_BLOCK_FLOATS, sk));
    l.inv = round64(sizeof(float) * (size_t)scores);
    l.gemm = l.inv + round64(sizeof(float) * (size_t)rows);
    gemm_args g;
    memset(&g, 0, sizeof g);
    g.isa = isa;
    g.m = rows;
    g.n = max64(s->sk, s->dv);
    g.k = max64(s->d, s->sk);
    l.gemm_bytes = round64(gemm_scratch_bytes(&g, 1));
    l.bytes = l.gemm + l.gemm_bytes;
    return l;
}

/* Query rows per block: ATT_BLOCK_FLOATS of scores, fewer when the threads need more blocks
 * than the batches give (every output element is computed alike whatever the block: the
 * GEMM's sums do not depend on the tiling, and rows are independent). */
static int64_t block_rows(const att_shape *s, int32_t threads)
{
    int64_t mb = min64(s->sq, max64(1, ATT_BLOCK_FLOATS / max64(s->sk, 1)));
    if (threads > 1 && s->batches < threads) {
        const int64_t per = (threads + s->batches - 1) / s->batches;
        const int64_t want = ((s->sq + per - 1) / per + 15) / 16 * 16;
        mb = min64(mb, want);
    }
    return max64(mb, 1);
}

/* ---- one block ---- */

typedef struct att_run {
    gemm_isa isa;
    tf_softmax_row_fn row;
    const att_shape *s;
    att_slice l;
    const float *q, *k, *v, *mask;
    float *y;
    int64_t mb, blocks; /* rows per block, blocks per batch */
} att_run;

static kiln_status att_block(const att_run *r, int64_t task, uint8_t *slice)
{
    const att_shape *s = r->s;
    const int64_t t = task / r->blocks, i0 = task % r->blocks * r->mb;
    const int64_t rows = min64(r->mb, s->sq - i0);
    float *y = r->y + (t * s->sq + i0) * s->dv;
    float *sc = (float *)(void *)slice, *inv = (float *)(void *)(slice + r->l.inv);
    if (s->sk == 0) { /* softmax of nothing: the reference's sum over no rows of V */
        memset(y, 0, sizeof(float) * (size_t)(rows * s->dv));
        return KILN_OK;
    }
    gemm_args g;
    memset(&g, 0, sizeof g);
    g.isa = r->isa;
    g.m = rows;
    g.n = s->sk;
    g.k = s->d;
    g.a = r->q + (batch_offset(s, t, s->qs) * s->sq + i0) * s->d;
    g.lda = max64(s->d, 1);
    g.b = r->k + batch_offset(s, t, s->ks) * s->sk * s->d;
    g.trans_b = !s->kt; /* K [Sk, D] is B^T; K^T [D, Sk] is B */
    g.ldb = s->kt ? s->sk : max64(s->d, 1);
    g.c = sc;
    g.ldc = s->sk;
    KILN_TRY(gemm_run(&g, slice + r->l.gemm, r->l.gemm_bytes, 1));

    tf_softmax p = s->sm;
    const float *mt = r->mask ? r->mask + batch_offset(s, t, s->ms) : NULL;
    p.mask_step = mt ? s->ms[s->nb + 1] : 0;
    for (int64_t i = 0; i < rows; i++) {
        p.mask = mt ? mt + (i0 + i) * s->ms[s->nb] : NULL;
        inv[i] = 1.0f / r->row(sc + i * s->sk, s->sk, &p);
    }

    memset(&g, 0, sizeof g);
    g.isa = r->isa;
    g.m = rows;
    g.n = s->dv;
    g.k = s->sk;
    g.a = sc;
    g.lda = s->sk;
    g.b = r->v + batch_offset(s, t, s->vs) * s->sk * s->dv;
    g.ldb = max64(s->dv, 1);
    g.c = y;
    g.ldc = max64(s->dv, 1);
    KILN_TRY(gemm_run(&g, slice + r->l.gemm, r->l.gemm_bytes, 1));
    for (int64_t i = 0; i < rows; i++) {
        float *yr = y + i * s->dv;
        const float f = inv[i];
        for (int64_t c = 0; c < s->dv; c++) yr[c] *= f;
    }
    return KILN_OK;
}

/* ---- the kernel ---- */

bool tf_attention_applies(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                          const ir_tensor *out, int32_t n_out)
{
    att_shape s;
    return tf_isa_runs(isa) && shape_of(n, in, n_in, out, n_out, &s);
}

size_t tf_attention_scratch(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                            const ir_tensor *out, int32_t n_out, int32_t threads)
{
    att_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s)) return 0;
    return slice_of(isa, &s).bytes * (size_t)(threads > 1 ? threads : 1);
}

kiln_status tf_attention_run(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                             ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    att_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the attention kernel does not run this layer");
    KILN_TRY(isa_check(n, isa));
    if (s.batches == 0 || s.sq == 0 || s.dv == 0) return KILN_OK;
    const double flops =
        2.0 * (double)s.batches * (double)s.sq * (double)s.sk * (double)(s.d + s.dv);
    int32_t threads = flops >= (double)TF_PARALLEL_MIN_FLOPS && x->threads > 1 ? x->threads : 1;
    att_run r = {.isa = isa,
                 .row = tf_softmax_row_of(isa),
                 .s = &s,
                 .l = slice_of(isa, &s),
                 .q = in[0].data,
                 .k = in[1].data,
                 .v = in[2].data,
                 .mask = s.mask ? in[3].data : NULL,
                 .y = out[0].data};
    r.mb = block_rows(&s, threads);
    r.blocks = (s.sq + r.mb - 1) / r.mb;
    const int64_t tasks = s.batches * r.blocks;
    if (threads > tasks) threads = (int32_t)tasks;
    if (!x->scratch || x->scratch_bytes < r.l.bytes * (size_t)threads)
        return ir_node_error(n, KILN_ERR_INTERNAL, "kernel scratch of %zu bytes, %zu needed",
                             x->scratch ? x->scratch_bytes : 0, r.l.bytes * (size_t)threads);
    uint8_t *scratch = x->scratch;
    if (threads == 1) {
        for (int64_t t = 0; t < tasks; t++) KILN_TRY(att_block(&r, t, scratch));
        return KILN_OK;
    }
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        /* the runtime may give fewer threads than asked: each takes every nth block */
        const int32_t id = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int64_t t = id; t < tasks; t += nt)
            if (att_block(&r, t, scratch + (size_t)id * r.l.bytes) != KILN_OK) {
#pragma omp atomic write
                failed = 1;
            }
    }
#else
    for (int64_t t = 0; t < tasks; t++)
        if (att_block(&r, t, scratch) != KILN_OK) failed = 1;
#endif
    if (failed) return ir_node_error(n, KILN_ERR_INTERNAL, "a GEMM of the attention kernel failed");
    return KILN_OK;
}

/* ---- the family's table ---- */

#define PATH_FNS(prefix, suffix, ISA)                                                              \
    static bool prefix##_applies_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,     \
                                          const ir_tensor *out, int32_t n_out)                     \
    {                                                                                              \
        return prefix##_applies(ISA, n, in, n_in, out, n_out);                                     \
    }                                                                                              \
    static size_t prefix##_scratch_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,   \
                                            const ir_tensor *out, int32_t n_out, int32_t threads)  \
    {                                                                                              \
        return prefix##_scratch(ISA, n, in, n_in, out, n_out, threads);                            \
    }                                                                                              \
    static kiln_status prefix##_run_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,  \
                                             ir_tensor *out, int32_t n_out, const backend_exec *x) \
    {                                                                                              \
        return prefix##_run(ISA, n, in, n_in, out, n_out, x);                                      \
    }

#define PATHS_FNS(prefix)                                                                          \
    PATH_FNS(prefix, avx512, GEMM_ISA_AVX512)                                                      \
    PATH_FNS(prefix, avx2, GEMM_ISA_AVX2)                                                          \
    PATH_FNS(prefix, generic, GEMM_ISA_GENERIC)

PATHS_FNS(tf_attention)
PATHS_FNS(tf_transpose)
PATHS_FNS(tf_matmul_act)

#define F_AVX512 (KILN_CPU_AVX512F | KILN_CPU_AVX2 | KILN_CPU_FMA)
#define F_AVX2   (KILN_CPU_AVX2 | KILN_CPU_FMA)

#define KERNEL(NAME, prefix, suffix, OP, FEATURES)                                                 \
    {                                                                                              \
        .name = NAME "_" #suffix, .op = OP, .features = FEATURES,                                  \
        .applies = prefix##_applies_##suffix, .run = prefix##_run_##suffix,                        \
        .scratch = prefix##_scratch_##suffix                                                       \
    }

#define PATHS(NAME, prefix, OP)                                                                    \
    KERNEL(NAME, prefix, avx512, OP, F_AVX512), KERNEL(NAME, prefix, avx2, OP, F_AVX2),            \
        KERNEL(NAME, prefix, generic, OP, 0)

const backend_kernel cpu_transformer_kernels[] = {
    PATHS("attention", tf_attention, "kiln.Attention"),
    PATHS("transpose", tf_transpose, "Transpose"),
    PATHS("matmul_act", tf_matmul_act, "MatMul"),
    PATHS("matmul_act", tf_matmul_act, "kiln.MatMul"),
};
const int32_t cpu_transformer_kernel_count =
    sizeof cpu_transformer_kernels / sizeof *cpu_transformer_kernels;
