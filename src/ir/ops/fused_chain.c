/* fused_chain.c - kiln.Elementwise: a chain of f32 elementwise steps computed in one pass
 * over the output, with each step's formula that of its standalone op
 * (elementwise_scalar.h), so the layer gives the bits of the unfused chain.
 *
 * Inputs: x (input 0, f32) and the operands of binary steps (f32, each broadcasting to
 * x's shape without growing it: numpy rules, e.g. [C,1,1], a scalar, or x's shape). The
 * output has x's shape. The program is five lists with one entry per step, run in order
 * on v, which starts as x:
 *   ops     (ints)   the step code (fused_chain.h: Add .. PRelu are binary, the rest unary)
 *   operand (ints)   binary: the input it reads (0 is x itself, as x * Sigmoid(x) needs);
 *                    unary: -1
 *   side    (ints)   binary: 0 computes op(v, operand), 1 op(operand, v) (Sub, Div, Pow
 *                    and PRelu are not commutative, and NaN payloads follow the order);
 *                    unary: 0
 *   alpha, beta (floats)  the step's parameters (fused_chain.h says which), else 0
 * E.g. Relu(x * s + b) with s, b of shape [C,1,1]: inputs x, s, b; ops [Mul, Add, Relu];
 * operand [1, 2, -1]; side [0, 0, 0]; alpha and beta [0, 0, 0]. */
#include <string.h>

#include "ir/ops/elementwise_scalar.h"
#include "ir/ops/fused_chain.h"
#include "ir/ops/fused_impl.h"

/* ---- the steps ---- */

static const fused_ew_info k_steps[FUSED_EW_COUNT] = {
    [FUSED_EW_ADD] = {"Add", "Add", true, NULL, NULL},
    [FUSED_EW_SUB] = {"Sub", "Sub", true, NULL, NULL},
    [FUSED_EW_MUL] = {"Mul", "Mul", true, NULL, NULL},
    [FUSED_EW_DIV] = {"Div", "Div", true, NULL, NULL},
    [FUSED_EW_POW] = {"Pow", "Pow", true, NULL, NULL},
    [FUSED_EW_MAX] = {"Max", "Max", true, NULL, NULL},
    [FUSED_EW_MIN] = {"Min", "Min", true, NULL, NULL},
    [FUSED_EW_PRELU] = {"PRelu", "PRelu", true, NULL, NULL},
    [FUSED_EW_RELU] = {"Relu", "Relu", false, NULL, NULL},
    [FUSED_EW_LEAKY_RELU] = {"LeakyRelu", "LeakyRelu", false, "alpha", NULL},
    [FUSED_EW_SIGMOID] = {"Sigmoid", "Sigmoid", false, NULL, NULL},
    [FUSED_EW_TANH] = {"Tanh", "Tanh", false, NULL, NULL},
    [FUSED_EW_EXP] = {"Exp", "Exp", false, NULL, NULL},
    [FUSED_EW_LOG] = {"Log", "Log", false, NULL, NULL},
    [FUSED_EW_SQRT] = {"Sqrt", "Sqrt", false, NULL, NULL},
    [FUSED_EW_NEG] = {"Neg", "Neg", false, NULL, NULL},
    [FUSED_EW_ABS] = {"Abs", "Abs", false, NULL, NULL},
    [FUSED_EW_RECIPROCAL] = {"Reciprocal", "Reciprocal", false, NULL, NULL},
    [FUSED_EW_ERF] = {"Erf", "Erf", false, NULL, NULL},
    [FUSED_EW_CLIP] = {"Clip", "Clip", false, NULL, NULL},
    [FUSED_EW_HARD_SIGMOID] = {"HardSigmoid", "HardSigmoid", false, "alpha", "beta"},
    [FUSED_EW_HARD_SWISH] = {"HardSwish", "HardSwish", false, NULL, NULL},
    [FUSED_EW_ELU] = {"Elu", "Elu", false, "alpha", NULL},
    [FUSED_EW_CELU] = {"Celu", "Celu", false, "alpha", NULL},
    [FUSED_EW_SELU] = {"Selu", "Selu", false, "alpha", "gamma"},
    [FUSED_EW_SOFTPLUS] = {"Softplus", "Softplus", false, NULL, NULL},
    [FUSED_EW_SOFTSIGN] = {"Softsign", "Softsign", false, NULL, NULL},
    [FUSED_EW_MISH] = {"Mish", "Mish", false, NULL, NULL},
    [FUSED_EW_THRESHOLDED_RELU] = {"ThresholdedRelu", "ThresholdedRelu", false, "alpha", NULL},
    [FUSED_EW_FLOOR] = {"Floor", "Floor", false, NULL, NULL},
    [FUSED_EW_CEIL] = {"Ceil", "Ceil", false, NULL, NULL},
    [FUSED_EW_ROUND] = {"Round", "Round", false, NULL, NULL},
    [FUSED_EW_SIGN] = {"Sign", "Sign", false, NULL, NULL},
    [FUSED_EW_SIN] = {"Sin", "Sin", false, NULL, NULL},
    [FUSED_EW_COS] = {"Cos", "Cos", false, NULL, NULL},
    [FUSED_EW_GELU] = {"Gelu", "Gelu", false, NULL, NULL},
    [FUSED_EW_GELU_TANH] = {"GeluTanh", "Gelu", false, NULL, NULL},
};

const fused_ew_info *fused_ew_step(int64_t code)
{
    return code >= 0 && code < FUSED_EW_COUNT ? &k_steps[code] : NULL;
}

/* ---- the program ---- */

typedef struct program {
    int32_t n;
    const int64_t *ops, *operand, *side;
    const float *alpha, *beta;
} program;

/* Reads the five lists; with `check`, validates them against a layer of n_in inputs. */
static kiln_status program_read(const ir_node *n, int32_t n_in, bool check, program *p)
{
    int32_t c[5];
    p->ops = ir_attr_ints(n, "ops", &c[0]);
    p->operand = ir_attr_ints(n, "operand", &c[1]);
    p->side = ir_attr_ints(n, "side", &c[2]);
    p->alpha = ir_attr_floats(n, "alpha", &c[3]);
    p->beta = ir_attr_floats(n, "beta", &c[4]);
    p->n = c[0];
    if (!check) return KILN_OK;
    static const char *const names[5] = {"ops", "operand", "side", "alpha", "beta"};
    if (p->n < 1) return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "'ops' lists no step");
    for (int32_t k = 1; k < 5; k++)
        if (c[k] != p->n)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "'%s' has %d entries, expected %d (one per step of 'ops')",
                                 names[k], c[k], p->n);
    for (int32_t s = 0; s < p->n; s++) {
        const fused_ew_info *st = fused_ew_step(p->ops[s]);
        if (!st)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "step %d has code %lld, expected 0 to %d (fused_chain.h)", s,
                                 (long long)p->ops[s], FUSED_EW_COUNT - 1);
        long long opd = (long long)p->operand[s], side = (long long)p->side[s];
        if (!st->binary && (opd != -1 || side != 0))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "step %d (%s) is unary: expected operand -1 and side 0, got %lld "
                                 "and %lld",
                                 s, st->name, opd, side);
        if (st->binary && (opd < 0 || opd >= n_in))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "step %d (%s) reads input %lld, but the layer has inputs 0 to %d",
                                 s, st->name, opd, n_in - 1);
        if (st->binary && side != 0 && side != 1)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "step %d (%s) has side %lld, expected 0 (the chain's value on the "
                                 "left) or 1 (on the right)",
                                 s, st->name, side);
        float a = p->alpha[s];
        if (p->ops[s] == FUSED_EW_CELU && (a == 0.0f || !isfinite(a)))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                                 "step %d (Celu) has alpha %g, expected a finite nonzero value", s,
                                 (double)a);
    }
    return KILN_OK;
}

/* ---- shape inference ---- */

/* `s` broadcasts to `x` and the result is `x`: no more dims, each equal or 1. */
static bool fits(const kiln_dims *s, const kiln_dims *x)
{
    if (s->rank > x->rank) return false;
    for (int32_t j = 0; j < s->rank; j++) {
        int64_t ds = s->d[j], dx = x->d[j + x->rank - s->rank];
        if (!(ds == 1 || ds == dx || dx == -1 || ds == -1)) return false;
    }
    return true;
}

kiln_status fused_chain_infer(ir_infer *c)
{
    const ir_node *n = c->node;
    program p;
    KILN_TRY(program_read(n, c->n_in, true, &p));
    const ir_tensor *x = &c->in[0];
    char s1[KILN_DIMS_STR_MAX], s2[KILN_DIMS_STR_MAX];
    for (int32_t k = 0; k < c->n_in; k++) {
        const ir_tensor *t = &c->in[k];
        if (!ir_tensor_present(t))
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input %d is absent", k);
        if (t->dtype != KILN_DTYPE_F32)
            return ir_node_error(n, KILN_ERR_UNSUPPORTED, "input %d has dtype %s, expected f32", k,
                                 kiln_dtype_name(t->dtype));
        if (k == 0) continue;
        if (!fits(&t->shape, &x->shape))
            return ir_node_error(n, KILN_ERR_SHAPE,
                                 "input %d has shape %s, which does not broadcast to x's %s "
                                 "without growing it (expected at most its rank, each dim equal "
                                 "to x's or 1)",
                                 k, kiln_dims_str(&t->shape, s1, sizeof s1),
                                 kiln_dims_str(&x->shape, s2, sizeof s2));
        bool read = false;
        for (int32_t s = 0; s < p.n && !read; s++)
            read = k_steps[p.ops[s]].binary && p.operand[s] == k;
        if (!read)
            return ir_node_error(n, KILN_ERR_INVALID_GRAPH, "input %d is read by no step", k);
    }
    c->out[0].dtype = KILN_DTYPE_F32;
    c->out[0].shape = x->shape;
    return KILN_OK;
}

/* ---- reference evaluation ---- */

/* Steps run over a block of the output at a time: each step's switch is taken once per
 * block, and every element still sees all steps in order. */
#define BLOCK 256

/* dst[i] = EXPR(x) with x = src[i]. */
#define UNARY(EXPR)                                                                                \
    for (int64_t i = 0; i < m; i++) {                                                              \
        const float x = src[i];                                                                    \
        dst[i] = (EXPR);                                                                           \
    }                                                                                              \
    break

/* dst[i] = F(src[i], b[i * bs]) (side 0) or F(b[i * bs], src[i]) (side 1); the loops for a
 * scalar (bs 0) and a contiguous operand (bs 1) apart, so that compilers vectorize them. */
#define BINARY(F)                                                                                  \
    if (bs == 0) {                                                                                 \
        const float c = b[0];                                                                      \
        if (right)                                                                                 \
            for (int64_t i = 0; i < m; i++) dst[i] = F(c, src[i]);                                 \
        else                                                                                       \
            for (int64_t i = 0; i < m; i++) dst[i] = F(src[i], c);                                 \
    } else if (bs == 1) {                                                                          \
        if (right)                                                                                 \
            for (int64_t i = 0; i < m; i++) dst[i] = F(b[i], src[i]);                              \
        else                                                                                       \
            for (int64_t i = 0; i < m; i++) dst[i] = F(src[i], b[i]);                              \
    } else if (right) {                                                                            \
        for (int64_t i = 0; i < m; i++) dst[i] = F(b[i * bs], src[i]);                             \
    } else {                                                                                       \
        for (int64_t i = 0; i < m; i++) dst[i] = F(src[i], b[i * bs]);                             \
    }                                                                                              \
    break

void fused_ew_run_step(int64_t op, bool right, float a, float be, const float *src, float *dst,
                       int64_t m, const float *b, int64_t bs)
{
    switch ((fused_ew_op)op) {
    case FUSED_EW_ADD: BINARY(ew_add);
    case FUSED_EW_SUB: BINARY(ew_sub);
    case FUSED_EW_MUL: BINARY(ew_mul);
    case FUSED_EW_DIV: BINARY(ew_div);
    case FUSED_EW_POW: BINARY(ew_pow);
    case FUSED_EW_MAX: BINARY(ew_max);
    case FUSED_EW_MIN: BINARY(ew_min);
    case FUSED_EW_PRELU: BINARY(ew_prelu);
    case FUSED_EW_RELU: UNARY(ew_relu(x));
    case FUSED_EW_LEAKY_RELU: UNARY(ew_leaky_relu(x, a));
    case FUSED_EW_SIGMOID: UNARY(ew_sigmoid(x));
    case FUSED_EW_TANH: UNARY(ew_tanh(x));
    case FUSED_EW_EXP: UNARY(ew_exp(x));
    case FUSED_EW_LOG: UNARY(ew_log(x));
    case FUSED_EW_SQRT: UNARY(ew_sqrt(x));
    case FUSED_EW_NEG: UNARY(ew_neg(x));
    case FUSED_EW_ABS: UNARY(ew_abs(x));
    case FUSED_EW_RECIPROCAL: UNARY(ew_reciprocal(x));
    case FUSED_EW_ERF: UNARY(ew_erf(x));
    case FUSED_EW_CLIP: UNARY(ew_clip(x, a, be));
    case FUSED_EW_HARD_SIGMOID: UNARY(ew_hard_sigmoid(x, a, be));
    case FUSED_EW_HARD_SWISH: UNARY(ew_hard_swish(x));
    case FUSED_EW_ELU: UNARY(ew_elu(x, a));
    case FUSED_EW_CELU: UNARY(ew_celu(x, a));
    case FUSED_EW_SELU: UNARY(ew_selu(x, a, be));
    case FUSED_EW_SOFTPLUS: UNARY(ew_softplus(x));
    case FUSED_EW_SOFTSIGN: UNARY(ew_softsign(x));
    case FUSED_EW_MISH: UNARY(ew_mish(x));
    case FUSED_EW_THRESHOLDED_RELU: UNARY(ew_thresholded_relu(x, a));
    case FUSED_EW_FLOOR: UNARY(ew_floor(x));
    case FUSED_EW_CEIL: UNARY(ew_ceil(x));
    case FUSED_EW_ROUND: UNARY(ew_round(x));
    case FUSED_EW_SIGN: UNARY(ew_sign(x));
    case FUSED_EW_SIN: UNARY(ew_sin(x));
    case FUSED_EW_COS: UNARY(ew_cos(x));
    case FUSED_EW_GELU: UNARY(ew_gelu_erf(x));
    case FUSED_EW_GELU_TANH: UNARY(ew_gelu_tanh(x));
    case FUSED_EW_COUNT: break;
    }
}

/* Runs the program over v[0 .. m-1] in place; opd[k] is input k at this block's first
 * element and os[k] its stride along the block. */
static void run_block(const program *p, float *v, int64_t m, const float *const *opd,
                      const int64_t *os)
{
    for (int32_t s = 0; s < p->n; s++) {
        const int64_t k = p->operand[s] < 0 ? 0 : p->operand[s];
        fused_ew_run_step(p->ops[s], p->side[s] != 0, p->alpha[s], p->beta[s], v, v, m, opd[k],
                          os[k]);
    }
}

/* The output's dims with size-1 dims dropped and neighbours merged where every input
 * walks them as one (x's strides are the output's: it has the output's shape). */
typedef struct walk {
    int32_t rank;
    int64_t d[KILN_MAX_RANK];
    int64_t st[FUSED_EW_MAX_IN][KILN_MAX_RANK];
} walk;

static void walk_init(walk *w, const ir_tensor *in, int32_t n_in)
{
    const kiln_dims *out = &in[0].shape;
    int64_t full[FUSED_EW_MAX_IN][KILN_MAX_RANK];
    memset(w, 0, sizeof *w);
    for (int32_t k = 0; k < n_in; k++) ir_broadcast_strides(&in[k].shape, out, full[k]);
    for (int32_t i = 0; i < out->rank; i++) {
        int64_t di = out->d[i];
        if (di == 1) continue;
        bool merge = w->rank > 0;
        for (int32_t k = 0; k < n_in && merge; k++)
            merge = w->st[k][w->rank - 1] == full[k][i] * di;
        if (merge) {
            w->d[w->rank - 1] *= di;
            for (int32_t k = 0; k < n_in; k++) w->st[k][w->rank - 1] = full[k][i];
            continue;
        }
        w->d[w->rank] = di;
        for (int32_t k = 0; k < n_in; k++) w->st[k][w->rank] = full[k][i];
        w->rank++;
    }
    if (w->rank == 0) { /* one element */
        w->rank = 1;
        w->d[0] = 1;
    }
}

/* Reads x[i] and every operand at i before writing y[i]: y may be x (IR_OP_INPLACE). An
 * operand's stride along the walk's last dim is 0 (broadcast) or 1 (its own last dim). */
kiln_status fused_chain_eval(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    program p;
    KILN_TRY(program_read(n, n_in, false, &p));
    if (n_in > FUSED_EW_MAX_IN)
        return ir_node_error(n, KILN_ERR_INTERNAL, "%d inputs, at most %d", n_in, FUSED_EW_MAX_IN);
    int64_t count = ir_tensor_count(&out[0]);
    if (count == 0) return KILN_OK;
    walk w;
    walk_init(&w, in, n_in);
    int32_t r = w.rank;
    int64_t inner = w.d[r - 1], rows = count / inner;
    int64_t idx[KILN_MAX_RANK] = {0}, off[FUSED_EW_MAX_IN] = {0}, os[FUSED_EW_MAX_IN];
    const float *opd[FUSED_EW_MAX_IN];
    float v[BLOCK];
    float *y = out[0].data;
    const float *x = in[0].data;
    for (int32_t k = 0; k < n_in; k++) os[k] = w.st[k][r - 1];
    for (int64_t row = 0; row < rows; row++) {
        for (int64_t j = 0; j < inner; j += BLOCK) {
            int64_t m = inner - j < BLOCK ? inner - j : BLOCK;
            for (int32_t k = 0; k < n_in; k++)
                opd[k] = (const float *)in[k].data + off[k] + j * os[k];
            memcpy(v, x + off[0] + j, sizeof(float) * (size_t)m);
            run_block(&p, v, m, opd, os);
            memcpy(y + off[0] + j, v, sizeof(float) * (size_t)m);
        }
        for (int32_t d = r - 2; d >= 0; d--) {
            for (int32_t k = 0; k < n_in; k++) off[k] += w.st[k][d];
            if (++idx[d] < w.d[d]) break;
            for (int32_t k = 0; k < n_in; k++) off[k] -= w.st[k][d] * w.d[d];
            idx[d] = 0;
        }
    }
    return KILN_OK;
}
