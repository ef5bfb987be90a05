/* test_eltwise_kernels.c - the CPU backend's eltwise kernels (kiln.Elementwise and the plain
 * elementwise ops, Softmax / LogSoftmax, LayerNormalization, ReduceSum / ReduceMean) against
 * the ops' reference kernels, on every ISA path this machine runs (KILN_ISA): random shapes
 * with tails (ranks 1 to 4, sizes 1 to 67 and a few long rows), operands broadcast every
 * way, special values, random programs over every step code, in place, several thread
 * counts (bit-identical results), and whole engines (the kernels chosen, a saved plan). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "ir/ops/fused_chain.h"
#include "testnet.h"

/* Vector paths: rel L2 against the reference where a formula is approximated. */
#define TOL 1e-6

static char *g_saved_isa;

static void isa_save(void) { g_saved_isa = getenv("KILN_ISA") ? strdup(getenv("KILN_ISA")) : NULL; }

static void isa_restore(void)
{
    if (g_saved_isa)
        setenv("KILN_ISA", g_saved_isa, 1);
    else
        unsetenv("KILN_ISA");
    free(g_saved_isa);
    g_saved_isa = NULL;
}

/* ---- running one kernel ---- */

typedef struct run_opts {
    int32_t threads;
    bool in_place;      /* output 0 over (a copy of) input 0 */
    const char *expect; /* the kernel that must come first among the candidates; NULL: none
                           of kind `kind` may be offered */
} run_opts;

/* Runs `op` on `in` with the first candidate kernel of the CPU backend, which must be
 * opt->expect (or, when that is NULL, must not be one of kind `kind`). Outputs are allocated
 * (tu_tensor_free). */
static void run_kernel(const char *op, const kiln_attr *attrs, int32_t n_attrs, const ir_tensor *in,
                       int32_t n_in, ir_tensor *out, int32_t n_out, const char *kind,
                       const run_opts *opt)
{
    ir_graph g;
    ir_graph_init(&g);
    char names[16][16], onames_buf[4][16];
    const char *inames[16], *onames[4];
    for (int32_t i = 0; i < n_in; i++) {
        inames[i] = "";
        if (!ir_tensor_present(&in[i])) continue;
        snprintf(names[i], sizeof names[i], "in%d", i);
        inames[i] = names[i];
        size_t nb = (size_t)ir_tensor_count(&in[i]) * kiln_dtype_size(in[i].dtype);
        assert_int_equal(ir_graph_add_constant(&g, names[i], in[i].dtype, &in[i].shape, in[i].data,
                                               nb, false, NULL),
                         KILN_OK);
    }
    for (int32_t i = 0; i < n_out; i++) {
        snprintf(onames_buf[i], sizeof onames_buf[i], "out%d", i);
        onames[i] = onames_buf[i];
        memset(&out[i], 0, sizeof out[i]);
    }
    int32_t nid;
    assert_int_equal(
        ir_graph_add_node(&g, op, "node", inames, n_in, onames, n_out, attrs, n_attrs, &nid),
        KILN_OK);
    const ir_node *node = &g.nodes[nid];
    ir_infer c = {.node = node, .n_in = n_in, .n_out = n_out, .in = in, .out = out};
    kiln_status st = node->op->infer(&c);
    if (st) fail_msg("%s: %s", op, kiln_last_error());
    for (int32_t i = 0; i < n_out; i++) {
        int64_t cnt = ir_tensor_count(&out[i]);
        out[i].layout = IR_LAYOUT_PLAIN;
        out[i].data = calloc(1, (size_t)cnt * kiln_dtype_size(out[i].dtype) + 4);
    }
    const backend_kernel *list[64];
    int32_t nc = backend_cpu()->candidates(node, in, n_in, out, n_out, list, 64);
    assert_true(nc >= 1);
    if (opt->expect) {
        if (strcmp(list[0]->name, opt->expect) != 0)
            fail_msg("%s: first kernel %s, expected %s", op, list[0]->name, opt->expect);
    } else {
        for (int32_t i = 0; i < nc; i++)
            if (strncmp(list[i]->name, kind, strlen(kind)) == 0)
                fail_msg("%s: kernel %s offered for a layer it must leave", op, list[i]->name);
    }
    ir_tensor xin[16];
    memcpy(xin, in, sizeof *in * (size_t)n_in);
    if (opt->in_place) {
        memcpy(out[0].data, in[0].data, sizeof(float) * (size_t)ir_tensor_count(&in[0]));
        xin[0].data = out[0].data;
    }
    backend_exec x = {.threads = opt->threads < 1 ? 1 : opt->threads};
    st = list[0]->run(node, xin, n_in, out, n_out, &x);
    if (st) fail_msg("%s: %s", op, kiln_last_error());
    ir_graph_free(&g);
}

/* got against want: NaN where want is NaN, the same infinities, rel L2 over the finite
 * rest within tol (0: the same bits, NaN payloads aside). */
static void expect_close_skip(const char *what, const float *got, const float *want, int64_t n,
                              double tol, const bool *skip)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float g = got[i], w = want[i];
        if (skip && skip[i]) continue;
        if (isnan(w) || isnan(g)) {
            if (isnan(w) != isnan(g))
                fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)i, (double)g,
                         (double)w);
            continue;
        }
        if (isinf(w) || isinf(g)) {
            if (g != w)
                fail_msg("%s: element %lld is %.9g, expected %.9g", what, (long long)i, (double)g,
                         (double)w);
            continue;
        }
        if (tol == 0.0 && memcmp(&g, &w, sizeof g) != 0)
            fail_msg("%s: element %lld is %.9g, expected exactly %.9g", what, (long long)i,
                     (double)g, (double)w);
        num += ((double)g - w) * ((double)g - w);
        den += (double)w * w;
    }
    double err = sqrt(num) / (den > 0 ? sqrt(den) : 1e-30);
    if (!(err <= tol) && !(tol == 0.0 && num == 0.0))
        fail_msg("%s: rel L2 %g, tolerance %g", what, err, tol);
}

static void expect_close(const char *what, const float *got, const float *want, int64_t n,
                         double tol)
{
    expect_close_skip(what, got, want, n, tol, NULL);
}

/* The reference and the kernel of every path on the same inputs; `exact`: the vector
 * paths must give the reference's bits too. */
static void check_op_tol(const char *what, const char *op, const kiln_attr *attrs, int32_t n_attrs,
                         const ir_tensor *in, int32_t n_in, int32_t n_out, const char *kind,
                         bool exact, bool in_place, double tol, const bool *skip)
{
    ir_tensor want[3], got[3];
    tu_run_op_ok(op, attrs, n_attrs, in, n_in, want, n_out);
    isa_save();
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        char name[64], label[160];
        snprintf(name, sizeof name, "%s_%s", kind, tu_isa_suffix[p]);
        run_opts o = {.threads = 1, .in_place = in_place, .expect = name};
        run_kernel(op, attrs, n_attrs, in, n_in, got, n_out, kind, &o);
        for (int32_t k = 0; k < n_out; k++) {
            assert_true(kiln_dims_equal(&got[k].shape, &want[k].shape));
            snprintf(label, sizeof label, "%s on %s, output %d", what, tu_isa_env[p], k);
            expect_close_skip(label, got[k].data, want[k].data, ir_tensor_count(&want[k]),
                              exact || p == 2 ? 0.0 : tol, p == 2 ? NULL : skip);
            tu_tensor_free(&got[k]);
        }
    }
    isa_restore();
    for (int32_t k = 0; k < n_out; k++) tu_tensor_free(&want[k]);
}

static void check_op(const char *what, const char *op, const kiln_attr *attrs, int32_t n_attrs,
                     const ir_tensor *in, int32_t n_in, int32_t n_out, const char *kind, bool exact,
                     bool in_place)
{
    check_op_tol(what, op, attrs, n_attrs, in, n_in, n_out, kind, exact, in_place, TOL, NULL);
}

/* ---- data ---- */

/* Values in [lo, hi), with some special ones (zeros of both signs, infinities, NaN,
 * subnormals, large magnitudes) when `specials`. */
static ir_tensor random_tensor(tu_rng *r, const kiln_dims *d, float lo, float hi, bool specials)
{
    static const float sp[] = {0.0f,  -0.0f,  INFINITY, -INFINITY, NAN,  1e-40f, -1e-40f,
                               80.0f, -80.0f, 1e30f,    -1e30f,    1.0f, -1.0f,  0.5f};
    ir_tensor t = tu_tensor_f32(d->rank, d->d, NULL);
    float *p = t.data;
    int64_t n = ir_tensor_count(&t);
    tu_fill(r, p, n, lo, hi);
    if (specials)
        for (int64_t i = 0; i < n; i++)
            if (tu_int(r, 0, 31) == 0)
                p[i] = sp[tu_int(r, 0, (int64_t)(sizeof sp / sizeof *sp) - 1)];
    return t;
}

/* A shape of rank 1..4: the last dim 1..67 (sometimes a few hundred, spanning blocks), the
 * others 1..5. */
static kiln_dims random_shape(tu_rng *r, int32_t min_rank)
{
    kiln_dims d = {(int32_t)tu_int(r, min_rank, 4), {0}};
    for (int32_t j = 0; j < d.rank; j++) d.d[j] = tu_int(r, 1, 5);
    if (d.rank > 0) d.d[d.rank - 1] = tu_int(r, 0, 7) == 0 ? tu_int(r, 200, 700) : tu_int(r, 1, 67);
    return d;
}

/* How an operand broadcasts to x. */
typedef enum bkind { B_FULL, B_SCALAR, B_ONES, B_CHANNEL, B_LAST, B_RANDOM, B_COUNT } bkind;

static kiln_dims operand_shape(tu_rng *r, const kiln_dims *x, bkind k)
{
    kiln_dims o = {0, {0}};
    switch (k) {
    case B_FULL: return *x;
    case B_SCALAR: return o;
    case B_ONES:
        o.rank = x->rank;
        for (int32_t j = 0; j < o.rank; j++) o.d[j] = 1;
        return o;
    case B_CHANNEL: /* [C, 1, 1]-style: x's dim 1 (its only dim for rank 1) */
        if (x->rank < 2) return *x;
        o.rank = x->rank - 1;
        o.d[0] = x->d[1];
        for (int32_t j = 1; j < o.rank; j++) o.d[j] = 1;
        return o;
    case B_LAST:
        o.rank = 1;
        o.d[0] = x->rank ? x->d[x->rank - 1] : 1;
        return o;
    default:
        o.rank = (int32_t)tu_int(r, 0, x->rank);
        for (int32_t j = 0; j < o.rank; j++)
            o.d[j] = tu_int(r, 0, 1) ? x->d[j + x->rank - o.rank] : 1;
        return o;
    }
}

/* ---- unary ops ---- */

typedef struct unary_case {
    const char *op;
    float lo, hi;
    bool exact; /* the vector formula is the scalar one */
    kiln_attr attrs[2];
    int32_t n_attrs;
} unary_case;

/* Attributes in a static table (the KILN_ATTR_* builders are compound literals). */
#define AF(n, v)                                                                                   \
    {                                                                                              \
        .name = (n), .type = KILN_ATTR_FLOAT, .f = (v)                                             \
    }
#define AS(n, v)                                                                                   \
    {                                                                                              \
        .name = (n), .type = KILN_ATTR_STRING, .s = (v)                                            \
    }

static const unary_case k_unary[] = {
    {"Relu", -3, 3, true, {{0}}, 0},
    {"LeakyRelu", -3, 3, true, {AF("alpha", 0.13f)}, 1},
    {"Sigmoid", -12, 12, false, {{0}}, 0},
    {"Tanh", -6, 6, false, {{0}}, 0},
    {"Exp", -20, 20, false, {{0}}, 0},
    {"Log", -0.5f, 40, false, {{0}}, 0},
    {"Sqrt", -0.5f, 40, true, {{0}}, 0},
    {"Neg", -3, 3, true, {{0}}, 0},
    {"Abs", -3, 3, true, {{0}}, 0},
    {"Reciprocal", -3, 3, true, {{0}}, 0},
    {"Erf", -4, 4, false, {{0}}, 0},
    {"HardSigmoid", -6, 6, true, {AF("alpha", 0.3f), AF("beta", 0.4f)}, 2},
    {"HardSwish", -5, 5, true, {{0}}, 0},
    {"Elu", -6, 3, false, {AF("alpha", 0.7f)}, 1},
    {"Celu", -6, 3, false, {AF("alpha", 1.3f)}, 1},
    {"Celu", -6, 3, false, {AF("alpha", -0.8f)}, 1},
    {"Selu", -6, 3, false, {{0}}, 0},
    {"Softplus", -30, 30, false, {{0}}, 0},
    {"Softsign", -5, 5, true, {{0}}, 0},
    {"Mish", -10, 10, false, {{0}}, 0},
    {"ThresholdedRelu", -3, 3, true, {AF("alpha", 0.6f)}, 1},
    {"Floor", -5, 5, true, {{0}}, 0},
    {"Ceil", -5, 5, true, {{0}}, 0},
    {"Round", -5, 5, true, {{0}}, 0},
    {"Sign", -3, 3, true, {{0}}, 0},
    {"Sin", -10, 10, true, {{0}}, 0},
    {"Cos", -10, 10, true, {{0}}, 0},
    {"Gelu", -6, 6, false, {{0}}, 0},
    {"Gelu", -6, 6, false, {AS("approximate", "tanh")}, 1},
};

static void test_unary_ops(void **state)
{
    (void)state;
    tu_rng r = {41};
    for (size_t c = 0; c < sizeof k_unary / sizeof *k_unary; c++) {
        const unary_case *u = &k_unary[c];
        for (int t = 0; t < 6; t++) {
            kiln_dims d = random_shape(&r, t == 0 ? 0 : 1);
            ir_tensor x = random_tensor(&r, &d, u->lo, u->hi, t % 2 == 1);
            char what[96];
            snprintf(what, sizeof what, "%s #%zu case %d", u->op, c, t);
            check_op(what, u->op, u->attrs, u->n_attrs, &x, 1, 1, "eltwise", u->exact, t == 3);
            tu_tensor_free(&x);
        }
    }
}

/* Special values alone through every unary op: where libm gives inf, NaN, 0 or +-1, the
 * vector formulas must too (and within tolerance elsewhere). */
static void test_unary_special_values(void **state)
{
    (void)state;
    const float sp[] = {0.0f,    -0.0f,  INFINITY, -INFINITY, NAN,     1e-40f,  -1e-40f, 1e-30f,
                        -1e-30f, 88.0f,  88.7f,    88.8f,     89.0f,   -87.0f,  -103.0f, -105.0f,
                        1e30f,   -1e30f, 0.625f,   -0.625f,   1.0f,    -1.0f,   0.999f,  1.001f,
                        9.5f,    -9.5f,  12.5f,    -12.5f,    3.4e38f, -3.4e38f};
    const int64_t n = (int64_t)(sizeof sp / sizeof *sp);
    for (size_t c = 0; c < sizeof k_unary / sizeof *k_unary; c++) {
        const unary_case *u = &k_unary[c];
        ir_tensor x = tu_tensor_f32(1, &n, sp);
        char what[96];
        snprintf(what, sizeof what, "%s #%zu on special values", u->op, c);
        check_op(what, u->op, u->attrs, u->n_attrs, &x, 1, 1, "eltwise", u->exact, false);
        tu_tensor_free(&x);
    }
}

static void test_clip(void **state)
{
    (void)state;
    tu_rng r = {43};
    for (int t = 0; t < 12; t++) {
        kiln_dims d = random_shape(&r, 1);
        float lo = tu_uniform(&r, -2, 0.5f), hi = tu_uniform(&r, -0.5f, 2);
        ir_tensor in[3] = {random_tensor(&r, &d, -3, 3, t % 2 == 0), tu_tensor_f32(0, NULL, &lo),
                           tu_tensor_f32(0, NULL, &hi)};
        int32_t n_in = t % 3 == 0 ? 1 : t % 3 == 1 ? 2 : 3;
        if (t == 5) { /* max only */
            tu_tensor_free(&in[1]);
            in[1] = tu_absent();
        }
        check_op("Clip", "Clip", NULL, 0, in, n_in, 1, "eltwise", true, t == 4);
        for (int k = 0; k < 3; k++) tu_tensor_free(&in[k]);
    }
}

/* ---- binary and variadic ops ---- */

static void test_binary_ops(void **state)
{
    (void)state;
    static const char *const ops[] = {"Add",   "Sub", "Mul", "Div", "Pow",
                                      "PRelu", "Max", "Min", "Sum", "Mean"};
    tu_rng r = {47};
    for (size_t o = 0; o < sizeof ops / sizeof *ops; o++) {
        bool pow = strcmp(ops[o], "Pow") == 0, prelu = strcmp(ops[o], "PRelu") == 0;
        for (int t = 0; t < 3 * B_COUNT + 3; t++) {
            if (prelu && t >= 3 * B_COUNT) break; /* the slope broadcasts to X, not both ways */
            kiln_dims xs = random_shape(&r, 1);
            kiln_dims a = xs, b;
            if (t < 3 * B_COUNT) {
                b = operand_shape(&r, &xs, (bkind)(t % B_COUNT));
                /* the broadcasting one first as often as second (PRelu: slope second) */
                if (t >= B_COUNT && !prelu && t % 2) {
                    kiln_dims s = a;
                    a = b;
                    b = s;
                }
            } else { /* both broadcast: [N, 1] against [1, M], rank 2 to 4 */
                if (xs.rank < 2) xs = (kiln_dims){2, {3, 5}};
                a = b = xs;
                a.d[a.rank - 1] = 1;
                b.d[b.rank - 2] = 1;
            }
            float lo = pow ? 0.0f : -3.0f;
            ir_tensor in[2] = {random_tensor(&r, &a, lo, 3, t % 4 == 1),
                               random_tensor(&r, &b, pow ? -2.0f : -3.0f, 3, t % 4 == 2)};
            char what[96];
            snprintf(what, sizeof what, "%s case %d", ops[o], t);
            check_op(what, ops[o], NULL, 0, in, 2, 1, "eltwise", true, false);
            tu_tensor_free(&in[0]);
            tu_tensor_free(&in[1]);
        }
    }
}

static void test_variadic_ops(void **state)
{
    (void)state;
    static const char *const ops[] = {"Sum", "Mean", "Max", "Min"};
    tu_rng r = {53};
    for (size_t o = 0; o < 4; o++)
        for (int t = 0; t < 8; t++) {
            kiln_dims xs = random_shape(&r, 1);
            int32_t n_in = (int32_t)tu_int(&r, 1, 7);
            if (t == 7) n_in = 16;
            ir_tensor in[16];
            for (int32_t k = 0; k < n_in; k++) {
                kiln_dims s = operand_shape(&r, &xs, (bkind)tu_int(&r, 0, B_COUNT - 1));
                if (k == t % n_in) s = xs; /* the output's shape comes from somewhere */
                in[k] = random_tensor(&r, &s, -3, 3, k == 1);
            }
            char what[96];
            snprintf(what, sizeof what, "%s of %d, case %d", ops[o], n_in, t);
            check_op(what, ops[o], NULL, 0, in, n_in, 1, "eltwise", true, false);
            for (int32_t k = 0; k < n_in; k++) tu_tensor_free(&in[k]);
        }
}

/* ---- kiln.Elementwise ---- */

enum { MAX_PROG = 12 };

typedef struct prog {
    int32_t n;
    int64_t ops[MAX_PROG], operand[MAX_PROG], side[MAX_PROG];
    float alpha[MAX_PROG], beta[MAX_PROG];
} prog;

static int32_t prog_attrs(const prog *p, kiln_attr *a)
{
    a[0] = KILN_ATTR_IS("ops", p->ops, p->n);
    a[1] = KILN_ATTR_IS("operand", p->operand, p->n);
    a[2] = KILN_ATTR_IS("side", p->side, p->n);
    a[3] = KILN_ATTR_FS("alpha", p->alpha, p->n);
    a[4] = KILN_ATTR_FS("beta", p->beta, p->n);
    return 5;
}

static void step(prog *p, int64_t code, int64_t operand, int64_t side, float alpha, float beta)
{
    assert_true(p->n < MAX_PROG);
    p->ops[p->n] = code;
    p->operand[p->n] = operand;
    p->side[p->n] = side;
    p->alpha[p->n] = alpha;
    p->beta[p->n] = beta;
    p->n++;
}

/* Parameters in the range step `code`'s op takes (Celu: either sign). */
static void params(int64_t code, tu_rng *r, float *alpha, float *beta)
{
    const fused_ew_info *s = fused_ew_step(code);
    *alpha = *beta = 0.0f;
    if (code == FUSED_EW_CLIP) {
        *alpha = tu_uniform(r, -1.5f, 0.0f);
        *beta = tu_uniform(r, 0.0f, 1.5f);
        return;
    }
    if (s->alpha) *alpha = tu_uniform(r, 0.1f, 1.5f);
    if (code == FUSED_EW_CELU && tu_int(r, 0, 1)) *alpha = -*alpha;
    if (s->beta) *beta = tu_uniform(r, 0.1f, 1.5f);
}

/* Whether the vector paths compute the step with the scalar formula's bits. */
static bool step_exact(int64_t code)
{
    switch (code) {
    case FUSED_EW_SIGMOID:
    case FUSED_EW_TANH:
    case FUSED_EW_EXP:
    case FUSED_EW_LOG:
    case FUSED_EW_ERF:
    case FUSED_EW_ELU:
    case FUSED_EW_CELU:
    case FUSED_EW_SELU:
    case FUSED_EW_SOFTPLUS:
    case FUSED_EW_MISH:
    case FUSED_EW_GELU:
    case FUSED_EW_GELU_TANH: return false;
    default: return true;
    }
}

/* Whether an approximated step's vector formula is approximate at x: Elu, Celu and Selu
 * are x itself (or gamma x) on one side. */
static bool approximated_at(int64_t code, float x)
{
    switch (code) {
    case FUSED_EW_ELU: return x < 0.0f;
    case FUSED_EW_CELU: return !(x >= 0.0f);
    case FUSED_EW_SELU: return !(x > 0.0f);
    default: return true;
    }
}

/* What the program gives when step `nudge` is off by one unit in the last place (up) where
 * its formula is approximated: each step run alone through the reference, that one's result
 * nudged, but for zeros (the vector formulas give exact zeros where libm does: tanh, erf,
 * Gelu, Mish of 0). */
static ir_tensor prog_nudged(const prog *p, const ir_tensor *in, int32_t nudge)
{
    ir_tensor v = tu_tensor_f32(in[0].shape.rank, in[0].shape.d, in[0].data);
    for (int32_t s = 0; s < p->n; s++) {
        prog one = {0};
        bool binary = fused_ew_step(p->ops[s])->binary;
        step(&one, p->ops[s], binary ? 1 : -1, p->side[s], p->alpha[s], p->beta[s]);
        ir_tensor ins[2] = {v, binary ? in[p->operand[s]] : tu_absent()}, out[1];
        kiln_attr a[5];
        tu_run_op_ok("kiln.Elementwise", a, prog_attrs(&one, a), ins, binary ? 2 : 1, out, 1);
        if (s == nudge) {
            const float *x = v.data;
            float *f = out[0].data;
            for (int64_t i = 0; i < ir_tensor_count(&v); i++)
                if (isfinite(f[i]) && f[i] != 0.0f && approximated_at(p->ops[s], x[i]))
                    f[i] = nextafterf(f[i], INFINITY);
        }
        tu_tensor_free(&v);
        v = out[0];
    }
    return v;
}

/* How much the program magnifies last-bit errors of its approximated steps (exp of exp: an
 * inner step's error grows by the outer steps' condition): the sum over those steps of the
 * rel L2 change one ulp in that step makes. Elements such an ulp moves by more than 1e-4 of
 * the output's RMS, or to or from NaN or inf, sit on an edge of the program (a Floor, a
 * Sign, a ThresholdedRelu after an approximated step): any implementation may land on
 * either side, so they are marked `unstable` and left out. */
static double prog_condition(const prog *p, const ir_tensor *in, const ir_tensor *want,
                             bool *unstable)
{
    const float *w = want->data;
    int64_t n = ir_tensor_count(want), finite = 0;
    double rms = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(w[i])) {
            rms += (double)w[i] * w[i];
            finite++;
        }
    rms = finite ? sqrt(rms / (double)finite) : 0.0;
    ir_tensor nudged[MAX_PROG];
    for (int32_t s = 0; s < p->n; s++) {
        if (step_exact(p->ops[s])) continue;
        nudged[s] = prog_nudged(p, in, s);
        const float *f = nudged[s].data;
        for (int64_t i = 0; i < n; i++) {
            bool same_kind = isnan(f[i]) == isnan(w[i]) && isinf(f[i]) == isinf(w[i]);
            if (!same_kind ||
                (isfinite(w[i]) && fabs((double)f[i] - w[i]) > 1e-4 * fmax(rms, 1e-30)))
                unstable[i] = true;
        }
    }
    double sum = 0.0;
    for (int32_t s = 0; s < p->n; s++) {
        if (step_exact(p->ops[s])) continue;
        const float *f = nudged[s].data;
        double num = 0.0, den = 0.0;
        for (int64_t i = 0; i < n; i++) {
            if (unstable[i] || !isfinite(w[i])) continue;
            num += ((double)f[i] - w[i]) * ((double)f[i] - w[i]);
            den += (double)w[i] * w[i];
        }
        sum += sqrt(num) / (den > 0 ? sqrt(den) : 1e-30);
        tu_tensor_free(&nudged[s]);
    }
    return sum;
}

/* A program against the reference within TOL, or within twice prog_condition where that is
 * more (the vector formulas are within about 2 ulp of libm's), its unstable elements aside. */
static void check_prog(const char *what, const prog *p, const ir_tensor *in, int32_t n_in,
                       bool in_place)
{
    kiln_attr a[5];
    bool exact = true;
    for (int32_t s = 0; s < p->n; s++) exact = exact && step_exact(p->ops[s]);
    double tol = TOL;
    int64_t n = ir_tensor_count(&in[0]);
    bool *unstable = calloc((size_t)(n ? n : 1), sizeof(bool));
    if (!exact) {
        ir_tensor want[1];
        tu_run_op_ok("kiln.Elementwise", a, prog_attrs(p, a), in, n_in, want, 1);
        double e = prog_condition(p, in, &want[0], unstable);
        if (2 * e > tol) tol = 2 * e;
        int64_t left = 0;
        for (int64_t i = 0; i < n; i++) left += unstable[i];
        /* the programs are not mostly edges */
        /* a few edges, not a program that is mostly edges */
        if (left * 20 > n + 20)
            fail_msg("%s: %lld of %lld elements unstable", what, (long long)left, (long long)n);
        tu_tensor_free(&want[0]);
    }
    check_op_tol(what, "kiln.Elementwise", a, prog_attrs(p, a), in, n_in, 1, "eltwise", exact,
                 in_place, tol, unstable);
    free(unstable);
}

/* Pow by a scalar 2 is x * x on the vector paths: correctly rounded, within an ulp of powf
 * (which is not, now and then). */
static void test_pow_square(void **state)
{
    (void)state;
    tu_rng r = {97};
    for (int t = 0; t < 8; t++) {
        kiln_dims xs = random_shape(&r, 1);
        float two = 2.0f;
        kiln_dims es = t % 2 ? (kiln_dims){0, {0}} : (kiln_dims){1, {1}};
        ir_tensor in[2] = {random_tensor(&r, &xs, -1e3f, 1e3f, true),
                           tu_tensor_f32(es.rank, es.d, &two)};
        check_op("Pow by 2", "Pow", NULL, 0, in, 2, 1, "eltwise", false, false);
        prog p = {0};
        step(&p, FUSED_EW_SIGMOID, -1, 0, 0, 0);
        step(&p, FUSED_EW_POW, 1, 0, 0, 0);
        step(&p, FUSED_EW_MUL, 0, 0, 0, 0);
        kiln_attr a[5];
        check_op("sigmoid, squared, times x", "kiln.Elementwise", a, prog_attrs(&p, a), in, 2, 1,
                 "eltwise", false, t == 3);
        tu_tensor_free(&in[0]);
        tu_tensor_free(&in[1]);
    }
}

/* Every step alone; binary ones on both sides against every kind of operand. */
static void test_chain_each_step(void **state)
{
    (void)state;
    tu_rng r = {59};
    for (int64_t code = 0; code < FUSED_EW_COUNT; code++) {
        const fused_ew_info *info = fused_ew_step(code);
        int forms = info->binary ? 2 * B_COUNT : 2;
        for (int f = 0; f < forms; f++) {
            int64_t side = info->binary ? f % 2 : 0;
            if (code == FUSED_EW_PRELU && side == 1 && f / 2 != B_FULL) continue;
            kiln_dims xs = random_shape(&r, 1);
            prog p = {0};
            float alpha, beta;
            params(code, &r, &alpha, &beta);
            step(&p, code, info->binary ? 1 : -1, side, alpha, beta);
            kiln_dims os = operand_shape(&r, &xs, (bkind)(f / 2));
            float lo = code == FUSED_EW_LOG || code == FUSED_EW_SQRT ? 0.0f : -3.0f;
            ir_tensor in[2] = {random_tensor(&r, &xs, lo, 3, f % 2 == 1),
                               random_tensor(&r, &os, -3, 3, false)};
            char what[96];
            snprintf(what, sizeof what, "step %s form %d", info->name, f);
            check_prog(what, &p, in, info->binary ? 2 : 1, f == 1);
            tu_tensor_free(&in[0]);
            tu_tensor_free(&in[1]);
        }
    }
}

/* Random programs of up to 8 steps over random shapes with tails, operands shared between
 * steps, x itself as an operand, in place now and then. */
static void test_chain_random_programs(void **state)
{
    (void)state;
    tu_rng r = {61};
    for (int trial = 0; trial < 400; trial++) {
        kiln_dims xs = random_shape(&r, trial % 10 == 0 ? 0 : 1);
        ir_tensor in[FUSED_EW_MAX_IN];
        int32_t n_in = 1;
        in[0] = random_tensor(&r, &xs, -2, 2, trial % 7 == 0);
        prog p = {0};
        int32_t steps = (int32_t)tu_int(&r, 1, 8);
        for (int32_t s = 0; s < steps; s++) {
            int64_t code = tu_int(&r, 0, FUSED_EW_COUNT - 1);
            const fused_ew_info *info = fused_ew_step(code);
            float alpha, beta;
            params(code, &r, &alpha, &beta);
            if (!info->binary) {
                step(&p, code, -1, 0, alpha, beta);
                continue;
            }
            int64_t side = tu_int(&r, 0, 1), k = tu_int(&r, 0, n_in); /* n_in: a new one */
            if (code == FUSED_EW_PRELU && side == 1) k = 0;
            if (k == n_in) {
                kiln_dims os = operand_shape(&r, &xs, (bkind)tu_int(&r, 0, B_COUNT - 1));
                in[n_in++] = random_tensor(&r, &os, -2, 2, false);
            }
            step(&p, code, k, side, alpha, beta);
        }
        char what[64];
        snprintf(what, sizeof what, "random program %d", trial);

        check_prog(what, &p, in, n_in, trial % 5 == 0);
        for (int32_t k = 0; k < n_in; k++) tu_tensor_free(&in[k]);
    }
}

/* ---- Softmax, LogSoftmax ---- */

static void test_softmax(void **state)
{
    (void)state;
    tu_rng r = {67};
    for (int t = 0; t < 60; t++) {
        kiln_dims d = random_shape(&r, 1);
        if (t % 6 == 5 && d.rank > 1) d.d[0] = tu_int(&r, 20, 90); /* a long other axis */
        int64_t axis = tu_int(&r, -d.rank, d.rank - 1);
        float spread = t % 3 == 0 ? 40.0f : 4.0f;
        ir_tensor x = random_tensor(&r, &d, -spread, spread, false);
        float *p = x.data;
        int64_t n = ir_tensor_count(&x);
        if (t % 4 == 1) /* masked scores */
            for (int64_t i = 0; i < n; i++)
                if (tu_int(&r, 0, 4) == 0) p[i] = tu_int(&r, 0, 1) ? -INFINITY : -10000.0f;
        if (t % 10 == 7) p[tu_int(&r, 0, n - 1)] = NAN; /* its row (column) goes NaN */
        kiln_attr a[1] = {KILN_ATTR_I("axis", axis)};
        const char *op = t % 2 ? "LogSoftmax" : "Softmax";
        char what[96];
        snprintf(what, sizeof what, "%s axis %lld case %d", op, (long long)axis, t);
        check_op(what, op, a, 1, &x, 1, 1, "softmax", false, false);
        tu_tensor_free(&x);
    }
}

/* ---- LayerNormalization ---- */

static void test_layernorm(void **state)
{
    (void)state;
    tu_rng r = {71};
    for (int t = 0; t < 60; t++) {
        kiln_dims d = random_shape(&r, 1);
        if (t % 5 == 0) d.d[d.rank - 1] = tu_int(&r, 300, 800);
        int64_t axis = tu_int(&r, -d.rank, d.rank - 1);
        int32_t ax = (int32_t)(axis < 0 ? axis + d.rank : axis);
        /* Scale and B of X.shape[axis:], or the same with leading 1s */
        kiln_dims s = {d.rank - ax, {0}};
        for (int32_t j = 0; j < s.rank; j++) s.d[j] = d.d[ax + j];
        if (t % 4 == 3 && ax >= 1) {
            memmove(&s.d[1], &s.d[0], sizeof(int64_t) * (size_t)s.rank);
            s.d[0] = 1;
            s.rank++;
        }
        float offset = t % 3 == 0 ? 1000.0f : 0.0f; /* a large mean against the spread */
        ir_tensor in[3] = {random_tensor(&r, &d, offset - 2, offset + 2, false),
                           random_tensor(&r, &s, -1.5f, 1.5f, false),
                           random_tensor(&r, &s, -1, 1, false)};
        int32_t n_in = t % 7 == 2 ? 2 : 3, n_out = (int32_t)tu_int(&r, 1, 3);
        kiln_attr a[2] = {KILN_ATTR_I("axis", axis),
                          KILN_ATTR_F("epsilon", t % 2 ? 1e-5f : 1e-12f)};
        char what[96];
        snprintf(what, sizeof what, "LayerNormalization axis %lld case %d", (long long)axis, t);
        check_op(what, "LayerNormalization", a, 2, in, n_in, n_out, "layernorm", false, false);
        for (int k = 0; k < 3; k++) tu_tensor_free(&in[k]);
    }
}

/* A Scale that varies along a dim before the axis is not the kernel's: the reference runs
 * it. */
static void test_layernorm_left_alone(void **state)
{
    (void)state;
    tu_rng r = {73};
    kiln_dims d = {3, {2, 3, 8}}, s = {3, {2, 1, 8}};
    ir_tensor in[2] = {random_tensor(&r, &d, -1, 1, false), random_tensor(&r, &s, -1, 1, false)};
    ir_tensor out[1];
    kiln_attr a[1] = {KILN_ATTR_I("axis", -1)};
    run_opts o = {.threads = 1};
    run_kernel("LayerNormalization", a, 1, in, 2, out, 1, "layernorm", &o);
    tu_tensor_free(&out[0]);
    for (int k = 0; k < 2; k++) tu_tensor_free(&in[k]);
}

/* ---- ReduceSum, ReduceMean ---- */

static void test_reduce(void **state)
{
    (void)state;
    tu_rng r = {79};
    for (int t = 0; t < 48; t++) {
        kiln_dims d = random_shape(&r, 1);
        /* trailing axes, written in any order and sign */
        int64_t k = tu_int(&r, 1, d.rank), axes[4];
        for (int64_t i = 0; i < k; i++) {
            int64_t ax = d.rank - k + i;
            axes[i] = tu_int(&r, 0, 1) ? ax : ax - d.rank;
        }
        if (k == 2 && t % 2) {
            int64_t s = axes[0];
            axes[0] = axes[1];
            axes[1] = s;
        }
        ir_tensor in[2] = {random_tensor(&r, &d, -3, 3, t % 9 == 4), tu_tensor_i64(1, &k, axes)};
        int32_t n_in = 2;
        kiln_attr a[2] = {KILN_ATTR_I("keepdims", t % 2), KILN_ATTR_I("noop_with_empty_axes", 0)};
        if (t % 8 == 6) { /* no axes: all of them */
            n_in = 1;
        } else if (t % 8 == 7) { /* no axes with noop: each output is its input */
            n_in = 1;
            a[1] = KILN_ATTR_I("noop_with_empty_axes", 1);
        }
        const char *op = t % 3 ? "ReduceMean" : "ReduceSum";
        char what[96];
        snprintf(what, sizeof what, "%s case %d", op, t);
        check_op(what, op, a, 2, in, n_in, 1, "reduce", false, false);
        tu_tensor_free(&in[0]);
        tu_tensor_free(&in[1]);
    }
}

/* Axes that leave a kept axis after a reduced one are not the kernel's. */
static void test_reduce_left_alone(void **state)
{
    (void)state;
    tu_rng r = {83};
    kiln_dims d = {3, {4, 5, 6}};
    int64_t one = 1, axis = 1;
    ir_tensor in[2] = {random_tensor(&r, &d, -1, 1, false), tu_tensor_i64(1, &one, &axis)};
    ir_tensor out[1];
    run_opts o = {.threads = 1};
    run_kernel("ReduceSum", NULL, 0, in, 2, out, 1, "reduce", &o);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

/* ---- threads ---- */

/* The same bits with 1 to 4 threads, on work large enough to be split (long rows split in
 * runs, many short rows), and within tolerance of the reference. */
static void threads_case(const char *what, const char *op, const kiln_attr *attrs, int32_t n_attrs,
                         const ir_tensor *in, int32_t n_in, const char *kind, bool exact)
{
    ir_tensor want[1];
    tu_run_op_ok(op, attrs, n_attrs, in, n_in, want, 1);
    int64_t n = ir_tensor_count(&want[0]);
    isa_save();
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        char name[64], label[128];
        snprintf(name, sizeof name, "%s_%s", kind, tu_isa_suffix[p]);
        ir_tensor first[1];
        for (int32_t t = 1; t <= 4; t++) {
            run_opts o = {.threads = t, .expect = name};
            ir_tensor got[1];
            run_kernel(op, attrs, n_attrs, in, n_in, got, 1, kind, &o);
            snprintf(label, sizeof label, "%s on %s, %d threads", what, tu_isa_env[p], t);
            if (t == 1) {
                expect_close(label, got[0].data, want[0].data, n, exact || p == 2 ? 0.0 : TOL);
                first[0] = got[0];
                continue;
            }
            expect_close(label, got[0].data, first[0].data, n, 0.0);
            tu_tensor_free(&got[0]);
        }
        tu_tensor_free(&first[0]);
    }
    isa_restore();
    tu_tensor_free(&want[0]);
}

static void test_threads(void **state)
{
    (void)state;
    tu_rng r = {89};
    {
        kiln_dims x = {2, {3, 70001}}, b = {1, {70001}}; /* long rows: split in runs */
        ir_tensor in[2] = {random_tensor(&r, &x, -3, 3, false),
                           random_tensor(&r, &b, -3, 3, false)};
        threads_case("Add, long rows", "Add", NULL, 0, in, 2, "eltwise", true);
        prog p = {0};
        step(&p, FUSED_EW_MUL, 1, 0, 0, 0);
        step(&p, FUSED_EW_GELU, -1, 0, 0, 0);
        kiln_attr a[5];
        threads_case("chain, long rows", "kiln.Elementwise", a, prog_attrs(&p, a), in, 2, "eltwise",
                     false);
        /* one value per long row, on either side (x itself broadcast) */
        kiln_dims m = {2, {3, 1}};
        ir_tensor in2[2] = {random_tensor(&r, &x, -3, 3, false),
                            random_tensor(&r, &m, -3, 3, false)};
        threads_case("Sub of a row value, long rows", "Sub", NULL, 0, in2, 2, "eltwise", true);
        ir_tensor in3[2] = {in2[1], in2[0]};
        threads_case("Div of a row value, long rows", "Div", NULL, 0, in3, 2, "eltwise", true);
        for (int k = 0; k < 2; k++) {
            tu_tensor_free(&in[k]);
            tu_tensor_free(&in2[k]);
        }
    }
    {
        kiln_dims x = {4, {2, 37, 41, 43}}, c = {3, {37, 1, 1}}; /* per channel, short rows */
        ir_tensor in[2] = {random_tensor(&r, &x, -3, 3, false),
                           random_tensor(&r, &c, -3, 3, false)};
        threads_case("Mul per channel", "Mul", NULL, 0, in, 2, "eltwise", true);
        kiln_dims y = {3, {7001, 3, 5}}, s = {3, {7001, 3, 1}}; /* many rows of 5 */
        ir_tensor in2[2] = {random_tensor(&r, &y, -3, 3, false),
                            random_tensor(&r, &s, -3, 3, false)};
        threads_case("Sub, rows of 5", "Sub", NULL, 0, in2, 2, "eltwise", true);
        for (int k = 0; k < 2; k++) {
            tu_tensor_free(&in[k]);
            tu_tensor_free(&in2[k]);
        }
    }
    {
        kiln_dims x = {3, {4, 130, 257}};
        ir_tensor in[3] = {random_tensor(&r, &x, -5, 5, false)};
        kiln_attr last[1] = {KILN_ATTR_I("axis", -1)}, mid[1] = {KILN_ATTR_I("axis", 1)};
        threads_case("Softmax, last axis", "Softmax", last, 1, in, 1, "softmax", false);
        threads_case("Softmax, axis 1", "Softmax", mid, 1, in, 1, "softmax", false);
        kiln_dims s = {1, {257}};
        in[1] = random_tensor(&r, &s, -1, 1, false);
        in[2] = random_tensor(&r, &s, -1, 1, false);
        threads_case("LayerNormalization", "LayerNormalization", last, 1, in, 3, "layernorm",
                     false);
        int64_t one = 1, ax = -1;
        tu_tensor_free(&in[1]);
        in[1] = tu_tensor_i64(1, &one, &ax);
        threads_case("ReduceMean", "ReduceMean", NULL, 0, in, 2, "reduce", false);
        for (int k = 0; k < 3; k++) tu_tensor_free(&in[k]);
    }
}

/* ---- engines ---- */

/* A small transformer-like block built through the public API: the engine's layers run the
 * path's eltwise kernels, a saved plan keeps them, and the outputs agree with the portable
 * path's within tolerance. */
static void test_engine_kernels(void **state)
{
    (void)state;
    kiln_network *net = tn_net();
    tn_input(net, "x", 3, (int64_t[]){2, 16, 48});
    tn_input(net, "m", 4, (int64_t[]){2, 1, 1, 16});
    tn_weights(net, "g", 1, (int64_t[]){48}, 1, 0.5f, 1.5f);
    tn_weights(net, "b", 1, (int64_t[]){48}, 2, -0.5f, 0.5f);
    tn_layer(net, "LayerNormalization", "ln", IN("x", "g", "b"), OUT("n"),
             ATTRS(KILN_ATTR_I("axis", -1)));
    tn_ints(net, "shape", 4, (const int64_t[]){2, 16, 3, 16});
    tn_layer(net, "Reshape", "split", IN("n", "shape"), OUT("h"), NO_ATTRS);
    tn_layer(net, "Transpose", "heads", IN("h"), OUT("t"),
             ATTRS(KILN_ATTR_IS("perm", ((int64_t[]){0, 2, 1, 3}), 4)));
    tn_layer(net, "Add", "mask", IN("t", "m"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Softmax", "softmax", IN("s"), OUT("p"), ATTRS(KILN_ATTR_I("axis", -1)));
    tn_layer(net, "Sigmoid", "gate", IN("p"), OUT("q"), NO_ATTRS);
    tn_layer(net, "Mul", "gated", IN("q", "p"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    isa_save();
    float *ref = NULL;
    int64_t count = 2 * 3 * 16 * 16;
    for (int p = 2; p >= 0; p--) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        kiln_engine *e = tn_build(net, NULL);
        const char *kinds[][2] = {{"ln", "layernorm"}, {"mask", "eltwise"}, {"softmax", "softmax"}};
        for (int i = 0; i < 3; i++) {
            kiln_layer_info li;
            assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, kinds[i][0]), &li),
                             KILN_OK);
            char want[64];
            snprintf(want, sizeof want, "%s_%s", kinds[i][1], tu_isa_suffix[p]);
            if (strcmp(li.kernel, want) != 0)
                fail_msg("layer %s on %s runs %s, expected %s", kinds[i][0], tu_isa_env[p],
                         li.kernel, want);
        }
        /* the chain pass made gate and gated one kiln.Elementwise */
        assert_int_equal(tn_count_op(e, "kiln.Elementwise"), 1);
        char path[64];
        snprintf(path, sizeof path, "/tmp/kiln_test_eltwise_%d.plan", (int)getpid());
        assert_int_equal(kiln_engine_save(e, path), KILN_OK);
        kiln_engine *l = NULL;
        assert_int_equal(kiln_engine_load(path, &l), KILN_OK);
        remove(path);
        tn_io a, b;
        tn_run(e, &a);
        tn_run(l, &b);
        for (int32_t i = 0; i < a.n; i++) {
            if (a.is_input[i]) continue;
            assert_memory_equal(a.data[i], b.data[i], a.bytes[i]);
            assert_int_equal(a.bytes[i], sizeof(float) * (size_t)count);
            if (!ref) {
                ref = malloc(a.bytes[i]);
                memcpy(ref, a.data[i], a.bytes[i]);
            } else {
                expect_close(tu_isa_env[p], a.data[i], ref, count, TOL);
            }
        }
        tn_io_free(&a);
        tn_io_free(&b);
        kiln_engine_destroy(l);
        kiln_engine_destroy(e);
    }
    isa_restore();
    free(ref);
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_ops),
        cmocka_unit_test(test_unary_special_values),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_binary_ops),
        cmocka_unit_test(test_pow_square),
        cmocka_unit_test(test_variadic_ops),
        cmocka_unit_test(test_chain_each_step),
        cmocka_unit_test(test_chain_random_programs),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_layernorm),
        cmocka_unit_test(test_layernorm_left_alone),
        cmocka_unit_test(test_reduce),
        cmocka_unit_test(test_reduce_left_alone),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_engine_kernels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
