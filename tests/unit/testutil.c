/* testutil.c - see testutil.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

uint64_t tu_next(tu_rng *r)
{
    uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

float tu_uniform(tu_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)((tu_next(r) >> 40) * (1.0 / 16777216.0));
}

int64_t tu_int(tu_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(tu_next(r) % (uint64_t)(hi - lo + 1));
}

void tu_fill(tu_rng *r, float *p, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) p[i] = tu_uniform(r, lo, hi);
}

double tu_rel_l2(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (den < 1e-30) return sqrt(num);
    return sqrt(num / den);
}

double tu_max_abs(const float *a, const float *b, int64_t n)
{
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || isnan(d)) m = d;
    }
    return m;
}

void tu_assert_close_(const float *got, const float *want, int64_t n, double tol, const char *file,
                      int line)
{
    double e = tu_rel_l2(got, want, n);
    if (e <= tol && !isnan(e)) return;
    print_error("%s:%d: relative L2 error %.3g > %.3g over %lld elements\n", file, line, e, tol,
                (long long)n);
    int shown = 0;
    for (int64_t i = 0; i < n && shown < 8; i++)
        if (fabsf(got[i] - want[i]) > 1e-5f * (1 + fabsf(want[i])) || isnan(got[i])) {
            print_error("  [%lld] got %.8g want %.8g\n", (long long)i, got[i], want[i]);
            shown++;
        }
    _fail(file, line);
}

ir_tensor tu_tensor(kiln_dtype dtype, int32_t rank, const int64_t *dims, const void *data)
{
    ir_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dtype;
    t.shape = kiln_dims_make(rank, dims);
    size_t n = (size_t)kiln_dims_count(&t.shape) * kiln_dtype_size(dtype);
    t.data = calloc(1, n ? n : 1);
    if (data && n) memcpy(t.data, data, n);
    return t;
}

ir_tensor tu_tensor_f32(int32_t rank, const int64_t *dims, const float *data)
{
    return tu_tensor(KILN_DTYPE_F32, rank, dims, data);
}

ir_tensor tu_tensor_i64(int32_t rank, const int64_t *dims, const int64_t *data)
{
    return tu_tensor(KILN_DTYPE_I64, rank, dims, data);
}

ir_tensor tu_absent(void)
{
    ir_tensor t;
    memset(&t, 0, sizeof t);
    return t;
}

void tu_tensor_free(ir_tensor *t)
{
    free(t->data);
    t->data = NULL;
}

kiln_status tu_run_op(const char *op, const kiln_attr *attrs, int32_t n_attrs, const ir_tensor *in,
                      int32_t n_in, ir_tensor *out, int32_t n_out)
{
    ir_graph g;
    ir_graph_init(&g);
    kiln_status st = KILN_OK;
    char names[16][16];
    const char *inames[16], *onames[16];
    for (int32_t i = 0; i < n_out; i++) memset(&out[i], 0, sizeof out[i]);
    for (int32_t i = 0; i < n_in; i++) {
        if (!ir_tensor_present(&in[i])) {
            inames[i] = "";
            continue;
        }
        snprintf(names[i], sizeof names[i], "in%d", i);
        inames[i] = names[i];
        size_t nb = (size_t)ir_tensor_count(&in[i]) * kiln_dtype_size(in[i].dtype);
        st = ir_graph_add_constant(&g, names[i], in[i].dtype, &in[i].shape, in[i].data, nb, false,
                                   NULL);
        if (st) goto done;
    }
    char onames_buf[16][16];
    for (int32_t i = 0; i < n_out; i++) {
        snprintf(onames_buf[i], sizeof onames_buf[i], "out%d", i);
        onames[i] = onames_buf[i];
    }
    int32_t nid;
    st = ir_graph_add_node(&g, op, "node", inames, n_in, onames, n_out, attrs, n_attrs, &nid);
    if (st) goto done;
    const ir_node *node = &g.nodes[nid];
    ir_infer c = {.node = node, .n_in = n_in, .n_out = n_out, .in = in, .out = out};
    st = node->op->infer(&c);
    if (st) goto done;
    for (int32_t i = 0; i < n_out; i++) {
        int64_t n;
        if (!kiln_dims_numel(&out[i].shape, &n) || kiln_dtype_size(out[i].dtype) == 0) {
            st = kiln_error(KILN_ERR_INTERNAL, "output %d: bad inferred shape or dtype", i);
            goto done;
        }
        out[i].data = calloc(1, (size_t)n * kiln_dtype_size(out[i].dtype) + 1);
    }
    st = node->op->eval(node, in, n_in, out, n_out);
done:
    ir_graph_free(&g);
    return st;
}

void tu_run_op_ok_(const char *op, const kiln_attr *attrs, int32_t n_attrs, const ir_tensor *in,
                   int32_t n_in, ir_tensor *out, int32_t n_out, const char *file, int line)
{
    kiln_status st = tu_run_op(op, attrs, n_attrs, in, n_in, out, n_out);
    if (st == KILN_OK) return;
    print_error("%s:%d: %s failed: %s: %s\n", file, line, op, kiln_status_name(st),
                kiln_last_error());
    _fail(file, line);
}

void tu_check_op_error_(const char *op, kiln_status st, kiln_status want, const char *text,
                        const char *file, int line)
{
    const char *m = kiln_last_error();
    if (st == want && strstr(m, "node 'node'") && (!text || strstr(m, text))) return;
    print_error("%s:%d: %s: status %s, message \"%s\"; expected %s with \"%s\"\n", file, line, op,
                kiln_status_name(st), m, kiln_status_name(want), text ? text : "");
    _fail(file, line);
}

void tu_expect_op_error_(const char *op, const kiln_attr *attrs, int32_t n_attrs,
                         const ir_tensor *in, int32_t n_in, int32_t n_out, kiln_status want,
                         const char *text, const char *file, int line)
{
    ir_tensor out[16];
    if (n_out > 16) n_out = 16;
    kiln_status st = tu_run_op(op, attrs, n_attrs, in, n_in, out, n_out);
    for (int32_t i = 0; i < n_out; i++) tu_tensor_free(&out[i]);
    tu_check_op_error_(op, st, want, text, file, line);
}

void tu_build_survives_allocation_failures(kiln_network *net)
{
    tu_build_cfg_survives_allocation_failures(net, NULL);
}

void tu_build_cfg_survives_allocation_failures(kiln_network *net, const kiln_config *cfg)
{
    long k;
    for (k = 0; k < 20000; k++) {
        kiln_engine *e = NULL;
        kiln_alloc_fail_after(k);
        kiln_status st = kiln_build(net, cfg, &e);
        kiln_alloc_fail_after(-1);
        kiln_engine_destroy(e);
        if (st == KILN_OK) break;
        if (st != KILN_ERR_OUT_OF_MEMORY) fail_msg("failure %ld: %s", k, kiln_last_error());
    }
    assert_true(k < 20000);
}

const char *const tu_isa_env[TU_ISA_PATHS] = {"avx512", "avx2", "portable"};
const char *const tu_isa_suffix[TU_ISA_PATHS] = {"avx512", "avx2", "generic"};

bool tu_isa_runs(int i)
{
    uint64_t f = kiln_cpu_features();
    if (i == 0) return (f & KILN_CPU_AVX512F) != 0;
    if (i == 1) return (f & KILN_CPU_AVX2) && (f & KILN_CPU_FMA);
    return i == 2;
}
