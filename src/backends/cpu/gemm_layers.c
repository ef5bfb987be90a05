/* gemm_layers.c - layers that run on the FP32 GEMM (gemm/gemm.h) with their constant
 * operand packed at build time into the plan: MatMul and Gemm with constant weights (and
 * their fused kiln.* forms: bias, residual and activation in the GEMM's epilogue), and 2-D
 * Conv / kiln.Conv as weights [Cout, Cin*kh*kw] times the image (the image as is for a 1x1
 * stride-1 convolution, else its im2col in the context's scratch). One kernel per ISA path
 * ("gemm_avx512", "gemm_avx2", "gemm_generic"); the packed bytes belong to that path. */
#include <string.h>

#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/gemm/gemm.h"

static bool is_op(const ir_node *n, const char *op) { return strcmp(n->op->name, op) == 0; }

static bool plain_f32(const ir_tensor *t)
{
    return ir_tensor_present(t) && t->dtype == KILN_DTYPE_F32 && t->layout == IR_LAYOUT_PLAIN;
}

static bool present(const ir_tensor *in, int32_t n_in, int32_t k)
{
    return k < n_in && ir_tensor_present(&in[k]);
}

/* ---- the shapes of one layer as a GEMM ---- */

typedef enum { SHAPE_MATMUL, SHAPE_GEMM, SHAPE_CONV } gl_kind;

typedef struct gl_shape {
    gl_kind kind;
    int64_t m, n, k; /* one product */
    int64_t batch;   /* conv: images; matmul and gemm: 1 (A's batch dims fold into m) */
    int64_t groups;  /* conv */
    bool trans_a, trans_b;
    float alpha;     /* Gemm: folded into the packed B */
    int32_t bias, z; /* input slots, -1: none */
    bool one_by_one; /* conv reading the image directly */
    ir_window w;     /* conv */
    int64_t cin_g, cout_g;
} gl_shape;

/* Whether the layer is one this file runs, and its GEMM shape. */
static bool shape_of(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                     int32_t n_out, gl_shape *s)
{
    memset(s, 0, sizeof *s);
    s->bias = s->z = -1;
    s->batch = s->groups = 1;
    s->alpha = 1.0f;
    if (n_out != 1 || n_in < 2 || !plain_f32(&in[0]) || !plain_f32(&in[1]) || !in[1].data ||
        out[0].dtype != KILN_DTYPE_F32 || out[0].layout != IR_LAYOUT_PLAIN)
        return false;
    bool fused = strncmp(n->op->name, "kiln.", 5) == 0;
    if (fused && ir_fused_act_code(n) < 0) return false;
    if (is_op(n, "MatMul") || is_op(n, "kiln.MatMul")) {
        const kiln_dims *a = &in[0].shape, *b = &in[1].shape;
        if (a->rank < 2 || b->rank != 2 || (!fused && n_in != 2)) return false;
        s->kind = SHAPE_MATMUL;
        s->k = a->d[a->rank - 1];
        s->n = b->d[1];
        s->m = kiln_dims_count(a) / (s->k ? s->k : 1);
        if (s->k == 0) s->m = kiln_dims_count(&out[0].shape) / (s->n ? s->n : 1);
        if (present(in, n_in, 2)) s->bias = 2;
        if (present(in, n_in, 3)) s->z = 3;
        return b->d[0] == s->k;
    }
    if (is_op(n, "Gemm") || is_op(n, "kiln.Gemm")) {
        const kiln_dims *a = &in[0].shape, *b = &in[1].shape;
        if (a->rank != 2 || b->rank != 2) return false;
        s->kind = SHAPE_GEMM;
        s->trans_a = ir_attr_int(n, "transA") != 0;
        s->trans_b = ir_attr_int(n, "transB") != 0;
        s->alpha = ir_attr_float(n, "alpha");
        s->m = a->d[s->trans_a ? 1 : 0];
        s->k = a->d[s->trans_a ? 0 : 1];
        s->n = b->d[s->trans_b ? 0 : 1];
        if (present(in, n_in, 2)) {
            /* C as a bias per column only: [N] or [1, N], beta 1 */
            const ir_tensor *c = &in[2];
            bool col = c->dtype == KILN_DTYPE_F32 && ir_tensor_count(c) == s->n &&
                       (c->shape.rank == 1 || (c->shape.rank == 2 && c->shape.d[0] == 1));
            if (!col || ir_attr_float(n, "beta") != 1.0f) return false;
            s->bias = 2;
        }
        if (present(in, n_in, 3)) s->z = 3;
        return true;
    }
    if (is_op(n, "Conv") || is_op(n, "kiln.Conv")) {
        const kiln_dims *x = &in[0].shape, *wt = &in[1].shape;
        if (x->rank != 4 || wt->rank != 4) return false;
        if (ir_window_of(n, in, n_in, &s->w) != KILN_OK || s->w.ns != 2) return false;
        s->kind = SHAPE_CONV;
        s->groups = ir_attr_int(n, "group");
        if (s->groups < 1 || x->d[1] % s->groups || wt->d[0] % s->groups) return false;
        s->batch = x->d[0];
        s->cin_g = x->d[1] / s->groups;
        s->cout_g = wt->d[0] / s->groups;
        /* Depthwise convolutions are GEMMs of one row: another kernel's work. */
        if (s->cin_g == 1 && s->cout_g == 1 && s->groups > 1) return false;
        s->m = s->cout_g;
        s->k = s->cin_g * s->w.kernel[0] * s->w.kernel[1];
        s->n = s->w.out[0] * s->w.out[1];
        s->one_by_one = s->w.kernel[0] == 1 && s->w.kernel[1] == 1 && s->w.stride[0] == 1 &&
                        s->w.stride[1] == 1 && s->w.pad_begin[0] == 0 && s->w.pad_begin[1] == 0 &&
                        s->w.pad_end[0] == 0 && s->w.pad_end[1] == 0;
        if (present(in, n_in, 2)) {
            if (in[2].dtype != KILN_DTYPE_F32 || ir_tensor_count(&in[2]) != wt->d[0]) return false;
            s->bias = 2;
        }
        if (present(in, n_in, 3)) s->z = 3;
        return true;
    }
    return false;
}

/* ---- kernels, one per ISA path ---- */

static gemm_act act_of(const ir_node *n)
{
    int32_t a = strncmp(n->op->name, "kiln.", 5) == 0 ? ir_fused_act_code(n) : 0;
    return a < 0 ? GEMM_ACT_NONE : (gemm_act)a;
}

/* The packed weights' bytes: one packed operand (B for MatMul/Gemm, A per group for Conv). */
static size_t packed_bytes(gemm_isa isa, const gl_shape *s)
{
    if (s->kind == SHAPE_CONV) {
        size_t one = gemm_pack_a_bytes(isa, s->m, s->k);
        return one && (uint64_t)s->groups <= SIZE_MAX / one ? one * (size_t)s->groups : 0;
    }
    return gemm_pack_b_bytes(isa, s->k, s->n);
}

static bool applies_isa(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                        const ir_tensor *out, int32_t n_out)
{
    gl_shape s;
    return gemm_isa_supported(isa, kiln_cpu_features()) && shape_of(n, in, n_in, out, n_out, &s) &&
           packed_bytes(isa, &s) > 0;
}

static kiln_status prepare_isa(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                               const ir_tensor *out, int32_t n_out, kiln_buf *data)
{
    gl_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the GEMM kernel does not run this layer");
    size_t bytes = packed_bytes(isa, &s), at = data->len;
    kiln_buf_zeros(data, bytes);
    if (data->failed) return KILN_ERR_OUT_OF_MEMORY;
    uint8_t *dst = data->data + at;
    const float *w = in[1].data;
    if (s.kind == SHAPE_CONV) {
        size_t one = bytes / (size_t)s.groups;
        for (int64_t g = 0; g < s.groups; g++)
            KILN_TRY(gemm_pack_a(isa, s.m, s.k, w + g * s.m * s.k, s.k, false, dst + g * one, one));
        return KILN_OK;
    }
    if (s.alpha == 1.0f)
        return gemm_pack_b(isa, s.k, s.n, w, s.trans_b ? s.k : s.n, s.trans_b, dst, bytes);
    /* Gemm's alpha scales the packed weights once (alpha (A B) = A (alpha B) up to rounding
     * of the products, which the 1e-5 tolerance of the network tests covers). */
    int64_t cnt = s.k * s.n;
    float *scaled = kiln_malloc(sizeof(float) * (size_t)(cnt ? cnt : 1));
    if (!scaled) return KILN_ERR_OUT_OF_MEMORY;
    for (int64_t i = 0; i < cnt; i++) scaled[i] = s.alpha * w[i];
    kiln_status st =
        gemm_pack_b(isa, s.k, s.n, scaled, s.trans_b ? s.k : s.n, s.trans_b, dst, bytes);
    kiln_free(scaled);
    return st;
}

static bool data_ok_isa(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                        const ir_tensor *out, int32_t n_out, const void *data, uint64_t bytes)
{
    gl_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s) || bytes != packed_bytes(isa, &s)) return false;
    if (s.kind != SHAPE_CONV)
        return gemm_packed_check(data, bytes, isa, GEMM_OPERAND_B, s.k, s.n) == KILN_OK;
    size_t one = (size_t)bytes / (size_t)s.groups;
    for (int64_t g = 0; g < s.groups; g++)
        if (gemm_packed_check((const uint8_t *)data + g * one, one, isa, GEMM_OPERAND_A, s.m,
                              s.k) != KILN_OK)
            return false;
    return true;
}

/* im2col of one image and group: rows (c, ky, kx), columns the output positions. */
static void im2col(const gl_shape *s, const float *x, float *col)
{
    const ir_window *w = &s->w;
    int64_t ih = w->in[0], iw = w->in[1], oh = w->out[0], ow = w->out[1];
    for (int64_t c = 0; c < s->cin_g; c++)
        for (int64_t ky = 0; ky < w->kernel[0]; ky++)
            for (int64_t kx = 0; kx < w->kernel[1]; kx++) {
                float *row = col + ((c * w->kernel[0] + ky) * w->kernel[1] + kx) * oh * ow;
                const float *plane = x + c * ih * iw;
                for (int64_t oy = 0; oy < oh; oy++) {
                    int64_t y = oy * w->stride[0] - w->pad_begin[0] + ky * w->dilation[0];
                    float *r = row + oy * ow;
                    if (y < 0 || y >= ih) {
                        memset(r, 0, sizeof(float) * (size_t)ow);
                        continue;
                    }
                    for (int64_t ox = 0; ox < ow; ox++) {
                        int64_t xx = ox * w->stride[1] - w->pad_begin[1] + kx * w->dilation[1];
                        r[ox] = xx >= 0 && xx < iw ? plane[y * iw + xx] : 0.0f;
                    }
                }
            }
}

/* The arguments of one product (conv: image b, group g; scratch laid out by scratch_isa). */
static gemm_args args_of(gemm_isa isa, const ir_node *n, const gl_shape *s, const ir_tensor *in,
                         ir_tensor *out, const void *packed, int64_t b, int64_t g)
{
    gemm_args a;
    memset(&a, 0, sizeof a);
    a.isa = isa;
    a.m = s->m;
    a.n = s->n;
    a.k = s->k;
    a.ep.act = act_of(n);
    a.ep.alpha = ir_attr_float(n, "act_alpha");
    a.ep.beta = ir_attr_float(n, "act_beta");
    if (s->kind != SHAPE_CONV) {
        a.a = in[0].data;
        a.trans_a = s->trans_a;
        a.lda = s->trans_a ? s->m : s->k;
        a.b_packed = packed;
        a.c = out[0].data;
        a.ldc = s->n;
        if (s->bias >= 0)
            a.ep = (gemm_epilogue){GEMM_BIAS_COL, in[s->bias].data, NULL,     0,
                                   a.ep.act,      a.ep.alpha,       a.ep.beta};
        if (s->z >= 0) {
            a.ep.residual = in[s->z].data;
            a.ep.ldr = s->n;
        }
        return a;
    }
    size_t one = packed_bytes(isa, s) / (size_t)s->groups;
    a.a_packed = (const uint8_t *)packed + g * one;
    int64_t cin = s->cin_g * s->groups, cout = s->cout_g * s->groups;
    const float *x = (const float *)in[0].data + (b * cin + g * s->cin_g) * s->w.in[0] * s->w.in[1];
    a.b = x; /* the caller points it at the im2col buffer unless 1x1 */
    a.ldb = s->n;
    a.c = (float *)out[0].data + (b * cout + g * s->cout_g) * s->n;
    a.ldc = s->n;
    if (s->bias >= 0) {
        a.ep.bias_kind = GEMM_BIAS_ROW;
        a.ep.bias = (const float *)in[s->bias].data + g * s->cout_g;
    }
    if (s->z >= 0) {
        a.ep.residual = (const float *)in[s->z].data + (b * cout + g * s->cout_g) * s->n;
        a.ep.ldr = s->n;
    }
    return a;
}

/* Scratch: the im2col buffer (conv, not 1x1), 64-byte aligned, then the GEMM's own. */
static size_t col_bytes(const gl_shape *s)
{
    if (s->kind != SHAPE_CONV || s->one_by_one) return 0;
    return ((size_t)(s->k * s->n) * sizeof(float) + 63) & ~(size_t)63;
}

static size_t scratch_isa(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                          const ir_tensor *out, int32_t n_out, int32_t threads)
{
    gl_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s)) return 0;
    ir_tensor o = out[0];
    gemm_args a = args_of(isa, n, &s, in, &o, "", 0, 0);
    return col_bytes(&s) + gemm_scratch_bytes(&a, threads);
}

static kiln_status run_isa(gemm_isa isa, const ir_node *n, const ir_tensor *in, int32_t n_in,
                           ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    gl_shape s;
    if (!shape_of(n, in, n_in, out, n_out, &s) || !x->data)
        return ir_node_error(n, KILN_ERR_INTERNAL, "the GEMM kernel does not run this layer");
    if (s.m == 0 || s.n == 0) return KILN_OK;
    size_t cb = col_bytes(&s);
    if (cb > x->scratch_bytes)
        return ir_node_error(n, KILN_ERR_INTERNAL, "kernel scratch of %zu bytes, %zu needed",
                             x->scratch_bytes, cb);
    uint8_t *scratch = x->scratch;
    for (int64_t b = 0; b < s.batch; b++)
        for (int64_t g = 0; g < s.groups; g++) {
            gemm_args a = args_of(isa, n, &s, in, out, x->data, b, g);
            if (cb) {
                im2col(&s, a.b, (float *)scratch);
                a.b = (const float *)scratch;
            }
            KILN_TRY(gemm_run(&a, scratch + cb, x->scratch_bytes - cb, x->threads));
        }
    return KILN_OK;
}

#define GEMM_PATH(suffix, ISA)                                                                     \
    static bool applies_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,              \
                                 const ir_tensor *out, int32_t n_out)                              \
    {                                                                                              \
        return applies_isa(ISA, n, in, n_in, out, n_out);                                          \
    }                                                                                              \
    static kiln_status prepare_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,       \
                                        const ir_tensor *out, int32_t n_out, kiln_buf *data)       \
    {                                                                                              \
        return prepare_isa(ISA, n, in, n_in, out, n_out, data);                                    \
    }                                                                                              \
    static bool data_ok_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,              \
                                 const ir_tensor *out, int32_t n_out, const void *data,            \
                                 uint64_t bytes)                                                   \
    {                                                                                              \
        return data_ok_isa(ISA, n, in, n_in, out, n_out, data, bytes);                             \
    }                                                                                              \
    static size_t scratch_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,            \
                                   const ir_tensor *out, int32_t n_out, int32_t threads)           \
    {                                                                                              \
        return scratch_isa(ISA, n, in, n_in, out, n_out, threads);                                 \
    }                                                                                              \
    static kiln_status run_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,           \
                                    ir_tensor *out, int32_t n_out, const backend_exec *x)          \
    {                                                                                              \
        return run_isa(ISA, n, in, n_in, out, n_out, x);                                           \
    }

GEMM_PATH(avx512, GEMM_ISA_AVX512)
GEMM_PATH(avx2, GEMM_ISA_AVX2)
GEMM_PATH(generic, GEMM_ISA_GENERIC)

#define KERNEL(suffix, OP, FEATURES)                                                               \
    {                                                                                              \
        .name = "gemm_" #suffix, .op = OP, .features = FEATURES, .applies = applies_##suffix,      \
        .run = run_##suffix, .prepare = prepare_##suffix, .data_ok = data_ok_##suffix,             \
        .scratch = scratch_##suffix, .prepared_inputs = 1u << 1                                    \
    }

#define F_AVX512 (KILN_CPU_AVX512F | KILN_CPU_AVX2 | KILN_CPU_FMA)
#define F_AVX2   (KILN_CPU_AVX2 | KILN_CPU_FMA)

#define PATHS(OP) KERNEL(avx512, OP, F_AVX512), KERNEL(avx2, OP, F_AVX2), KERNEL(generic, OP, 0)

const backend_kernel cpu_gemm_kernels[] = {
    PATHS("MatMul"),    PATHS("kiln.MatMul"), PATHS("Gemm"),
    PATHS("kiln.Gemm"), PATHS("Conv"),        PATHS("kiln.Conv"),
};
const int32_t cpu_gemm_kernel_count = sizeof cpu_gemm_kernels / sizeof *cpu_gemm_kernels;
