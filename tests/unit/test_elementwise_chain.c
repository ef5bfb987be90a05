/* test_elementwise_chain.c - kiln.Elementwise and the elementwise-chain pass. The op: each
 * step against its standalone op and seeded random programs against the standalone ops
 * in sequence, bit for bit; in place; the errors of its shape rule. The pass: the layers
 * an engine ends with (what each stands for), the same bits with the pass off, and what
 * it must leave alone. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ops/fused_chain.h"
#include "testnet.h"

#define DIMS(...) TU_DIMS(__VA_ARGS__)
#define PASS      "elementwise-chain"

/* ---- programs ---- */

enum { MAX_PROG = 16 };

typedef struct prog {
    int32_t n;
    int64_t ops[MAX_PROG], operand[MAX_PROG], side[MAX_PROG];
    float alpha[MAX_PROG], beta[MAX_PROG];
} prog;

static void prog_attrs(const prog *p, kiln_attr *a)
{
    a[0] = KILN_ATTR_IS("ops", p->ops, p->n);
    a[1] = KILN_ATTR_IS("operand", p->operand, p->n);
    a[2] = KILN_ATTR_IS("side", p->side, p->n);
    a[3] = KILN_ATTR_FS("alpha", p->alpha, p->n);
    a[4] = KILN_ATTR_FS("beta", p->beta, p->n);
}

/* Appends a step (operand -1 for a unary one). */
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

/* Parameters in the range step `code`'s op takes. */
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
    if (s->beta) *beta = tu_uniform(r, 0.1f, 1.5f);
}

/* Replaces *v by step s of `p` run as its standalone op (on operand b when binary). */
static void standalone(const prog *p, int32_t s, ir_tensor *v, const ir_tensor *b)
{
    const fused_ew_info *info = fused_ew_step(p->ops[s]);
    kiln_attr a[2];
    int32_t na = 0, n_in = 1;
    if (info->alpha) a[na++] = KILN_ATTR_F(info->alpha, p->alpha[s]);
    if (info->beta) a[na++] = KILN_ATTR_F(info->beta, p->beta[s]);
    if (p->ops[s] == FUSED_EW_GELU || p->ops[s] == FUSED_EW_GELU_TANH)
        a[na++] = KILN_ATTR_S("approximate", p->ops[s] == FUSED_EW_GELU ? "none" : "tanh");
    ir_tensor in[3] = {*v, tu_absent(), tu_absent()};
    if (info->binary) {
        n_in = 2;
        in[p->side[s] ? 1 : 0] = *v;
        in[p->side[s] ? 0 : 1] = *b;
    } else if (p->ops[s] == FUSED_EW_CLIP) {
        n_in = 3;
        in[1] = tu_tensor_f32(0, NULL, &p->alpha[s]);
        in[2] = tu_tensor_f32(0, NULL, &p->beta[s]);
    }
    ir_tensor out;
    tu_run_op_ok(info->op, a, na, in, n_in, &out, 1);
    if (p->ops[s] == FUSED_EW_CLIP) {
        tu_tensor_free(&in[1]);
        tu_tensor_free(&in[2]);
    }
    tu_tensor_free(v);
    *v = out;
}

/* kiln.Elementwise on `in` gives the bits of the program's steps run one by one. */
static void expect_same_as_standalone(const prog *p, const ir_tensor *in, int32_t n_in)
{
    kiln_attr a[5];
    prog_attrs(p, a);
    ir_tensor fused;
    tu_run_op_ok("kiln.Elementwise", a, 5, in, n_in, &fused, 1);
    ir_tensor v = tu_tensor_f32(in[0].shape.rank, in[0].shape.d, in[0].data);
    for (int32_t s = 0; s < p->n; s++)
        standalone(p, s, &v, p->operand[s] >= 0 ? &in[p->operand[s]] : NULL);
    assert_int_equal(fused.dtype, KILN_DTYPE_F32);
    assert_true(kiln_dims_equal(&fused.shape, &in[0].shape));
    int64_t n = ir_tensor_count(&v);
    if (memcmp(fused.data, v.data, sizeof(float) * (size_t)n) != 0) {
        const float *f = fused.data, *w = v.data;
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&f[i], &w[i], sizeof(float)) != 0) {
                print_error("element %lld: fused %.9g, standalone %.9g\n", (long long)i,
                            (double)f[i], (double)w[i]);
                break;
            }
        for (int32_t s = 0; s < p->n; s++)
            print_error("  step %d: %s operand %lld side %lld\n", s, fused_ew_step(p->ops[s])->name,
                        (long long)p->operand[s], (long long)p->side[s]);
        fail_msg("kiln.Elementwise differs from its steps run as standalone ops");
    }
    tu_tensor_free(&fused);
    tu_tensor_free(&v);
}

static ir_tensor random_f32(tu_rng *r, const kiln_dims *d, float lo, float hi)
{
    ir_tensor t = tu_tensor_f32(d->rank, d->d, NULL);
    tu_fill(r, t.data, ir_tensor_count(&t), lo, hi);
    return t;
}

/* ---- kiln.Elementwise ---- */

/* Every step alone, binary ones on both sides with operands of x's shape, one value per
 * channel, one per element of the last dim and a scalar; x's last dim spans two blocks. */
static void test_op_each_step(void **state)
{
    tu_rng r = {7};
    const kiln_dims x_shape = {3, {2, 3, 300}};
    const kiln_dims operands[] = {
        {3, {2, 3, 300}}, {2, {3, 1}}, {1, {300}}, {0, {0}}, {3, {1, 1, 1}}};
    for (int64_t code = 0; code < FUSED_EW_COUNT; code++) {
        const fused_ew_info *info = fused_ew_step(code);
        int n_forms = info->binary ? 2 * (int)(sizeof operands / sizeof *operands) : 1;
        for (int form = 0; form < n_forms; form++) {
            int64_t side = form % 2;
            const kiln_dims *os = &operands[form / 2];
            if (code == FUSED_EW_PRELU && side == 1 && form / 2 != 0) continue; /* X is full */
            prog p = {0};
            float alpha, beta;
            params(code, &r, &alpha, &beta);
            step(&p, code, info->binary ? 1 : -1, info->binary ? side : 0, alpha, beta);
            ir_tensor in[2] = {random_f32(&r, &x_shape, -3.0f, 3.0f),
                               random_f32(&r, os, -3.0f, 3.0f)};
            expect_same_as_standalone(&p, in, info->binary ? 2 : 1);
            tu_tensor_free(&in[0]);
            tu_tensor_free(&in[1]);
        }
    }
}

/* Random programs of up to 6 steps over random shapes, operands shared between steps and
 * x itself as an operand. */
static void test_op_random_programs(void **state)
{
    tu_rng r = {11};
    for (int trial = 0; trial < 300; trial++) {
        kiln_dims xs = {(int32_t)tu_int(&r, 0, 4), {0}};
        for (int32_t j = 0; j < xs.rank; j++) xs.d[j] = tu_int(&r, 1, 5);
        if (xs.rank > 0 && trial % 5 == 0) xs.d[xs.rank - 1] = tu_int(&r, 250, 520);
        ir_tensor in[FUSED_EW_MAX_IN];
        int32_t n_in = 1;
        in[0] = random_f32(&r, &xs, -2.0f, 2.0f);
        prog p = {0};
        int32_t steps = (int32_t)tu_int(&r, 1, 6);
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
                kiln_dims os = {(int32_t)tu_int(&r, 0, xs.rank), {0}};
                for (int32_t j = 0; j < os.rank; j++)
                    os.d[j] = tu_int(&r, 0, 1) ? xs.d[j + xs.rank - os.rank] : 1;
                in[n_in++] = random_f32(&r, &os, -2.0f, 2.0f);
            }
            step(&p, code, k, side, alpha, beta);
        }
        expect_same_as_standalone(&p, in, n_in);
        for (int32_t k = 0; k < n_in; k++) tu_tensor_free(&in[k]);
    }
}

/* Output over x (as the memory planner may place it), with x also an operand. */
static void test_op_in_place(void **state)
{
    tu_rng r = {3};
    kiln_dims xs = {2, {3, 700}}, bs = {2, {3, 1}};
    ir_tensor in[2] = {random_f32(&r, &xs, -2.0f, 2.0f), random_f32(&r, &bs, -2.0f, 2.0f)};
    prog p = {0};
    step(&p, FUSED_EW_SIGMOID, -1, 0, 0, 0);
    step(&p, FUSED_EW_MUL, 0, 1, 0, 0); /* x * Sigmoid(x) */
    step(&p, FUSED_EW_SUB, 1, 1, 0, 0);
    step(&p, FUSED_EW_HARD_SIGMOID, -1, 0, 0.3f, 0.4f);
    kiln_attr a[5];
    prog_attrs(&p, a);
    ir_tensor want;
    tu_run_op_ok("kiln.Elementwise", a, 5, in, 2, &want, 1);
    ir_node n = {.name = "node", .op = ir_op_find("kiln.Elementwise"), .n_attrs = 5, .attrs = a};
    assert_non_null(n.op);
    assert_true(n.op->flags & IR_OP_INPLACE);
    ir_tensor out = in[0];
    assert_int_equal(n.op->eval(&n, in, 2, &out, 1), KILN_OK);
    assert_memory_equal(in[0].data, want.data, sizeof(float) * 3 * 700);
    tu_tensor_free(&want);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

static void expect_error(const prog *p, const ir_tensor *in, int32_t n_in, kiln_status want,
                         const char *text)
{
    kiln_attr a[5];
    prog_attrs(p, a);
    tu_expect_op_error("kiln.Elementwise", a, 5, in, n_in, 1, want, text);
}

static void test_op_errors(void **state)
{
    float data[12] = {0};
    int64_t ints[6] = {0};
    ir_tensor x = tu_tensor_f32(DIMS(2, 3), data), b3 = tu_tensor_f32(DIMS(3), data);
    ir_tensor b4 = tu_tensor_f32(DIMS(4), data), up = tu_tensor_f32(DIMS(2, 2, 3), data);
    ir_tensor col2 = tu_tensor_f32(DIMS(2, 1), data), i64 = tu_tensor_i64(DIMS(3), ints);
    ir_tensor in[3] = {x, b3, b3};
    prog p = {0};

    /* the program */
    step(&p, FUSED_EW_ADD, 1, 0, 0, 0);
    step(&p, 99, -1, 0, 0, 0);
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "step 1 has code 99, expected 0 to");
    p.ops[1] = -1;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "step 1 has code -1");
    p.ops[1] = FUSED_EW_RELU;
    {
        kiln_attr a[5];
        prog_attrs(&p, a);
        a[1].count = 1; /* operand */
        tu_expect_op_error("kiln.Elementwise", a, 5, in, 2, 1, KILN_ERR_INVALID_GRAPH,
                           "'operand' has 1 entries, expected 2 (one per step of 'ops')");
        prog_attrs(&p, a);
        a[4].count = 3; /* beta */
        tu_expect_op_error("kiln.Elementwise", a, 5, in, 2, 1, KILN_ERR_INVALID_GRAPH,
                           "'beta' has 3 entries, expected 2");
        prog_attrs(&p, a);
        for (int k = 0; k < 5; k++) a[k].count = 0;
        tu_expect_op_error("kiln.Elementwise", a, 5, in, 1, 1, KILN_ERR_INVALID_GRAPH,
                           "'ops' lists no step");
        tu_expect_op_error("kiln.Elementwise", a, 4, in, 1, 1, KILN_ERR_INVALID_GRAPH,
                           "required attribute 'beta' is missing");
    }
    p.operand[1] = 1;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH,
                 "step 1 (Relu) is unary: expected operand -1 and side 0, got 1 and 0");
    p.operand[1] = -1;
    p.side[1] = 1;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "step 1 (Relu) is unary");
    p.side[1] = 0;
    p.operand[0] = 2;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH,
                 "step 0 (Add) reads input 2, but the layer has inputs 0 to 1");
    p.operand[0] = -1;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "step 0 (Add) reads input -1");
    p.operand[0] = 1;
    p.side[0] = 2;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "step 0 (Add) has side 2, expected 0");
    p.side[0] = 0;
    p.ops[1] = FUSED_EW_CELU;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "step 1 (Celu) has alpha 0");
    p.alpha[1] = INFINITY;
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "step 1 (Celu) has alpha inf");
    p.alpha[1] = 1.0f;

    /* the inputs */
    in[1] = b4;
    expect_error(&p, in, 2, KILN_ERR_SHAPE,
                 "input 1 has shape 4, which does not broadcast to x's 2x3 without growing");
    in[1] = up;
    expect_error(&p, in, 2, KILN_ERR_SHAPE, "input 1 has shape 2x2x3");
    in[0] = col2;
    in[1] = b3; /* [3] would grow x [2,1] to [2,3] */
    expect_error(&p, in, 2, KILN_ERR_SHAPE, "input 1 has shape 3, which does not broadcast");
    in[0] = x;
    in[1] = i64;
    expect_error(&p, in, 2, KILN_ERR_UNSUPPORTED, "input 1 has dtype i64, expected f32");
    in[0] = i64;
    in[1] = b3;
    expect_error(&p, in, 2, KILN_ERR_UNSUPPORTED, "input 0 has dtype i64, expected f32");
    in[0] = x;
    in[1] = tu_absent();
    expect_error(&p, in, 2, KILN_ERR_INVALID_GRAPH, "input 1 is absent");
    in[1] = b3;
    expect_error(&p, in, 3, KILN_ERR_INVALID_GRAPH, "input 2 is read by no step");
    tu_tensor_free(&x);
    tu_tensor_free(&b3);
    tu_tensor_free(&b4);
    tu_tensor_free(&up);
    tu_tensor_free(&col2);
    tu_tensor_free(&i64);
}

/* ---- the pass: what it fuses ---- */

/* Relu(x * s + b) with s and b per channel. */
static kiln_network *scale_shift_relu(void)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_weights(net, "s", DIMS(3, 1, 1), 1, -2, 2);
    tn_weights(net, "b", DIMS(3, 1, 1), 2, -1, 1);
    tn_layer(net, "Mul", "mul", IN("x", "s"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Add", "add", IN("m", "b"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("a"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    return net;
}

static void expect_ints(const ir_node *n, const char *attr, const int64_t *want, int32_t count)
{
    int32_t c;
    const int64_t *v = ir_attr_ints(n, attr, &c);
    assert_int_equal(c, count);
    for (int32_t i = 0; i < count; i++)
        if (v[i] != want[i])
            fail_msg("'%s'[%d] is %lld, expected %lld", attr, i, (long long)v[i],
                     (long long)want[i]);
}

static void test_pass_scale_shift_relu(void **state)
{
    kiln_network *net = scale_shift_relu();
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    tn_expect_layer(e, "mul", "kiln.Elementwise", 3, "mul,add,relu");
    assert_string_equal(kiln_engine_layer_output(e, 0, 0), "y");
    kiln_engine_destroy(e);
    e = tn_build(net, PASS);
    assert_int_equal(kiln_engine_num_layers(e), 3);
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0.0);

    /* the program, on the pass's own graph */
    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_elementwise_chain), 2);
    assert_int_equal(tn_live_count(&g), 1);
    const ir_node *n = tn_node(&g, "mul");
    assert_string_equal(n->op->name, "kiln.Elementwise");
    assert_string_equal(tn_reads(&g, "mul", 0), "x");
    assert_string_equal(tn_reads(&g, "mul", 1), "s");
    assert_string_equal(tn_reads(&g, "mul", 2), "b");
    assert_string_equal(tn_writes(&g, "mul", 0), "y");
    expect_ints(n, "ops", (const int64_t[]){FUSED_EW_MUL, FUSED_EW_ADD, FUSED_EW_RELU}, 3);
    expect_ints(n, "operand", (const int64_t[]){1, 2, -1}, 3);
    expect_ints(n, "side", (const int64_t[]){0, 0, 0}, 3);
    ir_graph_free(&g);

    /* the log names every layer */
    const char *log_text;
    e = tn_build_logged(net, &log_text);
    kiln_engine_destroy(e);
    const char *want = "elementwise-chain: 'mul' (Mul) + 'add' (Add) + 'relu' (Relu) -> "
                       "kiln.Elementwise 'mul' (3 steps, 2 operands)";
    tn_expect_log(log_text, want);
    kiln_network_destroy(net);
}

/* Writes unary layers `ops` (NULL-terminated, "Op" or "Op:attr=value") in a chain from
 * `x`, naming layer i `<prefix><i>` and the last output `y`. */
static void unary_chain(kiln_network *net, const char *prefix, const char *x, const char *y,
                        const char *const *ops)
{
    char prev[64], name[64], out[64];
    snprintf(prev, sizeof prev, "%s", x);
    for (int i = 0; ops[i]; i++) {
        char op[64];
        kiln_attr a[2];
        int32_t na = 0;
        snprintf(op, sizeof op, "%s", ops[i]);
        char *colon = strchr(op, ':');
        if (colon) {
            *colon = 0;
            for (char *kv = strtok(colon + 1, ","); kv; kv = strtok(NULL, ",")) {
                char *eq = strchr(kv, '=');
                *eq = 0;
                a[na++] = strcmp(kv, "approximate") == 0 ? KILN_ATTR_S("approximate", eq + 1)
                                                         : KILN_ATTR_F(kv, strtof(eq + 1, NULL));
            }
        }
        snprintf(name, sizeof name, "%s%d", prefix, i);
        snprintf(out, sizeof out, "%s", ops[i + 1] ? name : y);
        const char *const in[] = {prev};
        const char *const o[] = {out};
        tn_layer(net, op, name, in, 1, o, 1, na ? a : NULL, na);
        snprintf(prev, sizeof prev, "%s", out);
    }
}

/* Every unary op the pass knows, in four chains (Clip with both bounds and with max only). */
static void test_pass_every_unary_op(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 40));
    static const char *const acts[] = {"LeakyRelu:alpha=0.1",
                                       "Sigmoid",
                                       "Tanh",
                                       "Elu:alpha=0.7",
                                       "Celu:alpha=1.3",
                                       "Selu",
                                       "HardSigmoid:alpha=0.3,beta=0.4",
                                       "HardSwish",
                                       "Softplus",
                                       "Softsign",
                                       "Mish",
                                       "ThresholdedRelu:alpha=0.05",
                                       "Gelu",
                                       "Gelu:approximate=tanh",
                                       "Erf",
                                       "Relu",
                                       "Neg",
                                       "Exp",
                                       "Sin",
                                       "Cos",
                                       "Abs",
                                       NULL};
    unary_chain(net, "a", "x", "ya", acts);
    static const char *const math[] = {"Abs", "Sqrt", "Reciprocal", "Log", "Floor", NULL};
    unary_chain(net, "m", "x", "ym", math);
    tn_scalar(net, "lo", -0.5f);
    tn_scalar(net, "hi", 0.75f);
    tn_scalar(net, "k", 2.5f);
    tn_layer(net, "Clip", "clip", IN("x", "lo", "hi"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Mul", "scale", IN("c", "k"), OUT("ck"), NO_ATTRS);
    tn_layer(net, "Ceil", "ceil", IN("ck"), OUT("yc"), NO_ATTRS);
    tn_layer(net, "Clip", "clipmax", IN("x", "", "hi"), OUT("c2"), NO_ATTRS);
    tn_layer(net, "Round", "round", IN("c2"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Sign", "sign", IN("r"), OUT("yr"), NO_ATTRS);
    tn_output(net, "ya");
    tn_output(net, "ym");
    tn_output(net, "yc");
    tn_output(net, "yr");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 4);
    assert_int_equal(tn_count_op(e, "kiln.Elementwise"), 4);
    tn_expect_layer(e, "a0", "kiln.Elementwise", 1,
                    "a0,a1,a2,a3,a4,a5,a6,a7,a8,a9,a10,a11,a12,a13,a14,a15,a16,a17,a18,a19,a20");
    tn_expect_layer(e, "m0", "kiln.Elementwise", 1, "m0,m1,m2,m3,m4");
    tn_expect_layer(e, "clip", "kiln.Elementwise", 2, "clip,scale,ceil");
    tn_expect_layer(e, "clipmax", "kiln.Elementwise", 1, "clipmax,round,sign");
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0.0);
    kiln_network_destroy(net);
}

/* Sub, Div, Pow on both sides, Max, Min, PRelu, Sub from a network input and Sum, with
 * operands per channel, per element of the last dims, scalars and x's shape. */
static void test_pass_binary_both_sides(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 3, 4, 5));
    tn_input(net, "y", DIMS(2, 3, 4, 5));
    tn_weights(net, "c3", DIMS(3, 1, 1), 1, -1, 1);
    tn_weights(net, "c5", DIMS(5), 2, 0.5f, 2);
    tn_weights(net, "c45", DIMS(4, 5), 3, -1, 1);
    tn_weights(net, "c1311", DIMS(1, 3, 1, 1), 4, -1, 1);
    tn_scalar(net, "two", 2.0f);
    tn_scalar(net, "half", 0.5f);
    tn_layer(net, "Sub", "sub", IN("c3", "x"), OUT("t0"), NO_ATTRS);      /* c3 - x */
    tn_layer(net, "Div", "div", IN("t0", "c5"), OUT("t1"), NO_ATTRS);     /* t / c5 */
    tn_layer(net, "Pow", "pow", IN("t1", "two"), OUT("t2"), NO_ATTRS);    /* t ^ 2 */
    tn_layer(net, "Pow", "rpow", IN("half", "t2"), OUT("t3"), NO_ATTRS);  /* 0.5 ^ t */
    tn_layer(net, "Sub", "sub2", IN("t3", "c45"), OUT("t4"), NO_ATTRS);   /* t - c45 */
    tn_layer(net, "Max", "max", IN("t4", "c1311"), OUT("t5"), NO_ATTRS);  /* max(t, c) */
    tn_layer(net, "Min", "min", IN("c45", "t5"), OUT("t6"), NO_ATTRS);    /* min(c, t) */
    tn_layer(net, "PRelu", "prelu", IN("t6", "c3"), OUT("t7"), NO_ATTRS); /* slope c3 */
    tn_layer(net, "Sub", "suby", IN("y", "t7"), OUT("t8"), NO_ATTRS);     /* y - t */
    tn_layer(net, "Div", "rdiv", IN("c1311", "t8"), OUT("t9"), NO_ATTRS); /* c / t */
    tn_layer(net, "Sum", "sum", IN("t9", "y"), OUT("out"), NO_ATTRS);     /* t + y */
    tn_output(net, "out");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 1);
    /* x, c3, c5, two, half, c45, c1311, y: each once */
    tn_expect_layer(e, "sub", "kiln.Elementwise", 8,
                    "sub,div,pow,rpow,sub2,max,min,prelu,suby,rdiv,sum");
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0.0);

    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_elementwise_chain), 10);
    const ir_node *n = tn_node(&g, "sub");
    assert_string_equal(tn_reads(&g, "sub", 0), "x");
    expect_ints(n, "ops",
                (const int64_t[]){FUSED_EW_SUB, FUSED_EW_DIV, FUSED_EW_POW, FUSED_EW_POW,
                                  FUSED_EW_SUB, FUSED_EW_MAX, FUSED_EW_MIN, FUSED_EW_PRELU,
                                  FUSED_EW_SUB, FUSED_EW_DIV, FUSED_EW_ADD},
                11);
    expect_ints(n, "side", (const int64_t[]){1, 0, 0, 1, 0, 0, 1, 0, 1, 1, 0}, 11);
    expect_ints(n, "operand", (const int64_t[]){1, 2, 3, 4, 5, 6, 5, 1, 7, 6, 7}, 11);
    ir_graph_free(&g);
    kiln_network_destroy(net);
}

/* x * Sigmoid(x) and x * x + 1 read x as an operand (input 0); an operand made by a layer
 * outside the chain, written after the chain's first layer. */
static void test_pass_operands_from_anywhere(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 8));
    tn_input(net, "z", DIMS(2, 8));
    tn_scalar(net, "one", 1.0f);
    tn_layer(net, "Sigmoid", "sig", IN("x"), OUT("s"), NO_ATTRS);
    tn_layer(net, "Mul", "silu", IN("x", "s"), OUT("silu"), NO_ATTRS);
    tn_layer(net, "Mul", "sq", IN("x", "x"), OUT("sq"), NO_ATTRS);
    tn_layer(net, "Add", "inc", IN("sq", "one"), OUT("inc"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("z"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Softmax", "soft", IN("z"), OUT("t"), NO_ATTRS); /* after relu */
    tn_layer(net, "Add", "add", IN("r", "t"), OUT("a"), NO_ATTRS);
    tn_layer(net, "Exp", "exp", IN("a"), OUT("e"), NO_ATTRS);
    tn_output(net, "silu");
    tn_output(net, "inc");
    tn_output(net, "e");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 4);
    tn_expect_layer(e, "sig", "kiln.Elementwise", 1, "sig,silu");
    tn_expect_layer(e, "sq", "kiln.Elementwise", 2, "sq,inc");
    tn_expect_layer(e, "relu", "kiln.Elementwise", 2, "relu,add,exp");
    assert_string_equal(kiln_engine_layer_input(e, tn_find_layer(e, "relu"), 1), "t");
    /* the Softmax runs before the fused layer that reads it */
    assert_true(tn_find_layer(e, "soft") < tn_find_layer(e, "relu"));
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0.0);

    ir_graph g;
    tn_prepare(net, &g);
    tn_run_pass(&g, opt_elementwise_chain);
    expect_ints(tn_node(&g, "sig"), "operand", (const int64_t[]){-1, 0}, 2);
    expect_ints(tn_node(&g, "sig"), "side", (const int64_t[]){0, 1}, 2);
    expect_ints(tn_node(&g, "sq"), "operand", (const int64_t[]){0, 1}, 2);
    ir_graph_free(&g);
    kiln_network_destroy(net);
}

/* After activation-fusion and gelu took theirs, the rest of the run is a chain, the Gelu
 * layer the gelu pass made included. */
static void test_pass_after_other_fusions(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "img", DIMS(1, 2, 3, 3));
    tn_weights(net, "w", DIMS(4, 2, 1, 1), 5, -1, 1);
    tn_weights(net, "s", DIMS(4, 1, 1), 6, -1, 1);
    tn_weights(net, "b", DIMS(4, 1, 1), 7, -1, 1);
    tn_layer(net, "Conv", "conv", IN("img", "w"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Relu", "relu", IN("c"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Mul", "mul", IN("r", "s"), OUT("m"), NO_ATTRS);
    tn_layer(net, "Add", "add", IN("m", "b"), OUT("x"), NO_ATTRS);
    /* GELU written out on x, then a scale */
    tn_scalar(net, "sqrt2", 1.4142135f);
    tn_scalar(net, "one", 1.0f);
    tn_scalar(net, "half", 0.5f);
    tn_scalar(net, "k", 3.0f);
    tn_layer(net, "Div", "pre", IN("x", "sqrt2"), OUT("t"), NO_ATTRS);
    tn_layer(net, "Erf", "core", IN("t"), OUT("ef"), NO_ATTRS);
    tn_layer(net, "Add", "plus1", IN("ef", "one"), OUT("pa"), NO_ATTRS);
    tn_layer(net, "Mul", "gm", IN("x", "pa"), OUT("gm"), NO_ATTRS);
    tn_layer(net, "Mul", "gh", IN("gm", "half"), OUT("g"), NO_ATTRS);
    tn_layer(net, "Mul", "scale", IN("g", "k"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 2);
    tn_expect_layer(e, "conv", "kiln.Conv", 2, "conv,relu");
    tn_expect_layer(e, "mul", "kiln.Elementwise", 4, "mul,add,core,pre,plus1,gm,gh,scale");
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0.0);
    kiln_network_destroy(net);
}

/* 20 Adds of distinct per-channel constants: 15 operands fill a layer; 70 unary steps:
 * 64 fill one. */
static void test_pass_limits(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(1, 3, 2));
    char prev[32] = "x", name[32], c[32];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof name, "add%d", i);
        snprintf(c, sizeof c, "c%d", i);
        tn_weights(net, c, DIMS(3, 1), 100 + (uint64_t)i, -1, 1);
        tn_layer(net, "Add", name, IN(prev, c), OUT(name), NO_ATTRS);
        snprintf(prev, sizeof prev, "%s", name);
    }
    for (int i = 0; i < 70; i++) {
        snprintf(name, sizeof name, "u%d", i);
        tn_layer(net, i % 2 ? "Neg" : "Sin", name, IN(prev), OUT(name), NO_ATTRS);
        snprintf(prev, sizeof prev, "%s", name);
    }
    tn_output(net, prev);
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Elementwise"), kiln_engine_num_layers(e));
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "add0"), &li), KILN_OK);
    assert_int_equal(li.n_inputs, 16);
    /* add15 .. add19 and u0 .. u58: 64 steps, 5 operands; then u59 .. u69 */
    assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "add15"), &li), KILN_OK);
    assert_int_equal(li.n_inputs, 6);
    int32_t k = 0, at = tn_find_layer(e, "add15");
    while (kiln_engine_layer_fused_from(e, at, k)) k++;
    assert_int_equal(k, 64);
    tn_expect_layer(e, "u59", "kiln.Elementwise", 1, "u59,u60,u61,u62,u63,u64,u65,u66,u67,u68,u69");
    assert_int_equal(kiln_engine_num_layers(e), 3);
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0.0);
    kiln_network_destroy(net);
}

/* The fused layer writes over its input's buffer when that is the input's last reader
 * (also with x as an operand: each block is read before it is written). */
static void test_pass_in_place(void **state)
{
    for (int silu = 0; silu < 2; silu++) {
        kiln_network *net = tn_net();
        tn_input(net, "x", DIMS(1, 256));
        tn_scalar(net, "k", 2.0f);
        tn_layer(net, "Softmax", "s1", IN("x"), OUT("p"), NO_ATTRS);
        if (silu) {
            tn_layer(net, "Sigmoid", "sig", IN("p"), OUT("q"), NO_ATTRS);
            tn_layer(net, "Mul", "mul", IN("q", "p"), OUT("m"), NO_ATTRS);
        } else {
            tn_layer(net, "Mul", "sig", IN("p", "k"), OUT("q"), NO_ATTRS);
            tn_layer(net, "Exp", "mul", IN("q"), OUT("m"), NO_ATTRS);
        }
        tn_layer(net, "Softmax", "s2", IN("m"), OUT("y"), NO_ATTRS);
        tn_output(net, "y");
        kiln_engine *e = tn_build(net, NULL);
        tn_expect_layer(e, "sig", "kiln.Elementwise", silu ? 1 : 2, "sig,mul");
        assert_int_equal(kiln_engine_arena_bytes(e), 1024);
        kiln_engine_destroy(e);
        tn_same_numbers(net, PASS, 0.0);
        kiln_network_destroy(net);
    }
}

/* ---- the pass: what it leaves alone ---- */

/* Builds `net` (which marks its outputs), expects no kiln.Elementwise and `layers` layers. */
static void expect_untouched(kiln_network *net, int32_t layers)
{
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(tn_count_op(e, "kiln.Elementwise"), 0);
    assert_int_equal(kiln_engine_num_layers(e), layers);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

static void test_pass_leaves_alone(void **state)
{
    /* an intermediate read twice */
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(2, 6));
    tn_layer(net, "Relu", "relu", IN("x"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Exp", "exp", IN("r"), OUT("e"), NO_ATTRS);
    tn_layer(net, "Neg", "neg", IN("r"), OUT("n"), NO_ATTRS);
    tn_output(net, "e");
    tn_output(net, "n");
    expect_untouched(net, 3);

    /* an intermediate that is a network output */
    net = tn_net();
    tn_input(net, "x", DIMS(2, 6));
    tn_layer(net, "Relu", "relu", IN("x"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Exp", "exp", IN("r"), OUT("e"), NO_ATTRS);
    tn_output(net, "r");
    tn_output(net, "e");
    expect_untouched(net, 2);

    /* i64 values */
    net = tn_net();
    tn_input(net, "x", DIMS(2, 6));
    tn_layer(net, "Cast", "toint", IN("x"), OUT("i"), ATTRS(KILN_ATTR_I("to", KILN_DTYPE_I64)));
    tn_layer(net, "Relu", "relu", IN("i"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Neg", "neg", IN("r"), OUT("n"), NO_ATTRS);
    tn_layer(net, "Cast", "tof", IN("n"), OUT("y"), ATTRS(KILN_ATTR_I("to", KILN_DTYPE_F32)));
    tn_output(net, "y");
    expect_untouched(net, 4);

    /* one layer */
    net = tn_net();
    tn_input(net, "x", DIMS(2, 6));
    tn_layer(net, "Relu", "relu", IN("x"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    expect_untouched(net, 1);

    /* Clip with a bound computed at run time, Pow with an i64 exponent, Max of three */
    net = tn_net();
    tn_input(net, "x", DIMS(2, 6));
    tn_input(net, "lo", DIMS(1));
    tn_constant(net, "e2", KILN_DTYPE_I64, 0, NULL, (const int64_t[]){2});
    tn_layer(net, "Relu", "relu", IN("x"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Clip", "clip", IN("r", "lo"), OUT("c"), NO_ATTRS);
    tn_layer(net, "Pow", "pow", IN("c", "e2"), OUT("p"), NO_ATTRS);
    tn_layer(net, "Max", "max", IN("p", "x", "r"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    expect_untouched(net, 4);
}

/* An operand that would broadcast the value up ends the chain; the broadcasting layer
 * starts the next one, with its other input as x. */
static void test_pass_broadcast_up_ends_chain(void **state)
{
    kiln_network *net = tn_net();
    tn_input(net, "x", DIMS(3, 1));
    tn_input(net, "w", DIMS(3, 4));
    tn_layer(net, "Relu", "relu", IN("x"), OUT("r"), NO_ATTRS);
    tn_layer(net, "Sub", "sub", IN("r", "w"), OUT("s"), NO_ATTRS); /* [3,1] - [3,4] */
    tn_layer(net, "Exp", "exp", IN("s"), OUT("y"), NO_ATTRS);
    tn_output(net, "y");
    kiln_engine *e = tn_build(net, NULL);
    assert_int_equal(kiln_engine_num_layers(e), 2);
    assert_int_equal(tn_count_op(e, "Relu"), 1);
    tn_expect_layer(e, "sub", "kiln.Elementwise", 2, "sub,exp");
    kiln_engine_destroy(e);
    tn_same_numbers(net, PASS, 0.0);

    ir_graph g;
    tn_prepare(net, &g);
    assert_int_equal(tn_run_pass(&g, opt_elementwise_chain), 1);
    assert_string_equal(tn_reads(&g, "sub", 0), "w");
    assert_string_equal(tn_reads(&g, "sub", 1), "r");
    expect_ints(tn_node(&g, "sub"), "side", (const int64_t[]){1, 0}, 2);
    ir_graph_free(&g);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    kiln_network *net = scale_shift_relu();
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_op_each_step),
        cmocka_unit_test(test_op_random_programs),
        cmocka_unit_test(test_op_in_place),
        cmocka_unit_test(test_op_errors),
        cmocka_unit_test(test_pass_scale_shift_relu),
        cmocka_unit_test(test_pass_every_unary_op),
        cmocka_unit_test(test_pass_binary_both_sides),
        cmocka_unit_test(test_pass_operands_from_anywhere),
        cmocka_unit_test(test_pass_after_other_fusions),
        cmocka_unit_test(test_pass_limits),
        cmocka_unit_test(test_pass_in_place),
        cmocka_unit_test(test_pass_leaves_alone),
        cmocka_unit_test(test_pass_broadcast_up_ends_chain),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
