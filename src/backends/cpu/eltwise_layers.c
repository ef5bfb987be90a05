/* eltwise_layers.c - the layers the eltwise engine (eltwise/eltwise.h) runs: kiln.Elementwise
 * and the f32 elementwise ops as programs of its steps (a unary or binary op is a program of
 * one step, Sum / Max / Min / Mean of several), Softmax and LogSoftmax along any axis,
 * LayerNormalization with per-position scale and bias, and ReduceSum / ReduceMean over
 * trailing axes; plain tensors, one kernel per ISA path and layer kind ("eltwise_avx512",
 * "softmax_avx2", "layernorm_generic", "reduce_avx512", ...). Work is split among OpenMP
 * threads by rows (and runs of long rows) when it is big enough; every output element is
 * computed the same way whatever the split, so results do not depend on the thread count. */
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/cpu_impl.h"
#include "backends/cpu/eltwise/eltwise.h"
#include "ir/ops/fused_chain.h"

/* Work (elements x step costs) below which one thread is faster than waking others: about
 * 10 us of work, what a parallel region costs to start. */
#define EW_PAR_MIN_WORK ((int64_t)1 << 16)
/* Elements of a row one thread unit covers: long rows split into such runs. */
#define EW_SEG 4096
/* Rows shorter than this are gathered, EW_GATHER elements at a time (chain_range_short). */
#define EW_SHORT  64
#define EW_GATHER 512

static bool is_op(const ir_node *n, const char *op) { return strcmp(n->op->name, op) == 0; }

static bool plain_f32(const ir_tensor *t)
{
    return ir_tensor_present(t) && t->dtype == KILN_DTYPE_F32 && t->layout == IR_LAYOUT_PLAIN;
}

/* Threads for `work`: as many as the context gives, one per EW_PAR_MIN_WORK, at least 1. */
static int32_t threads_for(int32_t threads, int64_t work, int64_t units)
{
    int64_t t = work / EW_PAR_MIN_WORK;
    if (t > threads) t = threads;
    if (t > units) t = units;
    return t < 1 ? 1 : (int32_t)t;
}

/* Runs body(ctx, u0, u1) over units [0, units) split into t contiguous ranges. */
typedef void (*range_fn)(const void *ctx, int64_t u0, int64_t u1);

static void run_ranges(range_fn body, const void *ctx, int64_t units, int32_t t)
{
    if (t <= 1) {
        body(ctx, 0, units);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(t) schedule(static)
#endif
    for (int32_t r = 0; r < t; r++) body(ctx, units * r / t, units * (r + 1) / t);
}

/* ---- programs ---- */

/* A layer as an eltwise program: the steps (kiln.Elementwise's own lists, or lists made
 * here for a plain op) and the inputs they read. */
typedef struct ew_layer {
    ew_prog p;
    int32_t n_in;
    const ir_tensor *in[EW_MAX_IN];
    int64_t ops[EW_MAX_IN], operand[EW_MAX_IN], side[EW_MAX_IN];
    float alpha[EW_MAX_IN], beta[EW_MAX_IN];
    float konst;       /* Mean's count, read through `konst_t` */
    ir_tensor konst_t; /* a scalar */
} ew_layer;

/* The step code of a plain op (Gelu by its `approximate`), -1 if none. */
static int64_t step_code_of(const ir_node *n)
{
    if (is_op(n, "Gelu"))
        return strcmp(ir_attr_string(n, "approximate"), "tanh") == 0 ? FUSED_EW_GELU_TANH
                                                                     : FUSED_EW_GELU;
    for (int64_t c = 0; c < FUSED_EW_COUNT; c++)
        if (strcmp(fused_ew_step(c)->op, n->op->name) == 0) return c;
    return -1;
}

static void add_step(ew_layer *L, int64_t code, int64_t operand, float alpha, float beta)
{
    int32_t s = L->p.n++;
    L->ops[s] = code;
    L->operand[s] = operand;
    L->side[s] = 0;
    L->alpha[s] = alpha;
    L->beta[s] = beta;
}

/* Whether the eltwise kernels run layer n; fills L. With `at_run`, Clip's bounds are read
 * from its inputs (they may be activations, known only then). */
static bool layer_of(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                     int32_t n_out, bool at_run, ew_layer *L)
{
    memset(L, 0, sizeof *L);
    if (n_out != 1 || n_in < 1 || !plain_f32(&out[0])) return false;
    L->p.ops = L->ops;
    L->p.operand = L->operand;
    L->p.side = L->side;
    L->p.alpha = L->alpha;
    L->p.beta = L->beta;
    if (is_op(n, "kiln.Elementwise")) {
        if (n_in > FUSED_EW_MAX_IN) return false;
        int32_t c[5];
        L->p.ops = ir_attr_ints(n, "ops", &c[0]);
        L->p.operand = ir_attr_ints(n, "operand", &c[1]);
        L->p.side = ir_attr_ints(n, "side", &c[2]);
        L->p.alpha = ir_attr_floats(n, "alpha", &c[3]);
        L->p.beta = ir_attr_floats(n, "beta", &c[4]);
        L->p.n = c[0];
        for (int32_t k = 1; k < 5; k++)
            if (c[k] != c[0]) return false;
        for (int32_t s = 0; s < L->p.n; s++)
            if (!fused_ew_step(L->p.ops[s]) || L->p.operand[s] >= n_in) return false;
        for (int32_t k = 0; k < n_in; k++) {
            if (!plain_f32(&in[k])) return false;
            L->in[k] = &in[k];
        }
        L->n_in = n_in;
        return true;
    }
    bool variadic = is_op(n, "Sum") || is_op(n, "Mean") || is_op(n, "Max") || is_op(n, "Min");
    if (variadic) {
        if (n_in > FUSED_EW_MAX_IN) return false;
        int64_t code = is_op(n, "Max")   ? FUSED_EW_MAX
                       : is_op(n, "Min") ? FUSED_EW_MIN
                                         : FUSED_EW_ADD;
        for (int32_t k = 0; k < n_in; k++) {
            if (!plain_f32(&in[k])) return false;
            L->in[k] = &in[k];
            if (k > 0) add_step(L, code, k, 0.0f, 0.0f);
        }
        L->n_in = n_in;
        if (is_op(n, "Mean")) {
            /* the reference's y /= (float)n_in after the sum */
            L->konst = (float)n_in;
            L->konst_t = (ir_tensor){.dtype = KILN_DTYPE_F32, .data = &L->konst};
            L->in[L->n_in] = &L->konst_t;
            add_step(L, FUSED_EW_DIV, L->n_in++, 0.0f, 0.0f);
        }
        return true;
    }
    int64_t code = step_code_of(n);
    if (code < 0 || !plain_f32(&in[0])) return false;
    const fused_ew_info *info = fused_ew_step(code);
    L->in[0] = &in[0];
    L->n_in = 1;
    if (info->binary) {
        if (n_in != 2 || !plain_f32(&in[1])) return false;
        L->in[1] = &in[1];
        L->n_in = 2;
        add_step(L, code, 1, 0.0f, 0.0f);
        return true;
    }
    float alpha = info->alpha ? ir_attr_float(n, info->alpha) : 0.0f;
    float beta = info->beta ? ir_attr_float(n, info->beta) : 0.0f;
    if (code == FUSED_EW_CLIP) {
        /* absent bounds clip nothing: ew_clip(x, -inf, inf) is x, NaN included */
        alpha = -INFINITY;
        beta = INFINITY;
        for (int32_t k = 1; k < n_in && k < 3; k++) {
            if (!ir_tensor_present(&in[k])) continue;
            if (!plain_f32(&in[k]) || ir_tensor_count(&in[k]) != 1) return false;
            if (at_run) *(k == 1 ? &alpha : &beta) = *(const float *)in[k].data;
        }
    } else if (n_in != 1) {
        return false;
    }
    add_step(L, code, -1, alpha, beta);
    return true;
}

/* ---- running a program over the output ---- */

/* The output's dims with size-1 dims dropped and neighbours merged where every input walks
 * them as one (fused_chain.c's walk, with input 0 broadcasting too). The innermost dim's
 * stride is 0 or 1 for every input. */
typedef struct ew_walk {
    int32_t rank, n_in;
    int64_t d[KILN_MAX_RANK];
    int64_t st[EW_MAX_IN][KILN_MAX_RANK];
} ew_walk;

static void walk_init(ew_walk *w, const ew_layer *L, const kiln_dims *out)
{
    int64_t full[EW_MAX_IN][KILN_MAX_RANK];
    memset(w, 0, sizeof *w);
    w->n_in = L->n_in;
    for (int32_t k = 0; k < L->n_in; k++) ir_broadcast_strides(&L->in[k]->shape, out, full[k]);
    for (int32_t i = 0; i < out->rank; i++) {
        int64_t di = out->d[i];
        if (di == 1) continue;
        bool merge = w->rank > 0;
        for (int32_t k = 0; k < L->n_in && merge; k++)
            merge = w->st[k][w->rank - 1] == full[k][i] * di;
        if (merge) {
            w->d[w->rank - 1] *= di;
            for (int32_t k = 0; k < L->n_in; k++) w->st[k][w->rank - 1] = full[k][i];
            continue;
        }
        w->d[w->rank] = di;
        for (int32_t k = 0; k < L->n_in; k++) w->st[k][w->rank] = full[k][i];
        w->rank++;
    }
    if (w->rank == 0) { /* one element */
        w->rank = 1;
        w->d[0] = 1;
    }
}

typedef struct chain_job {
    const ew_isa *isa;
    const ew_layer *L;
    const ew_walk *w;
    float *y;
    int64_t inner, segs; /* a row of `inner` elements is `segs` units */
} chain_job;

/* The offsets of every input at the start of row `row`, and its multi-index. */
static void row_start(const ew_walk *w, int64_t row, int64_t *idx, int64_t *off)
{
    memset(off, 0, sizeof *off * (size_t)w->n_in);
    memset(idx, 0, sizeof *idx * KILN_MAX_RANK);
    for (int32_t d = w->rank - 2; d >= 0; d--) {
        idx[d] = row % w->d[d];
        row /= w->d[d];
        for (int32_t k = 0; k < w->n_in; k++) off[k] += idx[d] * w->st[k][d];
    }
}

/* To the next row. */
static inline void row_next(const ew_walk *w, int64_t *idx, int64_t *off)
{
    for (int32_t d = w->rank - 2; d >= 0; d--) {
        for (int32_t k = 0; k < w->n_in; k++) off[k] += w->st[k][d];
        if (++idx[d] < w->d[d]) break;
        for (int32_t k = 0; k < w->n_in; k++) off[k] -= w->st[k][d] * w->d[d];
        idx[d] = 0;
    }
}

/* Rows u0 .. u1 - 1 shorter than EW_SHORT (an operand broadcast along a middle dim, as
 * YOLO's anchors [1,3,1,1,2] against [1,3,32,32,2]): a program call per row would cost more
 * than its work, so rows go EW_GATHER elements at a time through buffers holding each
 * input's rows side by side, and the program runs once over them. The output's rows are
 * adjacent already. */
static void chain_range_short(const chain_job *J, int64_t u0, int64_t u1)
{
    const ew_walk *w = J->w;
    const int32_t nk = w->n_in;
    const int64_t inner = J->inner, per = EW_GATHER / inner;
    float buf[EW_MAX_IN][EW_GATHER];
    int64_t idx[KILN_MAX_RANK], off[EW_MAX_IN], os[EW_MAX_IN];
    const float *opd[EW_MAX_IN];
    bool one[EW_MAX_IN]; /* an input of one value stays where it is, read as such */
    row_start(w, u0, idx, off);
    for (int32_t k = 0; k < nk; k++) {
        one[k] = true;
        for (int32_t d = 0; d < w->rank; d++) one[k] = one[k] && w->st[k][d] == 0;
        os[k] = one[k] ? 0 : 1;
        opd[k] = one[k] ? J->L->in[k]->data : buf[k];
    }
    for (int64_t row = u0; row < u1;) {
        const int64_t g = u1 - row < per ? u1 - row : per;
        for (int64_t r = 0; r < g; r++) {
            for (int32_t k = 0; k < nk; k++) {
                if (one[k]) continue;
                const float *src = (const float *)J->L->in[k]->data + off[k];
                float *dst = buf[k] + r * inner;
                if (w->st[k][w->rank - 1])
                    for (int64_t i = 0; i < inner; i++) dst[i] = src[i];
                else
                    for (int64_t i = 0; i < inner; i++) dst[i] = src[0];
            }
            row_next(w, idx, off);
        }
        J->isa->chain(&J->L->p, J->y + row * inner, g * inner, opd, os);
        row += g;
    }
}

/* Units u0 .. u1 - 1, unit u being run u % segs of row u / segs. */
static void chain_range(const void *ctx, int64_t u0, int64_t u1)
{
    const chain_job *J = ctx;
    const ew_walk *w = J->w;
    if (u0 >= u1) return;
    if (J->inner < EW_SHORT && u1 - u0 > 1) {
        chain_range_short(J, u0, u1);
        return;
    }
    const int32_t nk = w->n_in;
    int64_t row = u0 / J->segs, seg = u0 % J->segs;
    int64_t idx[KILN_MAX_RANK], off[EW_MAX_IN], os[EW_MAX_IN];
    const float *opd[EW_MAX_IN];
    for (int32_t k = 0; k < nk; k++) os[k] = w->st[k][w->rank - 1];
    row_start(w, row, idx, off);
    for (int64_t u = u0; u < u1;) {
        /* the units of this row the range covers, in one call */
        const int64_t last = (u1 - u) < (J->segs - seg) ? seg + (u1 - u) : J->segs;
        const int64_t j0 = seg * EW_SEG, j1 = last * EW_SEG < J->inner ? last * EW_SEG : J->inner;
        for (int32_t k = 0; k < nk; k++)
            opd[k] = (const float *)J->L->in[k]->data + off[k] + j0 * os[k];
        J->isa->chain(&J->L->p, J->y + row * J->inner + j0, j1 - j0, opd, os);
        u += last - seg;
        if (last < J->segs) break; /* the range ends inside this row */
        seg = 0;
        row++;
        row_next(w, idx, off);
    }
}

/* What a step costs against an add: libm lane by lane, a polynomial, or a few operations. */
static int64_t step_cost(int64_t code)
{
    if (ew_step_is_scalar(code)) return 32;
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
    case FUSED_EW_GELU_TANH: return 8;
    default: return 1;
    }
}

static kiln_status run_eltwise(const ew_isa *isa, const ir_node *n, const ir_tensor *in,
                               int32_t n_in, ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    ew_layer L;
    if (!layer_of(n, in, n_in, out, n_out, true, &L))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the eltwise kernel does not run this layer");
    int64_t count = ir_tensor_count(&out[0]);
    if (count == 0) return KILN_OK;
    ew_walk w;
    walk_init(&w, &L, &out[0].shape);
    chain_job J = {isa, &L, &w, out[0].data, w.d[w.rank - 1], 0};
    J.segs = (J.inner + EW_SEG - 1) / EW_SEG;
    int64_t cost = 1;
    for (int32_t s = 0; s < L.p.n; s++) cost += step_cost(L.p.ops[s]);
    int64_t units = count / J.inner * J.segs;
    run_ranges(chain_range, &J, units, threads_for(x->threads, count * cost, units));
    return KILN_OK;
}

static bool applies_eltwise(const ir_node *n, const ir_tensor *in, int32_t n_in,
                            const ir_tensor *out, int32_t n_out)
{
    ew_layer L;
    return layer_of(n, in, n_in, out, n_out, false, &L);
}

/* ---- Softmax, LogSoftmax ---- */

static bool axis_of(const ir_node *n, const kiln_dims *d, int32_t *axis)
{
    return ir_axis(ir_attr_int(n, "axis"), d->rank, axis);
}

static bool applies_softmax(const ir_node *n, const ir_tensor *in, int32_t n_in,
                            const ir_tensor *out, int32_t n_out)
{
    int32_t axis;
    return n_in == 1 && n_out == 1 && plain_f32(&in[0]) && plain_f32(&out[0]) &&
           axis_of(n, &in[0].shape, &axis);
}

typedef struct softmax_job {
    const ew_isa *isa;
    bool log;
    const float *x;
    float *y;
    int64_t len, inner, chunks; /* inner > 1: a unit is EW_COLS columns of one outer slice */
} softmax_job;

static void softmax_range(const void *ctx, int64_t u0, int64_t u1)
{
    const softmax_job *J = ctx;
    if (J->inner == 1) {
        J->isa->softmax_rows(J->log, J->x + u0 * J->len, J->y + u0 * J->len, u1 - u0, J->len);
        return;
    }
    for (int64_t u = u0; u < u1; u++) {
        int64_t o = u / J->chunks, j0 = (u % J->chunks) * EW_COLS;
        int64_t m = J->inner - j0 < EW_COLS ? J->inner - j0 : EW_COLS;
        int64_t at = o * J->len * J->inner + j0;
        J->isa->softmax_cols(J->log, J->x + at, J->y + at, J->len, J->inner, m);
    }
}

static kiln_status run_softmax(const ew_isa *isa, const ir_node *n, const ir_tensor *in,
                               int32_t n_in, ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    const kiln_dims *d = &in[0].shape;
    int32_t axis;
    if (!axis_of(n, d, &axis))
        return ir_node_error(n, KILN_ERR_INTERNAL, "the softmax kernel does not run this layer");
    int64_t count = kiln_dims_count(d);
    if (count == 0) return KILN_OK;
    softmax_job J = {isa, is_op(n, "LogSoftmax"), in[0].data, out[0].data, d->d[axis], 1, 1};
    for (int32_t i = axis + 1; i < d->rank; i++) J.inner *= d->d[i];
    int64_t outer = count / (J.len * J.inner);
    J.chunks = (J.inner + EW_COLS - 1) / EW_COLS;
    int64_t units = J.inner == 1 ? outer : outer * J.chunks;
    run_ranges(softmax_range, &J, units, threads_for(x->threads, count * 12, units));
    return KILN_OK;
}

/* ---- LayerNormalization ---- */

/* Whether operand t is indexed by the position within the normalized block alone (a Scale
 * of shape X.shape[axis:], or one broadcasting as such): softmax.c's fast case. */
static bool ln_positional(const ir_tensor *t, const kiln_dims *xs, int32_t axis)
{
    int64_t st[KILN_MAX_RANK], want = 1;
    ir_broadcast_strides(&t->shape, xs, st);
    for (int32_t i = xs->rank - 1; i >= 0; i--) {
        bool ok = i >= axis ? st[i] == want || xs->d[i] == 1 : st[i] == 0;
        if (!ok) return false;
        want *= xs->d[i];
    }
    return true;
}

static bool ln_fast(const ir_node *n, const ir_tensor *in, int32_t n_in, const ir_tensor *out,
                    int32_t n_out, int32_t *axis)
{
    if (n_in < 2 || n_out < 1 || n_out > 3 || !plain_f32(&in[0]) || !plain_f32(&in[1]) ||
        !ir_axis(ir_attr_int(n, "axis"), in[0].shape.rank, axis))
        return false;
    for (int32_t k = 0; k < n_out; k++)
        if (!plain_f32(&out[k])) return false;
    if (!ln_positional(&in[1], &in[0].shape, *axis)) return false;
    if (n_in > 2 && ir_tensor_present(&in[2]))
        return plain_f32(&in[2]) && ln_positional(&in[2], &in[0].shape, *axis);
    return true;
}

static bool applies_layernorm(const ir_node *n, const ir_tensor *in, int32_t n_in,
                              const ir_tensor *out, int32_t n_out)
{
    int32_t axis;
    return ln_fast(n, in, n_in, out, n_out, &axis);
}

typedef struct ln_job {
    const ew_isa *isa;
    const float *x, *scale, *bias;
    float *y, *mean, *inv;
    int64_t d;
    float eps;
} ln_job;

static void ln_range(const void *ctx, int64_t u0, int64_t u1)
{
    const ln_job *J = ctx;
    J->isa->layernorm_rows(J->x + u0 * J->d, J->y + u0 * J->d, u1 - u0, J->d, J->scale, J->bias,
                           J->eps, J->mean ? J->mean + u0 : NULL, J->inv ? J->inv + u0 : NULL);
}

static kiln_status run_layernorm(const ew_isa *isa, const ir_node *n, const ir_tensor *in,
                                 int32_t n_in, ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    int32_t axis;
    /* A dynamic shape may leave the fast case (a broadcast Scale): the reference then. */
    if (!ln_fast(n, in, n_in, out, n_out, &axis)) return n->op->eval(n, in, n_in, out, n_out);
    const kiln_dims *xs = &in[0].shape;
    ln_job J = {
        isa, in[0].data, in[1].data, NULL, out[0].data, NULL, NULL, 1, ir_attr_float(n, "epsilon")};
    if (n_in > 2 && ir_tensor_present(&in[2])) J.bias = in[2].data;
    if (n_out > 1) J.mean = out[1].data;
    if (n_out > 2) J.inv = out[2].data;
    int64_t rows = 1;
    for (int32_t i = 0; i < xs->rank; i++) *(i < axis ? &rows : &J.d) *= xs->d[i];
    if (rows == 0) return KILN_OK;
    if (J.d == 0) /* no elements: the reference's statistics (NaN) and nothing else */
        return n->op->eval(n, in, n_in, out, n_out);
    run_ranges(ln_range, &J, rows, threads_for(x->threads, rows * J.d * 4, rows));
    return KILN_OK;
}

/* ---- ReduceSum, ReduceMean over trailing axes ---- */

/* The input as [rows, len] where each output folds one contiguous row: the reduced axes
 * (reduce.c's rules: the `axes` input or attribute, none meaning all unless
 * noop_with_empty_axes) are the last ones, size-1 axes aside. */
static bool reduce_rows(const ir_node *n, const ir_tensor *in, int32_t n_in, int64_t *rows,
                        int64_t *len)
{
    enum { MAX_AXES = 64 };
    const kiln_dims *d = &in[0].shape;
    int64_t axes[MAX_AXES], count = 0;
    int32_t n_attr = 0;
    const int64_t *attr = ir_attr_ints(n, "axes", &n_attr);
    bool has_input = n_in > 1 && ir_tensor_present(&in[1]);
    if (has_input && attr) return false;
    if (has_input && !ir_tensor_ints(&in[1], axes, MAX_AXES, &count)) return false;
    if (!has_input && attr) {
        if (n_attr > MAX_AXES) return false;
        count = n_attr;
        memcpy(axes, attr, sizeof(int64_t) * (size_t)count);
    }
    bool mask[KILN_MAX_RANK];
    bool all = count == 0 && ir_attr_int(n, "noop_with_empty_axes") == 0;
    for (int32_t i = 0; i < d->rank; i++) mask[i] = all;
    for (int64_t i = 0; i < count; i++) {
        int32_t ax;
        if (!ir_axis(axes[i], d->rank, &ax) || mask[ax]) return false;
        mask[ax] = true;
    }
    *rows = *len = 1;
    bool reduced_seen = false;
    for (int32_t i = 0; i < d->rank; i++) {
        if (mask[i]) {
            *len *= d->d[i];
            if (d->d[i] != 1) reduced_seen = true;
        } else {
            *rows *= d->d[i];
            if (d->d[i] != 1 && reduced_seen) return false; /* a kept axis inside */
        }
    }
    return true;
}

static bool applies_reduce(const ir_node *n, const ir_tensor *in, int32_t n_in,
                           const ir_tensor *out, int32_t n_out)
{
    int64_t rows, len;
    return n_out == 1 && plain_f32(&in[0]) && plain_f32(&out[0]) &&
           reduce_rows(n, in, n_in, &rows, &len);
}

typedef struct reduce_job {
    const ew_isa *isa;
    const float *x;
    float *y;
    int64_t len;
    bool mean;
} reduce_job;

static void reduce_range(const void *ctx, int64_t u0, int64_t u1)
{
    const reduce_job *J = ctx;
    J->isa->sum_rows(J->x + u0 * J->len, J->y + u0, u1 - u0, J->len, J->mean);
}

static kiln_status run_reduce(const ew_isa *isa, const ir_node *n, const ir_tensor *in,
                              int32_t n_in, ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    int64_t rows, len;
    if (!reduce_rows(n, in, n_in, &rows, &len)) return n->op->eval(n, in, n_in, out, n_out);
    reduce_job J = {isa, in[0].data, out[0].data, len, is_op(n, "ReduceMean")};
    run_ranges(reduce_range, &J, rows, threads_for(x->threads, rows * len, rows));
    return KILN_OK;
}

/* ---- the table ---- */

#define PATH(suffix, ISA)                                                                          \
    static kiln_status eltwise_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,       \
                                        ir_tensor *out, int32_t n_out, const backend_exec *x)      \
    {                                                                                              \
        return run_eltwise(&ISA, n, in, n_in, out, n_out, x);                                      \
    }                                                                                              \
    static kiln_status softmax_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,       \
                                        ir_tensor *out, int32_t n_out, const backend_exec *x)      \
    {                                                                                              \
        return run_softmax(&ISA, n, in, n_in, out, n_out, x);                                      \
    }                                                                                              \
    static kiln_status layernorm_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,     \
                                          ir_tensor *out, int32_t n_out, const backend_exec *x)    \
    {                                                                                              \
        return run_layernorm(&ISA, n, in, n_in, out, n_out, x);                                    \
    }                                                                                              \
    static kiln_status reduce_##suffix(const ir_node *n, const ir_tensor *in, int32_t n_in,        \
                                       ir_tensor *out, int32_t n_out, const backend_exec *x)       \
    {                                                                                              \
        return run_reduce(&ISA, n, in, n_in, out, n_out, x);                                       \
    }

#if defined(__x86_64__)
PATH(avx512, ew_isa_avx512)
PATH(avx2, ew_isa_avx2)
#endif
PATH(generic, ew_isa_generic)

#define F_AVX512 (KILN_CPU_AVX512F | KILN_CPU_AVX2 | KILN_CPU_FMA)
#define F_AVX2   (KILN_CPU_AVX2 | KILN_CPU_FMA)

#define K(kind, suffix, OP, FEATURES)                                                              \
    {                                                                                              \
        .name = #kind "_" #suffix, .op = OP, .features = FEATURES, .applies = applies_##kind,      \
        .run = kind##_##suffix                                                                     \
    }

/* Every op the eltwise kernel takes: kiln.Elementwise, the ops with a step of their own,
 * the variadic ones. */
#define ELTWISE_OPS(suffix, F)                                                                     \
    K(eltwise, suffix, "kiln.Elementwise", F), K(eltwise, suffix, "Add", F),                       \
        K(eltwise, suffix, "Sub", F), K(eltwise, suffix, "Mul", F), K(eltwise, suffix, "Div", F),  \
        K(eltwise, suffix, "Pow", F), K(eltwise, suffix, "PRelu", F),                              \
        K(eltwise, suffix, "Max", F), K(eltwise, suffix, "Min", F), K(eltwise, suffix, "Sum", F),  \
        K(eltwise, suffix, "Mean", F), K(eltwise, suffix, "Relu", F),                              \
        K(eltwise, suffix, "LeakyRelu", F), K(eltwise, suffix, "Sigmoid", F),                      \
        K(eltwise, suffix, "Tanh", F), K(eltwise, suffix, "Exp", F), K(eltwise, suffix, "Log", F), \
        K(eltwise, suffix, "Sqrt", F), K(eltwise, suffix, "Neg", F), K(eltwise, suffix, "Abs", F), \
        K(eltwise, suffix, "Reciprocal", F), K(eltwise, suffix, "Erf", F),                         \
        K(eltwise, suffix, "Clip", F), K(eltwise, suffix, "HardSigmoid", F),                       \
        K(eltwise, suffix, "HardSwish", F), K(eltwise, suffix, "Elu", F),                          \
        K(eltwise, suffix, "Celu", F), K(eltwise, suffix, "Selu", F),                              \
        K(eltwise, suffix, "Softplus", F), K(eltwise, suffix, "Softsign", F),                      \
        K(eltwise, suffix, "Mish", F), K(eltwise, suffix, "ThresholdedRelu", F),                   \
        K(eltwise, suffix, "Floor", F), K(eltwise, suffix, "Ceil", F),                             \
        K(eltwise, suffix, "Round", F), K(eltwise, suffix, "Sign", F),                             \
        K(eltwise, suffix, "Sin", F), K(eltwise, suffix, "Cos", F), K(eltwise, suffix, "Gelu", F)

#define PATH_KERNELS(suffix, F)                                                                    \
    ELTWISE_OPS(suffix, F), K(softmax, suffix, "Softmax", F), K(softmax, suffix, "LogSoftmax", F), \
        K(layernorm, suffix, "LayerNormalization", F), K(reduce, suffix, "ReduceSum", F),          \
        K(reduce, suffix, "ReduceMean", F)

const backend_kernel cpu_eltwise_kernels[] = {
#if defined(__x86_64__)
    PATH_KERNELS(avx512, F_AVX512),
    PATH_KERNELS(avx2, F_AVX2),
#endif
    PATH_KERNELS(generic, 0),
};
const int32_t cpu_eltwise_kernel_count = sizeof cpu_eltwise_kernels / sizeof *cpu_eltwise_kernels;
