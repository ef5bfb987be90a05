/* dwconv_pool.c - depthwise convolutions (Conv and kiln.Conv with group = C_in, any channel
 * multiplier; bias, residual and activation fused) and pools (MaxPool, AveragePool,
 * GlobalAveragePool, GlobalMaxPool) on plain NCHW f32, 2-D, one kernel per ISA path
 * ("dwconv_avx512", "pool_avx2", ...; the computing is in src/backends/cpu/dwpool/). The
 * weights are read as the layer holds them, [C_out, 1, kh, kw]: a tap's weight is broadcast
 * once per plane, so packing them would gain nothing and there is no prepared data. Threads
 * take whole output planes (and row ranges of them when planes are fewer than threads). */
#include <stddef.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/dwpool/dwpool.h"

/* Below this many taps (outputs x kernel size) one thread is done in ~10 us, about what
 * waking others costs. */
#define DWP_PARALLEL_MIN_TAPS ((int64_t)1 << 18)

typedef enum dwp_path { PATH_GENERIC, PATH_AVX2, PATH_AVX512 } dwp_path;

#define F_AVX512 (KILN_CPU_AVX512F | KILN_CPU_AVX2 | KILN_CPU_FMA)
#define F_AVX2   (KILN_CPU_AVX2 | KILN_CPU_FMA)

static uint64_t path_features(dwp_path path)
{
    return path == PATH_AVX512 ? F_AVX512 : path == PATH_AVX2 ? F_AVX2 : 0;
}

static bool is_op(const ir_node *n, const char *op) { return strcmp(n->op->name, op) == 0; }

static bool plain_f32(const ir_tensor *t)
{
    return ir_tensor_present(t) && t->dtype == KILN_DTYPE_F32 && t->layout == IR_LAYOUT_PLAIN;
}

static bool present(const ir_tensor *in, int32_t n_in, int32_t k)
{
    return k < n_in && ir_tensor_present(&in[k]);
}

static bool is_global(const ir_node *n)
{
    return is_op(n, "GlobalAveragePool") || is_op(n, "GlobalMaxPool");
}

/* Whether a depthwise convolution or a 2-D pool is one these kernels run, and its
 * description without the data pointers. */
static bool windowed_of(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                        int32_t n_out, dwp_args *a)
{
    memset(a, 0, offsetof(dwp_args, prep)); /* the vector paths fill prep */
    if (n_out != 1 || n_in < 1 || !plain_f32(&in[0]) || !plain_f32(&out[0]) ||
        in[0].shape.rank != 4)
        return false;
    const kiln_dims *x = &in[0].shape;
    a->c_in = a->c_out = x->d[1];
    a->mult = 1;
    if (is_op(n, "Conv") || is_op(n, "kiln.Conv")) {
        bool fused = is_op(n, "kiln.Conv");
        if (n_in < 2 || !plain_f32(&in[1]) || in[1].shape.rank != 4) return false;
        if (fused && ir_fused_act_code(n) < 0) return false;
        const kiln_dims *w = &in[1].shape;
        int64_t group = ir_attr_int(n, "group");
        a->c_out = w->d[0];
        /* one input channel per group; a single-channel image into many channels is a
         * GEMM's work (each image column serves every output channel) */
        if (group < 1 || group != a->c_in || w->d[1] != 1 || a->c_out % group != 0 ||
            (group == 1 && a->c_out != 1))
            return false;
        if (present(in, n_in, 2) && (!plain_f32(&in[2]) || ir_tensor_count(&in[2]) != a->c_out))
            return false;
        if (present(in, n_in, 3) &&
            (!fused || !plain_f32(&in[3]) || !kiln_dims_equal(&in[3].shape, &out[0].shape)))
            return false;
        a->op = DWP_CONV;
        a->mult = a->c_out / group;
        a->act = fused ? ir_fused_act_code(n) : 0;
        a->alpha = fused ? ir_attr_float(n, "act_alpha") : 0.0f;
        a->beta = fused ? ir_attr_float(n, "act_beta") : 0.0f;
    } else if (is_op(n, "MaxPool")) {
        a->op = DWP_MAX;
    } else if (is_op(n, "AveragePool")) {
        a->op = DWP_AVG;
        a->include_pad = ir_attr_int(n, "count_include_pad") == 1;
    } else {
        return false;
    }
    ir_window w;
    if (ir_window_of(n, in, n_in, &w) != KILN_OK || w.ns != 2) return false;
    a->ih = w.in[0];
    a->iw = w.in[1];
    a->oh = w.out[0];
    a->ow = w.out[1];
    a->kh = w.kernel[0];
    a->kw = w.kernel[1];
    a->sh = w.stride[0];
    a->sw = w.stride[1];
    a->dh = w.dilation[0];
    a->dw = w.dilation[1];
    a->ph = w.pad_begin[0];
    a->pw = w.pad_begin[1];
    a->pe_h = w.pad_end[0];
    a->pe_w = w.pad_end[1];
    a->planes = x->d[0] * a->c_out;
    const kiln_dims *o = &out[0].shape;
    return a->kw >= 1 && a->kw <= DWP_MAX_K && a->kh >= 1 && a->kh <= DWP_MAX_K && a->ih > 0 &&
           a->iw > 0 && a->oh > 0 && a->ow > 0 && o->rank == 4 && o->d[0] == x->d[0] &&
           o->d[1] == a->c_out && o->d[2] == a->oh && o->d[3] == a->ow;
}

static bool global_of(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                      int32_t n_out, dwp_global *g)
{
    memset(g, 0, sizeof *g);
    if (!is_global(n) || n_out != 1 || n_in < 1 || !plain_f32(&in[0]) || !plain_f32(&out[0]) ||
        in[0].shape.rank < 3)
        return false;
    const kiln_dims *x = &in[0].shape;
    g->is_max = is_op(n, "GlobalMaxPool");
    g->planes = x->d[0] * x->d[1];
    g->size = 1;
    for (int32_t d = 2; d < x->rank; d++) g->size *= x->d[d];
    return g->size > 0 && ir_tensor_count(&out[0]) == g->planes;
}

static bool applies_path(dwp_path path, const ir_node *n, const ir_tensor *in, int32_t n_in,
                         const ir_tensor *out, int32_t n_out)
{
    dwp_args a;
    dwp_global g;
#if !defined(__x86_64__)
    if (path != PATH_GENERIC) return false;
#endif
    if ((kiln_cpu_features() & path_features(path)) != path_features(path)) return false;
    return is_global(n) ? global_of(n, in, n_in, out, n_out, &g)
                        : windowed_of(n, in, n_in, out, n_out, &a);
}

static void prepare_path(dwp_path path, dwp_args *a)
{
#if defined(__x86_64__)
    if (path == PATH_AVX512) dwp_prepare_avx512(a);
    if (path == PATH_AVX2) dwp_prepare_avx2(a);
#endif
    (void)path;
    (void)a;
}

static void rows_of(dwp_path path, const dwp_args *a, int64_t p, int64_t oy0, int64_t oy1)
{
#if defined(__x86_64__)
    if (path == PATH_AVX512) {
        dwp_rows_avx512(a, p, oy0, oy1);
        return;
    }
    if (path == PATH_AVX2) {
        dwp_rows_avx2(a, p, oy0, oy1);
        return;
    }
#endif
    (void)path;
    dwp_rows_generic(a, p, oy0, oy1);
}

static void global_planes(dwp_path path, const dwp_global *g, int64_t p0, int64_t p1)
{
#if defined(__x86_64__)
    if (path == PATH_AVX512) {
        dwp_global_avx512(g, p0, p1);
        return;
    }
    if (path == PATH_AVX2) {
        dwp_global_avx2(g, p0, p1);
        return;
    }
#endif
    (void)path;
    dwp_global_generic(g, p0, p1);
}

static kiln_status run_path(dwp_path path, const ir_node *n, const ir_tensor *in, int32_t n_in,
                            ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    if ((kiln_cpu_features_hw() & path_features(path)) != path_features(path))
        return ir_node_error(n, KILN_ERR_DEVICE, "this CPU lacks the instructions of kernel %s",
                             path == PATH_AVX512 ? "avx512" : "avx2");
    const int32_t threads = x && x->threads > 1 ? x->threads : 1;
    if (is_global(n)) {
        dwp_global g;
        if (!global_of(n, in, n_in, out, n_out, &g))
            return ir_node_error(n, KILN_ERR_INTERNAL,
                                 "the pooling kernel does not run this layer");
        g.x = in[0].data;
        g.y = out[0].data;
        const int32_t t = g.planes * g.size >= DWP_PARALLEL_MIN_TAPS ? threads : 1;
        if (t == 1) {
            global_planes(path, &g, 0, g.planes);
            return KILN_OK;
        }
#ifdef _OPENMP
#pragma omp parallel for num_threads(t) schedule(static)
#endif
        for (int64_t p = 0; p < g.planes; p++) global_planes(path, &g, p, p + 1);
        return KILN_OK;
    }
    dwp_args a;
    if (!windowed_of(n, in, n_in, out, n_out, &a))
        return ir_node_error(n, KILN_ERR_INTERNAL,
                             "the depthwise/pooling kernel does not run "
                             "this layer");
    a.x = in[0].data;
    a.y = out[0].data;
    if (a.op == DWP_CONV) {
        a.w = in[1].data;
        a.bias = present(in, n_in, 2) ? in[2].data : NULL;
        a.z = present(in, n_in, 3) ? in[3].data : NULL;
    }
    prepare_path(path, &a);
    /* Rows of a plane are independent: with fewer planes than threads, each plane is cut
     * into row ranges so that every thread gets some (the outputs do not change). */
    const int64_t work = a.planes * a.oh * a.ow * a.kh * a.kw;
    int64_t cuts = 1;
    if (threads > 1 && a.planes < 4 * (int64_t)threads) {
        cuts = (4 * (int64_t)threads + a.planes - 1) / a.planes;
        if (cuts > a.oh) cuts = a.oh;
    }
    const int64_t items = a.planes * cuts, oh = a.oh;
    if (threads == 1 || work < DWP_PARALLEL_MIN_TAPS) {
        for (int64_t p = 0; p < a.planes; p++) rows_of(path, &a, p, 0, oh);
        return KILN_OK;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static)
#endif
    for (int64_t i = 0; i < items; i++)
        rows_of(path, &a, i / cuts, i % cuts * oh / cuts, (i % cuts + 1) * oh / cuts);
    return KILN_OK;
}

#define DWP_PATH(suffix, PATH)                                                                     \
    static bool applies_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,              \
                                 const ir_tensor *out, int32_t n_out)                              \
    {                                                                                              \
        return applies_path(PATH, n, in, n_in, out, n_out);                                        \
    }                                                                                              \
    static kiln_status run_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,           \
                                    ir_tensor *out, int32_t n_out, const backend_exec *x)          \
    {                                                                                              \
        return run_path(PATH, n, in, n_in, out, n_out, x);                                         \
    }

DWP_PATH(avx512, PATH_AVX512)
DWP_PATH(avx2, PATH_AVX2)
DWP_PATH(generic, PATH_GENERIC)

#define KERNEL(what, suffix, OP, FEATURES)                                                         \
    {                                                                                              \
        .name = what "_" #suffix, .op = OP, .features = FEATURES, .applies = applies_##suffix,     \
        .run = run_##suffix                                                                        \
    }

#define PATHS(what, OP)                                                                            \
    KERNEL(what, avx512, OP, F_AVX512), KERNEL(what, avx2, OP, F_AVX2), KERNEL(what, generic, OP, 0)

const backend_kernel cpu_dwpool_kernels[] = {
    PATHS("dwconv", "Conv"),
    PATHS("dwconv", "kiln.Conv"),
    PATHS("pool", "MaxPool"),
    PATHS("pool", "AveragePool"),
    PATHS("pool", "GlobalAveragePool"),
    PATHS("pool", "GlobalMaxPool"),
};
const int32_t cpu_dwpool_kernel_count = sizeof cpu_dwpool_kernels / sizeof *cpu_dwpool_kernels;
