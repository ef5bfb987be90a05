/* cpu_backend.c - the CPU backend's kernel registry and layout policy. The reference
 * kernel runs an op's reference evaluation (src/ir) on plain tensors and serves every op;
 * "ref_blocked" runs a layout-agnostic elementwise op over blocked storage; the blocked
 * reference kernels of ref_nchwc.c serve a few ops on NCHWc. Fast kernels (per ISA) join
 * the list ahead of them and are picked by the builder. */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_impl.h"

/* ---- ref: the op's reference evaluation, on plain tensors (kiln.Reorder: its layouts) ---- */

static bool ref_applies(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                        int32_t n_out)
{
    if (strcmp(n->op->name, "kiln.Reorder") == 0) {
        ir_layout from, to;
        return ir_layout_parse(ir_attr_string(n, "from"), &from) &&
               ir_layout_parse(ir_attr_string(n, "to"), &to) && in[0].layout == from &&
               out[0].layout == to;
    }
    for (int32_t k = 0; k < n_in; k++)
        if (ir_tensor_present(&in[k]) && in[k].layout != IR_LAYOUT_PLAIN) return false;
    for (int32_t k = 0; k < n_out; k++)
        if (out[k].layout != IR_LAYOUT_PLAIN) return false;
    return true;
}

static kiln_status run_reference(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    return n->op->eval(n, in, n_in, out, n_out);
}

/* ---- ref_blocked: layout-agnostic elementwise ops on blocked tensors ---- */

/* An op computes the same thing on any layout when it maps element i of its inputs to
 * element i of its output: unary elementwise ops (IR_OP_INPLACE; further inputs such as
 * Clip's bounds are scalars, kept plain) and elementwise ops whose inputs all have the
 * output's shape (IR_OP_ELEMENTWISE: nothing broadcasts). Fills the slots' layouts for
 * blocked layout `l`. */
static bool agnostic_layouts(const ir_node *n, const ir_tensor *in, int32_t n_in,
                             const ir_tensor *out, int32_t n_out, ir_layout l, ir_layout *lin,
                             ir_layout *lout)
{
    int64_t count;
    uint32_t f = n->op->flags;
    if (l == IR_LAYOUT_PLAIN || n_out != 1 || n_in < 1 || n_in > CPU_MAX_BLOCKED_IN ||
        !ir_tensor_present(&in[0]) || !ir_layout_numel(l, &out[0].shape, &count))
        return false;
    lout[0] = l;
    if (f & IR_OP_INPLACE) {
        if (!kiln_dims_equal(&in[0].shape, &out[0].shape)) return false;
        lin[0] = l;
        for (int32_t k = 1; k < n_in; k++) {
            lin[k] = IR_LAYOUT_PLAIN;
            if (ir_tensor_present(&in[k]) && ir_tensor_count(&in[k]) != 1) return false;
        }
        return true;
    }
    if (!(f & IR_OP_ELEMENTWISE)) return false;
    for (int32_t k = 0; k < n_in; k++) {
        lin[k] = l;
        if (!ir_tensor_present(&in[k]) || !kiln_dims_equal(&in[k].shape, &out[0].shape))
            return false;
    }
    return true;
}

static bool blocked_applies(const ir_node *n, const ir_tensor *in, int32_t n_in,
                            const ir_tensor *out, int32_t n_out)
{
    ir_layout lin[CPU_MAX_BLOCKED_IN], lout[1];
    if (n_out != 1 || n_in > CPU_MAX_BLOCKED_IN) return false;
    return agnostic_layouts(n, in, n_in, out, n_out, out[0].layout, lin, lout) &&
           cpu_layouts_are(in, n_in, out, n_out, lin, lout);
}

/* Runs the reference evaluation over the storage (blocked tensors seen as plain ones of
 * their storage shape: element i is element i everywhere), then zeroes the output's
 * padding lanes, which now hold f(0) - Sigmoid's 0.5, a bias - and must not. */
static kiln_status run_blocked(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                               int32_t n_out, const backend_exec *x)
{
    ir_tensor vin[CPU_MAX_BLOCKED_IN], vout = out[0];
    for (int32_t k = 0; k < n_in; k++) {
        vin[k] = in[k];
        vin[k].shape = ir_layout_storage_shape(in[k].layout, &in[k].shape);
        vin[k].layout = IR_LAYOUT_PLAIN;
    }
    vout.shape = ir_layout_storage_shape(out[0].layout, &out[0].shape);
    vout.layout = IR_LAYOUT_PLAIN;
    KILN_TRY(n->op->eval(n, vin, n_in, &vout, 1));
    ir_layout_zero_padding(&out[0]);
    return KILN_OK;
}

static const backend_kernel g_kernels[] = {
    {.name = "ref", .applies = ref_applies, .run = run_reference},
    {.name = "ref_blocked", .applies = blocked_applies, .run = run_blocked},
};

static const int32_t g_kernel_count = sizeof g_kernels / sizeof *g_kernels;

/* Winograd's error is a few times that of a direct sum (about 1e-6 relative per layer
 * instead of 3e-7; docs/ARCHITECTURE.md, "Winograd"): KILN_CPU_WINOGRAD=off (or 0) keeps it
 * out of new builds. Read on every build, as KILN_ISA; plans that use it still load. */
static bool winograd_offered(void)
{
    const char *env = getenv("KILN_CPU_WINOGRAD");
    return !env || (strcmp(env, "off") != 0 && strcmp(env, "0") != 0);
}

/* The kernel tables in the order candidates are offered: the fast kernels first (the
 * builder takes the first that applies; Winograd before the GEMM's im2col for the 3x3
 * convolutions it takes), then the blocked reference kernels, then the general ones. A
 * kernel family joins with one row; `offered` (NULL: always) can keep it out of builds. */
static const struct {
    const backend_kernel *kernels;
    const int32_t *count;
    bool (*offered)(void);
} g_tables[] = {
    {cpu_dwpool_kernels, &cpu_dwpool_kernel_count, NULL},
    {cpu_winograd_kernels, &cpu_winograd_kernel_count, winograd_offered},
    {cpu_gemm_kernels, &cpu_gemm_kernel_count, NULL},
    /* after the GEMM kernels: those take MatMul with a constant B, these any other */
    {cpu_transformer_kernels, &cpu_transformer_kernel_count, NULL},
    {cpu_eltwise_kernels, &cpu_eltwise_kernel_count, NULL},
    {cpu_nchwc_kernels, &cpu_nchwc_kernel_count, NULL},
    {g_kernels, &g_kernel_count, NULL},
};

/* Kernel i of all tables, and its table's index. */
static const backend_kernel *kernel_at(int32_t i, size_t *table)
{
    for (size_t t = 0; t < sizeof g_tables / sizeof *g_tables; t++) {
        if (i < *g_tables[t].count) {
            if (table) *table = t;
            return &g_tables[t].kernels[i];
        }
        i -= *g_tables[t].count;
    }
    return NULL;
}

static bool kernel_serves(const backend_kernel *k, const char *op)
{
    return (k->op == NULL || strcmp(k->op, op) == 0) && (k->features & ~kiln_cpu_features()) == 0;
}

/* Length of a kernel name without its ISA suffix ("gemm_avx512" -> "gemm"). */
static size_t family_len(const char *name)
{
    static const char *const isa[] = {"_avx512", "_avx2", "_generic", "_portable"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof isa / sizeof *isa; i++) {
        size_t m = strlen(isa[i]);
        if (n > m && strcmp(name + n - m, isa[i]) == 0) return n - m;
    }
    return n;
}

static bool same_family(const char *a, const char *b)
{
    size_t la = family_len(a), lb = family_len(b);
    return la == lb && strncmp(a, b, la) == 0;
}

static int32_t cpu_candidates(const ir_node *n, const ir_tensor *in, int32_t n_in,
                              const ir_tensor *out, int32_t n_out, const backend_kernel **list,
                              int32_t max)
{
    int32_t c = 0;
    size_t t = 0;
    const backend_kernel *k;
    for (int32_t i = 0; (k = kernel_at(i, &t)) != NULL && c < max; i++) {
        if (!kernel_serves(k, n->op->name)) continue;
        if (g_tables[t].offered && !g_tables[t].offered()) continue;
        if (k->applies && !k->applies(n, in, n_in, out, n_out)) continue;
        /* One per family: its best ISA path comes first in the tables, and timing the
         * slower paths of the same code would only lengthen builds. */
        bool seen = false;
        for (int32_t j = 0; j < c && !seen; j++) seen = same_family(list[j]->name, k->name);
        if (!seen) list[c++] = k;
    }
    return c;
}

static const backend_kernel *cpu_find(const char *op, const char *kernel)
{
    const backend_kernel *k;
    for (int32_t i = 0; (k = kernel_at(i, NULL)) != NULL; i++)
        if (strcmp(k->name, kernel) == 0 && (k->op == NULL || strcmp(k->op, op) == 0)) return k;
    return NULL;
}

/* ---- the layout policy ---- */

static int32_t g_policy = -1; /* -1: KILN_CPU_LAYOUT decides */

int32_t backend_cpu_set_layout_policy(int32_t layout)
{
    int32_t old = g_policy;
    g_policy = layout < 0 ? -1 : layout;
    return old;
}

static kiln_status layout_policy(ir_layout *out)
{
    *out = IR_LAYOUT_PLAIN;
    if (g_policy >= 0) {
        *out = (ir_layout)g_policy;
        return KILN_OK;
    }
    const char *env = getenv("KILN_CPU_LAYOUT");
    if (env && *env && !ir_layout_parse(env, out))
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "KILN_CPU_LAYOUT is \"%s\"; expected plain, nchw4c, nchw8c or nchw16c",
                          env);
    return KILN_OK;
}

/* The layout an agnostic layer inherits: that of its activation inputs (input 0 for a
 * unary op), when they all agree; plain otherwise. Constants (data known) take any. */
static ir_layout inherited_layout(const ir_node *n, const ir_tensor *in, int32_t n_in)
{
    if (n->op->flags & IR_OP_INPLACE) return in[0].data ? IR_LAYOUT_PLAIN : in[0].layout;
    ir_layout l = IR_LAYOUT_PLAIN;
    bool seen = false;
    for (int32_t k = 0; k < n_in; k++) {
        if (!ir_tensor_present(&in[k]) || in[k].data) continue;
        if (seen && in[k].layout != l) return IR_LAYOUT_PLAIN;
        l = in[k].layout;
        seen = true;
    }
    return l;
}

/* Under a blocked policy: the blocked reference kernels' layouts where one runs the layer,
 * else the layout the layer's activations already have where it is agnostic, else plain. */
static kiln_status cpu_layout(const ir_node *n, const ir_tensor *in, int32_t n_in,
                              const ir_tensor *out, int32_t n_out, ir_layout *want_in,
                              ir_layout *want_out)
{
    ir_layout policy, lin[CPU_MAX_BLOCKED_IN], lout[1];
    KILN_TRY(layout_policy(&policy));
    if (policy == IR_LAYOUT_PLAIN || n_out != 1 || n_in > CPU_MAX_BLOCKED_IN) return KILN_OK;
    bool take = cpu_nchwc_layouts(n, in, n_in, out, n_out, policy, lin, lout);
    if (!take && n_in > 0 && ir_tensor_present(&in[0]))
        take = agnostic_layouts(n, in, n_in, out, n_out, inherited_layout(n, in, n_in), lin, lout);
    if (!take) return KILN_OK;
    memcpy(want_in, lin, sizeof *lin * (size_t)n_in);
    want_out[0] = lout[0];
    return KILN_OK;
}

static const kiln_backend g_cpu = {"cpu", cpu_candidates, cpu_find, cpu_layout};

const kiln_backend *backend_cpu(void) { return &g_cpu; }
