/* matmul_act.c - MatMul and kiln.MatMul whose B is an activation (the layers gemm_layers.c,
 * which packs a constant B into the plan, leaves to others): ONNX MatMul with numpy's 1-D rules
 * and broadcast batch dims, each product on the FP32 GEMM with raw operands (packed on the fly
 * in the scratch), kiln.MatMul's bias, residual and activation in the GEMM's epilogue. */
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/transformer_impl.h"

static bool plain_f32(const ir_tensor *t)
{
    return ir_tensor_present(t) && t->dtype == KILN_DTYPE_F32 && t->layout == IR_LAYOUT_PLAIN;
}

static bool present(const ir_tensor *in, int32_t n_in, int32_t k)
{
    return k < n_in && ir_tensor_present(&in[k]);
}

static size_t round64(size_t b) { return (b + 63) & ~(size_t)63; }

typedef struct mm_shape {
    int64_t m, n, k;
    kiln_dims ob;                                 /* output batch dims */
    int64_t batches;                              /* their count */
    int64_t as[KILN_MAX_RANK], bs[KILN_MAX_RANK]; /* batch strides in whole matrices */
    /* B is one matrix for every batch and A's matrices are in the output's order: one GEMM of
     * batches * M rows */
    bool fold;
    int32_t bias, z; /* input slots, -1: none */
} mm_shape;

static bool shape_of(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                     int32_t n_out, mm_shape *s)
{
    memset(s, 0, sizeof *s);
    s->bias = s->z = -1;
    if (n_out != 1 || n_in < 2 || !plain_f32(&in[0]) || !plain_f32(&in[1]) ||
        out[0].dtype != KILN_DTYPE_F32 || out[0].layout != IR_LAYOUT_PLAIN)
        return false;
    const bool fused = strcmp(n->op->name, "kiln.MatMul") == 0;
    if (fused ? ir_fused_act_code(n) < 0 : n_in != 2) return false;
    const kiln_dims *a = &in[0].shape, *b = &in[1].shape;
    const int32_t ra = a->rank, rb = b->rank;
    if (ra < 1 || rb < 1) return false;
    s->m = ra >= 2 ? a->d[ra - 2] : 1;
    s->k = a->d[ra - 1];
    s->n = rb >= 2 ? b->d[rb - 1] : 1;
    if ((rb >= 2 ? b->d[rb - 2] : b->d[0]) != s->k) return false;
    const kiln_dims ab = kiln_dims_make(ra >= 2 ? ra - 2 : 0, a->d);
    const kiln_dims bb = kiln_dims_make(rb >= 2 ? rb - 2 : 0, b->d);
    if (!ir_broadcast(&ab, &bb, &s->ob)) return false;
    kiln_dims o = s->ob;
    if (ra >= 2) o.d[o.rank++] = s->m;
    if (rb >= 2) o.d[o.rank++] = s->n;
    if (!kiln_dims_equal(&o, &out[0].shape)) return false;
    s->batches = kiln_dims_count(&s->ob);
    ir_broadcast_strides(&ab, &s->ob, s->as);
    ir_broadcast_strides(&bb, &s->ob, s->bs);
    s->fold = kiln_dims_count(&bb) == 1 && kiln_dims_count(&ab) == s->batches;
    if (fused && present(in, n_in, 2)) {
        const ir_tensor *c = &in[2];
        if (!plain_f32(c) || c->shape.rank != 1 || c->shape.d[0] != s->n) return false;
        s->bias = 2;
    }
    if (fused && present(in, n_in, 3)) {
        if (!plain_f32(&in[3]) || !kiln_dims_equal(&in[3].shape, &out[0].shape)) return false;
        s->z = 3;
    }
    return true;
}

static int64_t batch_offset(const mm_shape *s, int64_t t, const int64_t *st)
{
    int64_t off = 0;
    if (t == 0) return 0; /* also when a dim is 0 */
    for (int32_t i = s->ob.rank - 1; i >= 0; i--) {
        off += (t % s->ob.d[i]) * st[i];
        t /= s->ob.d[i];
    }
    return off;
}

/* The product of batch t (all batches when folded); pointers NULL when `in` has no data. */
static gemm_args args_of(gemm_isa isa, const ir_node *n, const mm_shape *s, const ir_tensor *in,
                         float *y, int64_t t)
{
    gemm_args g;
    memset(&g, 0, sizeof g);
    g.isa = isa;
    g.m = s->fold ? s->batches * s->m : s->m;
    g.n = s->n;
    g.k = s->k;
    g.lda = s->k > 0 ? s->k : 1;
    g.ldb = s->n > 0 ? s->n : 1;
    g.ldc = g.ldb;
    const int64_t ao = s->fold ? 0 : batch_offset(s, t, s->as) * s->m * s->k;
    const int64_t bo = s->fold ? 0 : batch_offset(s, t, s->bs) * s->k * s->n;
    const int64_t co = s->fold ? 0 : t * s->m * s->n;
    if (in[0].data) g.a = (const float *)in[0].data + ao;
    if (in[1].data) g.b = (const float *)in[1].data + bo;
    if (y) g.c = y + co;
    const int32_t act = strcmp(n->op->name, "kiln.MatMul") == 0 ? ir_fused_act_code(n) : 0;
    g.ep.act = act > 0 ? (gemm_act)act : GEMM_ACT_NONE;
    g.ep.alpha = ir_attr_float(n, "act_alpha");
    g.ep.beta = ir_attr_float(n, "act_beta");
    if (s->bias >= 0) {
        g.ep.bias_kind = GEMM_BIAS_COL;
        g.ep.bias = in[s->bias].data;
    }
    if (s->z >= 0 && in[s->z].data) {
        g.ep.residual = (const float *)in[s->z].data + co;
        g.ep.ldr = g.ldc;
    }
    return g;
}

/* Batches in parallel (one GEMM each on one thread) when there are enough of them; else the
 * batches in turn, each GEMM on all the threads. Either way each output element is the GEMM's
 * one chain of multiply-adds, so the thread count does not change a bit. */
static bool by_batch(const mm_shape *s, int32_t threads)
{
    return !s->fold && threads > 1 && s->batches >= threads;
}

bool tf_matmul_act_applies(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                           const ir_tensor *out, int32_t n_out)
{
    mm_shape s;
    return tf_isa_runs(isa) && shape_of(n, in, n_in, out, n_out, &s);
}

/* Per thread the scratch of one GEMM, which bounds any smaller shapes' (it grows with each dim). */
size_t tf_matmul_act_scratch(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                             const ir_tensor *out, int32_t n_out, int32_t threads)
{
    mm_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s)) return 0;
    ir_tensor none[2] = {in[0], in[1]};
    none[0].data = none[1].data = NULL;
    gemm_args g = args_of(isa, n, &s, none, NULL, 0);
    const size_t one = round64(gemm_scratch_bytes(&g, 1));
    return one * (size_t)(threads > 1 ? threads : 1);
}

kiln_status tf_matmul_act_run(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                              ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    mm_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the MatMul kernel does not run this layer");
    if (s.batches == 0 || s.m == 0 || s.n == 0) return KILN_OK;
    const double flops = 2.0 * (double)s.batches * (double)s.m * (double)s.n * (double)s.k;
    int32_t threads = flops >= (double)TF_PARALLEL_MIN_FLOPS && x->threads > 1 ? x->threads : 1;
    float *y = out[0].data;
    gemm_args g0 = args_of(isa, n, &s, in, y, 0);
    const size_t one = round64(gemm_scratch_bytes(&g0, 1));
    if (one * (size_t)threads > x->scratch_bytes || (one && !x->scratch))
        return ir_node_error(n, KILN_ERR_INTERNAL, "kernel scratch of %zu bytes, %zu needed",
                             x->scratch ? x->scratch_bytes : 0, one * (size_t)threads);
    uint8_t *scratch = x->scratch;
    if (s.fold) return gemm_run(&g0, scratch, x->scratch_bytes, threads);
    if (!by_batch(&s, threads)) {
        for (int64_t t = 0; t < s.batches; t++) {
            gemm_args g = args_of(isa, n, &s, in, y, t);
            KILN_TRY(gemm_run(&g, scratch, x->scratch_bytes, threads));
        }
        return KILN_OK;
    }
    int failed = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    {
        const int32_t id = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int64_t t = id; t < s.batches; t += nt) {
            gemm_args g = args_of(isa, n, &s, in, y, t);
            if (gemm_run(&g, scratch + (size_t)id * one, one, 1) != KILN_OK) {
#pragma omp atomic write
                failed = 1;
            }
        }
    }
#else
    for (int64_t t = 0; t < s.batches; t++) {
        gemm_args g = args_of(isa, n, &s, in, y, t);
        if (gemm_run(&g, scratch, one, 1) != KILN_OK) failed = 1;
    }
#endif
    if (failed) return ir_node_error(n, KILN_ERR_INTERNAL, "a GEMM of the MatMul kernel failed");
    return KILN_OK;
}
