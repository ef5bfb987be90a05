/* test_ops_nn.c - the nn op group: hand-computed cases (many from ONNX's own examples),
 * seeded random sweeps against naive implementations written differently from kiln's
 * (Conv by im2col + matmul, ConvTranspose by scattering each input pixel, pools by
 * enumerating every window tap), error messages, and attribute fuzzing. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define TOL 1e-5

/* Checks a tensor's data against a literal list of values. */
#define ASSERT_VALUES(got, tol, ...)                                                               \
    do {                                                                                           \
        const float want_[] = {__VA_ARGS__};                                                       \
        tu_assert_close((const float *)(got), want_, (int64_t)(sizeof want_ / sizeof *want_),      \
                        tol);                                                                      \
    } while (0)

static const char *const PAD_MODES[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
enum { NOTSET = 0, SAME_UPPER = 1, SAME_LOWER = 2, VALID = 3 };

/* ---- attribute lists ---- */

typedef struct attrs {
    kiln_attr a[12];
    int n;
    int64_t ints[12][16];
} attrs;

static void at_ints(attrs *A, const char *name, const int64_t *v, int count)
{
    memcpy(A->ints[A->n], v, sizeof(int64_t) * (size_t)count);
    A->a[A->n] = (kiln_attr)KILN_ATTR_IS(name, A->ints[A->n], count);
    A->n++;
}

static void at_int(attrs *A, const char *name, int64_t v)
{
    A->a[A->n++] = (kiln_attr)KILN_ATTR_I(name, v);
}

static void at_float(attrs *A, const char *name, float v)
{
    A->a[A->n++] = (kiln_attr)KILN_ATTR_F(name, v);
}

static void at_str(attrs *A, const char *name, const char *v)
{
    A->a[A->n++] = (kiln_attr)KILN_ATTR_S(name, v);
}

/* ---- running ops ---- */

static void run_ok(const char *op, const attrs *A, const ir_tensor *in, int nin, ir_tensor *out,
                   int nout)
{
    kiln_status st = tu_run_op(op, A ? A->a : NULL, A ? A->n : 0, in, nin, out, nout);
    if (st != KILN_OK) print_error("%s failed: %s\n", op, kiln_last_error());
    assert_int_equal(st, KILN_OK);
}

/* Runs `op` expecting status `want` and a message naming the node and containing
 * `needle`. */
static void expect_err(const char *op, const attrs *A, const ir_tensor *in, int nin, int nout,
                       kiln_status want, const char *needle)
{
    ir_tensor out[3];
    kiln_status st = tu_run_op(op, A ? A->a : NULL, A ? A->n : 0, in, nin, out, nout);
    for (int i = 0; i < nout; i++) tu_tensor_free(&out[i]);
    char head[64];
    snprintf(head, sizeof head, "node 'node' (%s)", op);
    const char *msg = kiln_last_error();
    if (st != want || !strstr(msg, head) || !strstr(msg, needle))
        print_error("%s: want status %d and '%s', got %d: %s\n", op, (int)want, needle, (int)st,
                    st ? msg : "");
    assert_int_equal(st, want);
    assert_non_null(strstr(msg, head));
    assert_non_null(strstr(msg, needle));
}

static void assert_shape(const ir_tensor *t, int rank, const int64_t *d)
{
    assert_int_equal(t->shape.rank, rank);
    for (int i = 0; i < rank; i++) assert_int_equal(t->shape.d[i], d[i]);
}

static ir_tensor rand_tensor(tu_rng *r, int rank, const int64_t *dims)
{
    ir_tensor t = tu_tensor_f32(rank, dims, NULL);
    tu_fill(r, t.data, ir_tensor_count(&t), -1.0f, 1.0f);
    return t;
}

static ir_tensor iota(int rank, const int64_t *dims, float from)
{
    ir_tensor t = tu_tensor_f32(rank, dims, NULL);
    float *p = t.data;
    for (int64_t i = 0; i < ir_tensor_count(&t); i++) p[i] = from + (float)i;
    return t;
}

static int64_t prod(const int64_t *v, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) p *= v[i];
    return p;
}

/* Multi-index of a row-major linear index (and back). */
static void unflatten(int64_t idx, const int64_t *dims, int n, int64_t *out)
{
    for (int d = n - 1; d >= 0; d--) {
        out[d] = idx % dims[d];
        idx /= dims[d];
    }
}

static int64_t flatten(const int64_t *idx, const int64_t *dims, int n)
{
    int64_t f = 0;
    for (int d = 0; d < n; d++) f = f * dims[d] + idx[d];
    return f;
}

/* ---- reference window geometry, from the ONNX formulas in floating point ---- */

typedef struct geo {
    int ns;
    int64_t in[6], k[6], s[6], d[6], pb[6], pe[6], out[6];
} geo;

static void ref_forward(geo *g, int mode, bool ceil_mode)
{
    for (int i = 0; i < g->ns; i++) {
        double dk = (double)((g->k[i] - 1) * g->d[i] + 1), in = (double)g->in[i];
        double s = (double)g->s[i];
        if (mode == SAME_UPPER || mode == SAME_LOWER) {
            g->out[i] = (int64_t)ceil(in / s);
            int64_t total = (int64_t)fmax(0.0, (double)(g->out[i] - 1) * s + dk - in);
            int64_t small = total / 2, big = total - small;
            g->pb[i] = mode == SAME_UPPER ? small : big;
            g->pe[i] = mode == SAME_UPPER ? big : small;
        } else if (mode == VALID) {
            g->pb[i] = g->pe[i] = 0;
            g->out[i] = (int64_t)ceil((in - dk + 1.0) / s);
        } else {
            double x = (in + (double)(g->pb[i] + g->pe[i]) - dk) / s + 1.0;
            g->out[i] = (int64_t)(ceil_mode ? ceil(x) : floor(x));
            if (ceil_mode && (g->out[i] - 1) * g->s[i] >= g->in[i] + g->pb[i]) g->out[i]--;
        }
    }
}

/* A random window whose padded input fits the kernel; for pools also such that no
 * window is empty (pads below the kernel extent, input at least one dilation). */
static void random_window(tu_rng *r, geo *g, int ns, int mode, bool pool)
{
    g->ns = ns;
    int64_t span = ns == 3 ? 4 : ns == 2 ? 8 : 14;
    for (int i = 0; i < ns; i++) {
        g->k[i] = tu_int(r, 1, ns == 3 ? 3 : 4);
        g->s[i] = tu_int(r, 1, 3);
        g->d[i] = tu_int(r, 1, 2);
        int64_t dk = (g->k[i] - 1) * g->d[i] + 1;
        int64_t maxpad = pool ? (dk - 1 < 2 ? dk - 1 : 2) : 2;
        g->pb[i] = g->pe[i] = 0;
        if (mode == NOTSET) {
            g->pb[i] = tu_int(r, 0, maxpad);
            g->pe[i] = tu_int(r, 0, maxpad);
        }
        int64_t lo = dk - g->pb[i] - g->pe[i];
        if (mode == VALID) lo = dk;
        if (pool && lo < g->d[i]) lo = g->d[i];
        if (lo < 1) lo = 1;
        g->in[i] = tu_int(r, lo, lo + span);
    }
}

/* Adds the attributes describing `g` in `mode`, leaving out defaults at random. */
static void window_attrs(tu_rng *r, attrs *A, const geo *g, int mode, bool kernel_always)
{
    int ns = g->ns;
    bool unit_s = true, unit_d = true, zero_p = true;
    for (int i = 0; i < ns; i++) {
        unit_s &= g->s[i] == 1;
        unit_d &= g->d[i] == 1;
        zero_p &= g->pb[i] == 0 && g->pe[i] == 0;
    }
    if (mode != NOTSET || tu_int(r, 0, 1)) at_str(A, "auto_pad", PAD_MODES[mode]);
    if (kernel_always || tu_int(r, 0, 1)) at_ints(A, "kernel_shape", g->k, ns);
    if (!unit_s || tu_int(r, 0, 1)) at_ints(A, "strides", g->s, ns);
    if (!unit_d || tu_int(r, 0, 1)) at_ints(A, "dilations", g->d, ns);
    if (mode == NOTSET && (!zero_p || tu_int(r, 0, 1))) {
        int64_t p[12];
        for (int i = 0; i < ns; i++) {
            p[i] = g->pb[i];
            p[ns + i] = g->pe[i];
        }
        at_ints(A, "pads", p, 2 * ns);
    }
}

/* ---- naive references ---- */

/* Conv as im2col + matrix product, per image and group, accumulated in double. */
static void ref_conv(const float *x, const float *w, const float *b, int64_t nb, int64_t ch,
                     int64_t m, int64_t groups, const geo *g, float *y)
{
    int ns = g->ns;
    int64_t kk = prod(g->k, ns), pp = prod(g->out, ns), ip = prod(g->in, ns);
    int64_t cg = ch / groups, mg = m / groups, rows = cg * kk;
    double *col = malloc(sizeof(double) * (size_t)(rows * pp + 1));
    for (int64_t n = 0; n < nb; n++)
        for (int64_t gr = 0; gr < groups; gr++) {
            for (int64_t row = 0; row < rows; row++) {
                int64_t ci = row / kk, tap[6], o[6], at[6];
                unflatten(row % kk, g->k, ns, tap);
                for (int64_t p = 0; p < pp; p++) {
                    unflatten(p, g->out, ns, o);
                    bool inside = true;
                    for (int d = 0; d < ns; d++) {
                        at[d] = o[d] * g->s[d] + tap[d] * g->d[d] - g->pb[d];
                        inside &= at[d] >= 0 && at[d] < g->in[d];
                    }
                    col[row * pp + p] =
                        inside ? x[(n * ch + gr * cg + ci) * ip + flatten(at, g->in, ns)] : 0.0;
                }
            }
            for (int64_t mi = 0; mi < mg; mi++) {
                int64_t oc = gr * mg + mi;
                for (int64_t p = 0; p < pp; p++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int64_t row = 0; row < rows; row++)
                        acc += (double)w[oc * rows + row] * col[row * pp + p];
                    y[(n * m + oc) * pp + p] = (float)acc;
                }
            }
        }
    free(col);
}

/* ConvTranspose by scattering every input pixel through the kernel. */
static void ref_conv_transpose(const float *x, const float *w, const float *b, int64_t nb,
                               int64_t ch, int64_t m, int64_t groups, const geo *g, float *y)
{
    int ns = g->ns;
    int64_t kk = prod(g->k, ns), pp = prod(g->out, ns), ip = prod(g->in, ns);
    int64_t cg = ch / groups, mg = m / groups;
    double *acc = calloc((size_t)(nb * m * pp + 1), sizeof(double));
    for (int64_t n = 0; n < nb; n++)
        for (int64_t ic = 0; ic < ch; ic++)
            for (int64_t i = 0; i < ip; i++) {
                int64_t pos[6], tap[6], o[6];
                unflatten(i, g->in, ns, pos);
                double xv = x[(n * ch + ic) * ip + i];
                for (int64_t mi = 0; mi < mg; mi++) {
                    int64_t oc = (ic / cg) * mg + mi;
                    for (int64_t t = 0; t < kk; t++) {
                        unflatten(t, g->k, ns, tap);
                        bool inside = true;
                        for (int d = 0; d < ns; d++) {
                            o[d] = pos[d] * g->s[d] + tap[d] * g->d[d] - g->pb[d];
                            inside &= o[d] >= 0 && o[d] < g->out[d];
                        }
                        if (inside)
                            acc[(n * m + oc) * pp + flatten(o, g->out, ns)] +=
                                xv * w[(ic * mg + mi) * kk + t];
                    }
                }
            }
    for (int64_t i = 0; i < nb * m * pp; i++) y[i] = (float)(acc[i] + (b ? b[(i / pp) % m] : 0.0));
    free(acc);
}

/* Pools by visiting every tap of every window. kind 0: max (with indices), 1: average. */
static void ref_pool(const float *x, int64_t planes, const geo *g, int kind, bool include_pad,
                     bool col_major, float *y, int64_t *yi)
{
    int ns = g->ns;
    int64_t pp = prod(g->out, ns), kk = prod(g->k, ns), ip = prod(g->in, ns);
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t p = 0; p < pp; p++) {
            int64_t o[6], tap[6], at[6];
            unflatten(p, g->out, ns, o);
            double sum = 0.0;
            int64_t cnt = 0, cnt_pad = 0, best_at = -1;
            float best = -INFINITY;
            for (int64_t t = 0; t < kk; t++) {
                unflatten(t, g->k, ns, tap);
                bool inside = true, in_pad = true;
                for (int d = 0; d < ns; d++) {
                    at[d] = o[d] * g->s[d] - g->pb[d] + tap[d] * g->d[d];
                    inside &= at[d] >= 0 && at[d] < g->in[d];
                    in_pad &= at[d] >= -g->pb[d] && at[d] < g->in[d] + g->pe[d];
                }
                cnt_pad += in_pad;
                if (!inside) continue;
                float v = x[pl * ip + flatten(at, g->in, ns)];
                sum += v;
                cnt++;
                if (best_at < 0 || v > best) {
                    best = v;
                    if (col_major) {
                        int64_t idx = 0;
                        for (int d = ns - 1; d >= 0; d--) idx = idx * g->in[d] + at[d];
                        best_at = idx;
                    } else {
                        best_at = flatten(at, g->in, ns);
                    }
                }
            }
            if (kind == 0) {
                y[pl * pp + p] = best;
                if (yi) yi[pl * pp + p] = best_at < 0 ? -1 : pl * ip + best_at;
            } else {
                int64_t den = include_pad ? cnt_pad : cnt;
                y[pl * pp + p] = den ? (float)(sum / (double)den) : NAN;
            }
        }
}

/* ---- Conv ---- */

static void conv2d_hand(const int64_t *xd, const attrs *A, const float *want, const int64_t *yd)
{
    ir_tensor in[2] = {iota(4, xd, 0.0f), tu_tensor_f32(TU_DIMS(1, 1, 3, 3), NULL)};
    for (int i = 0; i < 9; i++) ((float *)in[1].data)[i] = 1.0f;
    ir_tensor out;
    run_ok("Conv", A, in, 2, &out, 1);
    assert_shape(&out, 4, yd);
    tu_assert_close(out.data, want, prod(yd, 4), 1e-6);
    tu_tensor_free(&out);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

static void test_conv_hand(void **state)
{
    /* ONNX's conv examples: a 5x5 or 7x5 ramp through a 3x3 box filter */
    attrs A = {0};
    int64_t pads1[] = {1, 1, 1, 1}, s2[] = {2, 2}, asym[] = {1, 0, 1, 0};
    at_ints(&A, "pads", pads1, 4);
    const float padded[] = {12,  21, 27, 33,  24,  33,  54,  63, 72,  51,  63,  99, 108,
                            117, 81, 93, 144, 153, 162, 111, 72, 111, 117, 123, 84};
    conv2d_hand((int64_t[]){1, 1, 5, 5}, &A, padded, (int64_t[]){1, 1, 5, 5});
    const float valid[] = {54, 63, 72, 99, 108, 117, 144, 153, 162};
    conv2d_hand((int64_t[]){1, 1, 5, 5}, NULL, valid, (int64_t[]){1, 1, 3, 3});
    at_ints(&A, "strides", s2, 2);
    const float strided[] = {12, 27, 24, 63, 108, 81, 123, 198, 141, 112, 177, 124};
    conv2d_hand((int64_t[]){1, 1, 7, 5}, &A, strided, (int64_t[]){1, 1, 4, 3});
    attrs B = {0};
    at_ints(&B, "strides", s2, 2);
    at_ints(&B, "pads", asym, 4);
    const float asymmetric[] = {21, 33, 99, 117, 189, 207, 171, 183};
    conv2d_hand((int64_t[]){1, 1, 7, 5}, &B, asymmetric, (int64_t[]){1, 1, 4, 2});

    /* bias, two output channels, groups = 2 */
    ir_tensor in[3] = {iota(TU_DIMS(1, 2, 2, 2), 1.0f),
                       tu_tensor_f32(TU_DIMS(2, 1, 1, 1), (float[]){2, -1}),
                       tu_tensor_f32(TU_DIMS(2), (float[]){10, 20})};
    attrs G = {0};
    at_int(&G, "group", 2);
    ir_tensor out;
    run_ok("Conv", &G, in, 3, &out, 1);
    const float want[] = {12, 14, 16, 18, 15, 14, 13, 12};
    assert_shape(&out, 4, (int64_t[]){1, 2, 2, 2});
    tu_assert_close(out.data, want, 8, 1e-6);
    tu_tensor_free(&out);
    for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
}

/* One random Conv (or ConvTranspose) against the naive reference. */
static void conv_random_case(tu_rng *r, int ns, bool transpose)
{
    int64_t groups, cg, mg;
    if (tu_int(r, 0, 3) == 0) { /* depthwise */
        groups = tu_int(r, 2, 6);
        cg = 1;
        mg = tu_int(r, 1, 2);
    } else {
        groups = tu_int(r, 1, 3);
        cg = tu_int(r, 1, 3);
        mg = tu_int(r, 1, 3);
    }
    int64_t nb = tu_int(r, 1, 2), ch = groups * cg, m = groups * mg;
    int mode = (int)tu_int(r, 0, 5);
    if (mode > 3) mode = NOTSET;
    geo g;
    attrs A = {0};
    if (!transpose) {
        random_window(r, &g, ns, mode, false);
        ref_forward(&g, mode, false);
        window_attrs(r, &A, &g, mode, false);
    } else {
        /* geometry by the ConvTranspose formulas */
        g.ns = ns;
        int64_t opad[6], full[6], oshape[6];
        bool use_oshape = tu_int(r, 0, 3) == 0;
        for (int i = 0; i < ns; i++) {
            g.k[i] = tu_int(r, 1, ns == 3 ? 3 : 4);
            g.s[i] = tu_int(r, 1, 3);
            g.d[i] = tu_int(r, 1, 2);
            g.in[i] = tu_int(r, 1, ns == 3 ? 4 : 7);
            opad[i] = tu_int(r, 0, g.s[i] - 1);
            full[i] = g.s[i] * (g.in[i] - 1) + opad[i] + (g.k[i] - 1) * g.d[i] + 1;
            if (use_oshape) {
                oshape[i] = full[i] - tu_int(r, -1, 2);
                if (oshape[i] < 1) oshape[i] = 1;
            } else if (mode == SAME_UPPER || mode == SAME_LOWER) {
                oshape[i] = g.in[i] * g.s[i];
            }
            if (use_oshape || mode == SAME_UPPER || mode == SAME_LOWER) {
                int64_t total = full[i] - oshape[i] > 0 ? full[i] - oshape[i] : 0;
                g.pb[i] = mode == SAME_UPPER ? total / 2 : total - total / 2;
                g.pe[i] = total - g.pb[i];
                g.out[i] = oshape[i];
            } else if (mode == VALID) {
                g.pb[i] = g.pe[i] = 0;
                g.out[i] = full[i];
            } else {
                g.pb[i] = tu_int(r, 0, 2);
                g.pe[i] = tu_int(r, 0, 2);
                while (full[i] - g.pb[i] - g.pe[i] < 1) {
                    if (g.pb[i] > 0)
                        g.pb[i]--;
                    else
                        g.pe[i]--;
                }
                g.out[i] = full[i] - g.pb[i] - g.pe[i];
            }
        }
        geo shown = g; /* pads are attributes only under NOTSET without output_shape */
        if (use_oshape || mode != NOTSET)
            for (int i = 0; i < ns; i++) shown.pb[i] = shown.pe[i] = 0;
        window_attrs(r, &A, &shown, mode, false);
        bool any_opad = false;
        for (int i = 0; i < ns; i++) any_opad |= opad[i] != 0;
        if (any_opad || tu_int(r, 0, 1)) at_ints(&A, "output_padding", opad, ns);
        if (use_oshape) {
            if (tu_int(r, 0, 1)) {
                int64_t full_shape[8] = {nb, m};
                memcpy(full_shape + 2, oshape, sizeof(int64_t) * (size_t)ns);
                at_ints(&A, "output_shape", full_shape, ns + 2);
            } else {
                at_ints(&A, "output_shape", oshape, ns);
            }
        }
    }
    if (groups > 1 || tu_int(r, 0, 1)) at_int(&A, "group", groups);

    int64_t xd[8] = {nb, ch}, wd[8], yd[8] = {nb, m};
    wd[0] = transpose ? ch : m;
    wd[1] = transpose ? mg : cg;
    for (int i = 0; i < ns; i++) {
        xd[2 + i] = g.in[i];
        wd[2 + i] = g.k[i];
        yd[2 + i] = g.out[i];
    }
    int bias = (int)tu_int(r, 0, 2); /* none, absent third input, present */
    ir_tensor in[3] = {rand_tensor(r, ns + 2, xd), rand_tensor(r, ns + 2, wd),
                       bias == 2 ? rand_tensor(r, 1, &m) : tu_absent()};
    ir_tensor out;
    const char *op = transpose ? "ConvTranspose" : "Conv";
    run_ok(op, &A, in, bias ? 3 : 2, &out, 1);
    assert_shape(&out, ns + 2, yd);
    int64_t count = prod(yd, ns + 2);
    float *want = malloc(sizeof(float) * (size_t)(count + 1));
    const float *b = bias == 2 ? in[2].data : NULL;
    if (transpose)
        ref_conv_transpose(in[0].data, in[1].data, b, nb, ch, m, groups, &g, want);
    else
        ref_conv(in[0].data, in[1].data, b, nb, ch, m, groups, &g, want);
    tu_assert_close(out.data, want, count, TOL);
    free(want);
    tu_tensor_free(&out);
    for (int i = 0; i < 3; i++) tu_tensor_free(&in[i]);
}

static void test_conv_random(void **state)
{
    tu_rng r = {0xC0471};
    for (int it = 0; it < 300; it++) conv_random_case(&r, 1 + it % 3, false);
}

/* A convolution the size of ResNet-50's stem (1x3x224x224 -> 64x112x112, 7x7 stride 2)
 * run on small channel counts: checks the padded, strided row ranges at scale. */
static void test_conv_large(void **state)
{
    tu_rng r = {7};
    int64_t xd[] = {1, 3, 57, 61}, wd[] = {4, 3, 7, 7}, pads[] = {3, 3, 3, 3}, st[] = {2, 2};
    ir_tensor in[2] = {rand_tensor(&r, 4, xd), rand_tensor(&r, 4, wd)};
    attrs A = {0};
    at_ints(&A, "pads", pads, 4);
    at_ints(&A, "strides", st, 2);
    ir_tensor out;
    run_ok("Conv", &A, in, 2, &out, 1);
    geo g = {
        .ns = 2, .in = {57, 61}, .k = {7, 7}, .s = {2, 2}, .d = {1, 1}, .pb = {3, 3}, .pe = {3, 3}};
    ref_forward(&g, NOTSET, false);
    assert_shape(&out, 4, (int64_t[]){1, 4, g.out[0], g.out[1]});
    int64_t count = 4 * g.out[0] * g.out[1];
    float *want = malloc(sizeof(float) * (size_t)count);
    ref_conv(in[0].data, in[1].data, NULL, 1, 3, 4, 1, &g, want);
    tu_assert_close(out.data, want, count, TOL);
    free(want);
    tu_tensor_free(&out);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

static void test_conv_errors(void **state)
{
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 4, 5, 5), NULL);
    ir_tensor w = tu_tensor_f32(TU_DIMS(6, 2, 3, 3), NULL);
    ir_tensor w2d = tu_tensor_f32(TU_DIMS(6, 4), NULL);
    ir_tensor b5 = tu_tensor_f32(TU_DIMS(5), NULL);
    ir_tensor x2d = tu_tensor_f32(TU_DIMS(4, 5), NULL);
    ir_tensor xi = tu_tensor_i64(TU_DIMS(1, 4, 5, 5), NULL);
    ir_tensor big = tu_tensor_f32(TU_DIMS(6, 2, 7, 7), NULL);
    attrs g2 = {0};
    at_int(&g2, "group", 2);

    expect_err("Conv", &g2, (ir_tensor[]){x, w2d}, 2, 1, KILN_ERR_SHAPE, "W must be 4-D, got 2-D");
    expect_err("Conv", NULL, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_SHAPE,
               "2 channels per group x 1 groups, X has 4");
    attrs g3 = {0};
    at_int(&g3, "group", 3);
    expect_err("Conv", &g3, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_SHAPE, "not divisible by group 3");
    attrs g0 = {0};
    at_int(&g0, "group", 0);
    expect_err("Conv", &g0, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_INVALID_GRAPH, "group is 0");
    expect_err("Conv", &g2, (ir_tensor[]){x, w, b5}, 3, 1, KILN_ERR_SHAPE, "B must have shape 6");
    expect_err("Conv", &g2, (ir_tensor[]){x2d, w}, 2, 1, KILN_ERR_SHAPE, "rank 3 or more");
    expect_err("Conv", &g2, (ir_tensor[]){xi, w}, 2, 1, KILN_ERR_UNSUPPORTED, "X has dtype i64");
    expect_err("Conv", &g2, (ir_tensor[]){x, big}, 2, 1, KILN_ERR_SHAPE,
               "kernel spans 7 (size 7, dilation 1), more than the padded input 5");

    struct {
        const char *name;
        int64_t v[6];
        int count;
        const char *needle;
    } bad[] = {
        {"pads", {1, 1, 1}, 3, "pads has 3 values, expected 4"},
        {"pads", {1, -1, 1, 1}, 4, "pads[1] is -1"},
        {"strides", {1, 0}, 2, "strides[1] is 0"},
        {"strides", {-2, 1}, 2, "strides[0] is -2"},
        {"dilations", {0, 1}, 2, "dilations[0] is 0"},
        {"dilations", {1, 1, 1}, 3, "dilations has 3 values, expected 2"},
        {"kernel_shape", {3}, 1, "kernel_shape has 1 values, the input has 2 spatial dims"},
        {"kernel_shape", {3, 2}, 2, "kernel_shape 3x2 does not match the weights' 3x3"},
        {"dilations", {3, 1}, 2, "kernel spans 7 (size 3, dilation 3)"},
        {"strides", {(int64_t)1 << 40, 1}, 2, "strides[0] is 1099511627776"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        attrs A = {0};
        at_int(&A, "group", 2);
        at_ints(&A, bad[i].name, bad[i].v, bad[i].count);
        expect_err("Conv", &A, (ir_tensor[]){x, w}, 2, 1,
                   strstr(bad[i].needle, "kernel spans") ? KILN_ERR_SHAPE
                   : strstr(bad[i].needle, "match")      ? KILN_ERR_SHAPE
                                                         : KILN_ERR_INVALID_GRAPH,
                   bad[i].needle);
    }
    attrs ap = {0};
    at_int(&ap, "group", 2);
    at_str(&ap, "auto_pad", "SAME");
    expect_err("Conv", &ap, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_INVALID_GRAPH,
               "auto_pad 'SAME' is not NOTSET");
    /* VALID ignores pads, so the big kernel no longer fits */
    attrs va = {0};
    int64_t p3[] = {3, 3, 3, 3};
    at_int(&va, "group", 2);
    at_str(&va, "auto_pad", "VALID");
    at_ints(&va, "pads", p3, 4);
    expect_err("Conv", &va, (ir_tensor[]){x, big}, 2, 1, KILN_ERR_SHAPE, "padded input 5");
    for (int i = 0; i < 4; i++) {
        attrs Z = {0};
        ir_tensor xs = tu_tensor_f32(TU_DIMS(1, 4, 0, 5), NULL);
        at_int(&Z, "group", 2);
        at_str(&Z, "auto_pad", PAD_MODES[i]);
        expect_err("Conv", &Z, (ir_tensor[]){xs, w}, 2, 1, KILN_ERR_SHAPE,
                   "spatial dim 0 of the input is 0");
        tu_tensor_free(&xs);
    }
    tu_tensor_free(&x);
    tu_tensor_free(&w);
    tu_tensor_free(&w2d);
    tu_tensor_free(&b5);
    tu_tensor_free(&x2d);
    tu_tensor_free(&xi);
    tu_tensor_free(&big);
}

/* ---- ConvTranspose ---- */

static void test_conv_transpose_hand(void **state)
{
    /* ONNX's convtranspose example: a 3x3 ramp through two 3x3 all-ones filters */
    ir_tensor in[2] = {iota(TU_DIMS(1, 1, 3, 3), 0.0f), tu_tensor_f32(TU_DIMS(1, 2, 3, 3), NULL)};
    for (int i = 0; i < 18; i++) ((float *)in[1].data)[i] = 1.0f;
    const float one[] = {0,  1,  3, 3,  2,  3,  8,  15, 12, 7,  9,  21, 36,
                         27, 15, 9, 20, 33, 24, 13, 6,  13, 21, 15, 8};
    float want[50];
    memcpy(want, one, sizeof one);
    memcpy(want + 25, one, sizeof one);
    ir_tensor out;
    run_ok("ConvTranspose", NULL, in, 2, &out, 1);
    assert_shape(&out, 4, (int64_t[]){1, 2, 5, 5});
    tu_assert_close(out.data, want, 50, 1e-6);
    tu_tensor_free(&out);

    /* output shapes of ONNX's examples: strides 3x2 with output_shape, output_padding,
     * pads, and SAME_UPPER doubling */
    int64_t s32[] = {3, 2}, os[] = {10, 8}, op[] = {1, 1}, pads[] = {1, 2, 1, 2}, s2[] = {2, 2};
    attrs A = {0}, B = {0}, C = {0}, D = {0};
    at_ints(&A, "strides", s32, 2);
    at_ints(&A, "output_shape", os, 2);
    at_ints(&B, "strides", s32, 2);
    at_ints(&B, "output_padding", op, 2);
    at_ints(&C, "strides", s32, 2);
    at_ints(&C, "pads", pads, 4);
    at_ints(&D, "strides", s2, 2);
    at_str(&D, "auto_pad", "SAME_UPPER");
    const attrs *cases[] = {&A, &B, &C, &D};
    const int64_t shapes[][4] = {{1, 2, 10, 8}, {1, 2, 10, 8}, {1, 2, 7, 3}, {1, 2, 6, 6}};
    for (int i = 0; i < 4; i++) {
        run_ok("ConvTranspose", cases[i], in, 2, &out, 1);
        assert_shape(&out, 4, shapes[i]);
        tu_tensor_free(&out);
    }
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);

    /* ONNX's convtranspose_dilations */
    ir_tensor dx[2] = {tu_tensor_f32(TU_DIMS(1, 1, 3, 3), (float[]){3, 8, 1, 9, 5, 7, 3, 2, 6}),
                       tu_tensor_f32(TU_DIMS(1, 1, 2, 2), (float[]){7, 2, 1, 9})};
    int64_t dil[] = {2, 2};
    attrs E = {0};
    at_ints(&E, "dilations", dil, 2);
    run_ok("ConvTranspose", &E, dx, 2, &out, 1);
    const float dwant[] = {21, 56, 13, 16, 2,  63, 35, 67, 10, 14, 24, 22, 76,
                           76, 21, 9,  5,  88, 45, 63, 3,  2,  33, 18, 54};
    assert_shape(&out, 4, (int64_t[]){1, 1, 5, 5});
    tu_assert_close(out.data, dwant, 25, 1e-6);
    tu_tensor_free(&out);
    tu_tensor_free(&dx[0]);
    tu_tensor_free(&dx[1]);

    /* 1-D with bias */
    ir_tensor ox[3] = {tu_tensor_f32(TU_DIMS(1, 1, 3), (float[]){0, 1, 2}),
                       tu_tensor_f32(TU_DIMS(1, 2, 3), (float[]){1, 1, 1, 1, 1, 1}),
                       tu_tensor_f32(TU_DIMS(2), (float[]){0, 100})};
    run_ok("ConvTranspose", NULL, ox, 3, &out, 1);
    const float owant[] = {0, 1, 3, 3, 2, 100, 101, 103, 103, 102};
    assert_shape(&out, 3, (int64_t[]){1, 2, 5});
    tu_assert_close(out.data, owant, 10, 1e-6);
    tu_tensor_free(&out);
    for (int i = 0; i < 3; i++) tu_tensor_free(&ox[i]);
}

static void test_conv_transpose_random(void **state)
{
    tu_rng r = {0x7A45};
    for (int it = 0; it < 300; it++) conv_random_case(&r, 1 + it % 3, true);
}

static void test_conv_transpose_errors(void **state)
{
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 4, 3, 3), NULL);
    ir_tensor w = tu_tensor_f32(TU_DIMS(4, 2, 3, 3), NULL);
    ir_tensor w5 = tu_tensor_f32(TU_DIMS(5, 2, 3, 3), NULL);
    ir_tensor b = tu_tensor_f32(TU_DIMS(3), NULL);
    expect_err("ConvTranspose", NULL, (ir_tensor[]){x, w5}, 2, 1, KILN_ERR_SHAPE,
               "must have X's 4 channels in dim 0");
    expect_err("ConvTranspose", NULL, (ir_tensor[]){x, w, b}, 3, 1, KILN_ERR_SHAPE,
               "B must have shape 2");
    attrs g3 = {0};
    at_int(&g3, "group", 3);
    expect_err("ConvTranspose", &g3, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_SHAPE,
               "not divisible by group 3");
    int64_t pads[] = {3, 3, 3, 3}, op3[] = {1, 1, 1}, os[] = {5}, neg[] = {-1, 0};
    attrs P = {0}, O = {0}, S = {0}, N = {0};
    at_ints(&P, "pads", pads, 4);
    expect_err("ConvTranspose", &P, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_SHAPE,
               "pads 3+3 remove the whole output of 5");
    at_ints(&O, "output_padding", op3, 3);
    expect_err("ConvTranspose", &O, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_INVALID_GRAPH,
               "output_padding has 3 values, expected 2");
    at_ints(&S, "output_shape", os, 1);
    expect_err("ConvTranspose", &S, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_INVALID_GRAPH,
               "output_shape has 1 values");
    at_ints(&N, "output_padding", neg, 2);
    expect_err("ConvTranspose", &N, (ir_tensor[]){x, w}, 2, 1, KILN_ERR_INVALID_GRAPH,
               "output_padding[0] is -1");
    tu_tensor_free(&x);
    tu_tensor_free(&w);
    tu_tensor_free(&w5);
    tu_tensor_free(&b);
}

/* ---- pools ---- */

static void pool_hand(const char *op, const attrs *A, const int64_t *xd, const float *want,
                      const int64_t *yd, const int64_t *want_idx)
{
    ir_tensor x = iota(4, xd, 1.0f), out[2];
    run_ok(op, A, &x, 1, out, want_idx ? 2 : 1);
    assert_shape(&out[0], 4, yd);
    tu_assert_close(out[0].data, want, prod(yd, 4), 1e-6);
    if (want_idx) {
        assert_int_equal(out[1].dtype, KILN_DTYPE_I64);
        for (int64_t i = 0; i < prod(yd, 4); i++)
            assert_int_equal(((int64_t *)out[1].data)[i], want_idx[i]);
        tu_tensor_free(&out[1]);
    }
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
}

static void test_maxpool_hand(void **state)
{
    /* ONNX's maxpool examples on ramps starting at 1 */
    int64_t k5[] = {5, 5}, p2[] = {2, 2, 2, 2}, k2[] = {2, 2}, k3[] = {3, 3}, s2[] = {2, 2};
    int64_t d2[] = {2, 2}, s1[] = {1, 1};
    attrs A = {0};
    at_ints(&A, "kernel_shape", k5, 2);
    at_ints(&A, "pads", p2, 4);
    const float pads_y[] = {13, 14, 15, 15, 15, 18, 19, 20, 20, 20, 23, 24, 25,
                            25, 25, 23, 24, 25, 25, 25, 23, 24, 25, 25, 25};
    const int64_t pads_i[] = {12, 13, 14, 14, 14, 17, 18, 19, 19, 19, 22, 23, 24,
                              24, 24, 22, 23, 24, 24, 24, 22, 23, 24, 24, 24};
    pool_hand("MaxPool", &A, (int64_t[]){1, 1, 5, 5}, pads_y, (int64_t[]){1, 1, 5, 5}, pads_i);
    attrs B = {0};
    at_ints(&B, "kernel_shape", k2, 2);
    at_ints(&B, "strides", s2, 2);
    at_int(&B, "storage_order", 1);
    pool_hand("MaxPool", &B, (int64_t[]){1, 1, 5, 5}, (float[]){7, 9, 17, 19},
              (int64_t[]){1, 1, 2, 2}, (int64_t[]){6, 16, 8, 18});
    attrs C = {0};
    at_ints(&C, "kernel_shape", k3, 2);
    at_ints(&C, "strides", s2, 2);
    at_int(&C, "ceil_mode", 1);
    pool_hand("MaxPool", &C, (int64_t[]){1, 1, 4, 4}, (float[]){11, 12, 15, 16},
              (int64_t[]){1, 1, 2, 2}, NULL);
    attrs D = {0};
    at_ints(&D, "kernel_shape", k2, 2);
    at_ints(&D, "strides", s1, 2);
    at_ints(&D, "dilations", d2, 2);
    pool_hand("MaxPool", &D, (int64_t[]){1, 1, 4, 4}, (float[]){11, 12, 15, 16},
              (int64_t[]){1, 1, 2, 2}, (int64_t[]){10, 11, 14, 15});
    /* indices run over the whole tensor: the second plane starts at 16 */
    attrs E = {0};
    at_ints(&E, "kernel_shape", k2, 2);
    at_ints(&E, "strides", s2, 2);
    pool_hand("MaxPool", &E, (int64_t[]){1, 2, 4, 4}, (float[]){6, 8, 14, 16, 22, 24, 30, 32},
              (int64_t[]){1, 2, 2, 2}, (int64_t[]){5, 7, 13, 15, 21, 23, 29, 31});

    /* an empty window (both taps in padding): -inf and index -1; averaged, NaN
     * without the pads and 0 with them */
    int64_t k2_1[] = {2}, d2_1[] = {2}, p1[] = {1, 1};
    attrs F = {0};
    at_ints(&F, "kernel_shape", k2_1, 1);
    at_ints(&F, "dilations", d2_1, 1);
    at_ints(&F, "pads", p1, 2);
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 1, 1), (float[]){5}), out[2];
    run_ok("MaxPool", &F, &x, 1, out, 2);
    assert_shape(&out[0], 3, (int64_t[]){1, 1, 1});
    assert_true(isinf(((float *)out[0].data)[0]) && ((float *)out[0].data)[0] < 0);
    assert_int_equal(((int64_t *)out[1].data)[0], -1);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&out[1]);
    /* a NaN in the window wins, and its index is reported */
    attrs K3 = {0};
    int64_t k3_1[] = {3};
    at_ints(&K3, "kernel_shape", k3_1, 1);
    ir_tensor xn = tu_tensor_f32(TU_DIMS(1, 1, 3), (float[]){1, NAN, 3});
    run_ok("MaxPool", &K3, &xn, 1, out, 2);
    assert_true(isnan(((float *)out[0].data)[0]));
    assert_int_equal(((int64_t *)out[1].data)[0], 1);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&out[1]);
    tu_tensor_free(&xn);
    /* i8 and u8 (test_maxpool_2d_uint8): the output keeps the dtype; an empty window
     * gives the dtype's lowest value */
    ir_tensor xu = tu_tensor(KILN_DTYPE_U8, TU_DIMS(1, 1, 4), (uint8_t[]){3, 250, 7, 9});
    attrs K2 = {0};
    int64_t k2_only[] = {2};
    at_ints(&K2, "kernel_shape", k2_only, 1);
    run_ok("MaxPool", &K2, &xu, 1, out, 2);
    assert_int_equal(out[0].dtype, KILN_DTYPE_U8);
    assert_memory_equal(out[0].data, ((uint8_t[]){250, 250, 9}), 3);
    assert_memory_equal(out[1].data, ((int64_t[]){1, 1, 3}), 3 * sizeof(int64_t));
    tu_tensor_free(&out[0]);
    tu_tensor_free(&out[1]);
    tu_tensor_free(&xu);
    ir_tensor x8 = tu_tensor(KILN_DTYPE_I8, TU_DIMS(1, 1, 1), (int8_t[]){-5});
    run_ok("MaxPool", &F, &x8, 1, out, 1);
    assert_int_equal(((int8_t *)out[0].data)[0], INT8_MIN);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x8);
    run_ok("AveragePool", &F, &x, 1, out, 1);
    assert_true(isnan(((float *)out[0].data)[0]));
    tu_tensor_free(&out[0]);
    at_int(&F, "count_include_pad", 1);
    run_ok("AveragePool", &F, &x, 1, out, 1);
    assert_true(((float *)out[0].data)[0] == 0.0f);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
}

static void test_avgpool_hand(void **state)
{
    int64_t k5[] = {5, 5}, p2[] = {2, 2, 2, 2}, k3[] = {3, 3}, s2[] = {2, 2}, s3[] = {3, 3};
    int64_t p1[] = {1, 1, 1, 1};
    attrs A = {0};
    at_ints(&A, "kernel_shape", k5, 2);
    at_ints(&A, "pads", p2, 4);
    const float excl[] = {7,    7.5, 8,    8.5, 9,    9.5, 10,   10.5, 11,   11.5, 12,   12.5, 13,
                          13.5, 14,  14.5, 15,  15.5, 16,  16.5, 17,   17.5, 18,   18.5, 19};
    pool_hand("AveragePool", &A, (int64_t[]){1, 1, 5, 5}, excl, (int64_t[]){1, 1, 5, 5}, NULL);
    at_int(&A, "count_include_pad", 1);
    const float incl[] = {2.52f,  3.6f,  4.8f,  4.08f, 3.24f, 4.56f, 6.4f,  8.4f, 7.04f,
                          5.52f,  7.2f,  10.0f, 13.0f, 10.8f, 8.4f,  6.96f, 9.6f, 12.4f,
                          10.24f, 7.92f, 6.12f, 8.4f,  10.8f, 8.88f, 6.84f};
    pool_hand("AveragePool", &A, (int64_t[]){1, 1, 5, 5}, incl, (int64_t[]){1, 1, 5, 5}, NULL);
    attrs B = {0};
    at_ints(&B, "kernel_shape", k3, 2);
    at_ints(&B, "strides", s2, 2);
    at_str(&B, "auto_pad", "SAME_UPPER");
    pool_hand("AveragePool", &B, (int64_t[]){1, 1, 5, 5},
              (float[]){4, 5.5, 7, 11.5, 13, 14.5, 19, 20.5, 22}, (int64_t[]){1, 1, 3, 3}, NULL);
    attrs C = {0};
    at_ints(&C, "kernel_shape", k3, 2);
    at_ints(&C, "strides", s2, 2);
    at_int(&C, "ceil_mode", 1);
    pool_hand("AveragePool", &C, (int64_t[]){1, 1, 4, 4}, (float[]){6, 7.5, 12, 13.5},
              (int64_t[]){1, 1, 2, 2}, NULL);
    /* ONNX's "last window starts on pad": 2x2 input, 3x3 stride 3, pads 1, ceil ->
     * 1x1, not 2x2; the window holds all four inputs */
    attrs D = {0};
    at_ints(&D, "kernel_shape", k3, 2);
    at_ints(&D, "strides", s3, 2);
    at_ints(&D, "pads", p1, 4);
    at_int(&D, "ceil_mode", 1);
    pool_hand("AveragePool", &D, (int64_t[]){1, 3, 2, 2}, (float[]){2.5, 6.5, 10.5},
              (int64_t[]){1, 3, 1, 1}, NULL);
    /* with count_include_pad the divisor stops at the end padding: a ceil_mode
     * window hanging past it counts only its taps up to there */
    int64_t k3_1[] = {3}, s2_1[] = {2}, p10[] = {1, 0};
    attrs E = {0};
    at_ints(&E, "kernel_shape", k3_1, 1);
    at_ints(&E, "strides", s2_1, 1);
    at_ints(&E, "pads", p10, 2);
    at_int(&E, "ceil_mode", 1);
    at_int(&E, "count_include_pad", 1);
    ir_tensor x = iota(TU_DIMS(1, 1, 5), 1.0f), out;
    run_ok("AveragePool", &E, &x, 1, &out, 1);
    /* windows start at -1, 1, 3: taps {-1,0,1}, {1,2,3}, {3,4,5}; 5 is past the end
     * and not counted */
    assert_shape(&out, 3, (int64_t[]){1, 1, 3});
    ASSERT_VALUES(out.data, 1e-6, (0 + 1 + 2) / 3.0f, (2 + 3 + 4) / 3.0f, (4 + 5) / 2.0f);
    tu_tensor_free(&out);
    tu_tensor_free(&x);
}

static void pool_random_case(tu_rng *r, int ns, bool avg)
{
    int mode = (int)tu_int(r, 0, 5);
    if (mode > 3) mode = NOTSET;
    bool ceil_mode = mode == NOTSET && tu_int(r, 0, 1);
    bool include_pad = avg && tu_int(r, 0, 1);
    bool indices = !avg && tu_int(r, 0, 1), col_major = indices && tu_int(r, 0, 1);
    geo g;
    random_window(r, &g, ns, mode, true);
    ref_forward(&g, mode, ceil_mode);
    attrs A = {0};
    window_attrs(r, &A, &g, mode, true);
    if (ceil_mode || tu_int(r, 0, 1)) at_int(&A, "ceil_mode", ceil_mode);
    if (include_pad) at_int(&A, "count_include_pad", 1);
    if (col_major) at_int(&A, "storage_order", 1);
    int64_t nb = tu_int(r, 1, 2), ch = tu_int(r, 1, 3);
    int64_t xd[8] = {nb, ch}, yd[8] = {nb, ch};
    for (int i = 0; i < ns; i++) {
        xd[2 + i] = g.in[i];
        yd[2 + i] = g.out[i];
    }
    ir_tensor x = rand_tensor(r, ns + 2, xd), out[2];
    run_ok(avg ? "AveragePool" : "MaxPool", &A, &x, 1, out, indices ? 2 : 1);
    assert_shape(&out[0], ns + 2, yd);
    int64_t count = prod(yd, ns + 2);
    float *want = malloc(sizeof(float) * (size_t)count);
    int64_t *want_i = malloc(sizeof(int64_t) * (size_t)count);
    ref_pool(x.data, nb * ch, &g, avg, include_pad, col_major, want, want_i);
    tu_assert_close(out[0].data, want, count, TOL);
    if (indices) {
        assert_shape(&out[1], ns + 2, yd);
        assert_memory_equal(out[1].data, want_i, sizeof(int64_t) * (size_t)count);
        tu_tensor_free(&out[1]);
    }
    free(want);
    free(want_i);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&x);
}

static void test_maxpool_random(void **state)
{
    tu_rng r = {0x9001};
    for (int it = 0; it < 300; it++) pool_random_case(&r, 1 + it % 3, false);
}

static void test_avgpool_random(void **state)
{
    tu_rng r = {0xA7E};
    for (int it = 0; it < 300; it++) pool_random_case(&r, 1 + it % 3, true);
}

static void test_pool_errors(void **state)
{
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 2, 4, 4), NULL);
    ir_tensor x2 = tu_tensor_f32(TU_DIMS(2, 4), NULL);
    int64_t k3[] = {3, 3}, k5[] = {5, 5}, k1[] = {3}, p3[] = {1, 1, 1};
    attrs A = {0};
    expect_err("MaxPool", &A, &x, 1, 1, KILN_ERR_INVALID_GRAPH,
               "required attribute 'kernel_shape' is missing");
    at_ints(&A, "kernel_shape", k5, 2);
    expect_err("MaxPool", &A, &x, 1, 1, KILN_ERR_SHAPE, "more than the padded input 4");
    expect_err("AveragePool", &A, &x, 1, 1, KILN_ERR_SHAPE, "more than the padded input 4");
    attrs B = {0};
    at_ints(&B, "kernel_shape", k1, 1);
    expect_err("MaxPool", &B, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "kernel_shape has 1 values");
    attrs C = {0};
    at_ints(&C, "kernel_shape", k3, 2);
    at_ints(&C, "pads", p3, 3);
    expect_err("AveragePool", &C, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "pads has 3 values");
    attrs D = {0};
    at_ints(&D, "kernel_shape", k3, 2);
    at_int(&D, "storage_order", 2);
    expect_err("MaxPool", &D, &x, 1, 2, KILN_ERR_INVALID_GRAPH, "storage_order is 2");
    attrs E = {0};
    at_ints(&E, "kernel_shape", k3, 2);
    at_int(&E, "ceil_mode", -1);
    expect_err("AveragePool", &E, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "ceil_mode is -1");
    attrs F = {0};
    at_ints(&F, "kernel_shape", k3, 2);
    expect_err("MaxPool", &F, &x2, 1, 1, KILN_ERR_SHAPE, "rank 3 or more");
    expect_err("GlobalAveragePool", NULL, &x2, 1, 1, KILN_ERR_SHAPE, "rank 3 or more");
    ir_tensor xe = tu_tensor_f32(TU_DIMS(1, 2, 0), NULL);
    expect_err("GlobalMaxPool", NULL, &xe, 1, 1, KILN_ERR_SHAPE, "spatial dim 0 of X is 0");
    tu_tensor_free(&xe);
    ir_tensor xi = tu_tensor(KILN_DTYPE_I32, TU_DIMS(1, 2, 4), NULL);
    expect_err("MaxPool", &B, &xi, 1, 1, KILN_ERR_UNSUPPORTED, "expected f32, i8 or u8");
    ir_tensor xu = tu_tensor(KILN_DTYPE_U8, TU_DIMS(1, 2, 4), NULL);
    expect_err("AveragePool", &B, &xu, 1, 1, KILN_ERR_UNSUPPORTED, "only f32");
    tu_tensor_free(&xi);
    tu_tensor_free(&xu);
    tu_tensor_free(&x);
    tu_tensor_free(&x2);
}

static void test_global_pools(void **state)
{
    ir_tensor x = iota(TU_DIMS(1, 2, 2, 3), 0.0f), out;
    run_ok("GlobalAveragePool", NULL, &x, 1, &out, 1);
    assert_shape(&out, 4, (int64_t[]){1, 2, 1, 1});
    ASSERT_VALUES(out.data, 1e-6, 2.5f, 8.5f);
    tu_tensor_free(&out);
    run_ok("GlobalMaxPool", NULL, &x, 1, &out, 1);
    ASSERT_VALUES(out.data, 1e-6, 5, 11);
    tu_tensor_free(&out);
    tu_tensor_free(&x);

    tu_rng r = {31};
    for (int it = 0; it < 30; it++) {
        int rank = 3 + it % 3;
        int64_t d[5];
        for (int i = 0; i < rank; i++) d[i] = tu_int(&r, 1, i < 2 ? 3 : 6);
        ir_tensor xr = rand_tensor(&r, rank, d), o[2];
        run_ok("GlobalAveragePool", NULL, &xr, 1, &o[0], 1);
        run_ok("GlobalMaxPool", NULL, &xr, 1, &o[1], 1);
        int64_t planes = d[0] * d[1], size = prod(d + 2, rank - 2);
        float want_avg[9], want_max[9];
        const float *xp = xr.data;
        for (int64_t p = 0; p < planes; p++) {
            double s = 0;
            float m = -INFINITY;
            for (int64_t i = 0; i < size; i++) {
                s += xp[p * size + i];
                m = fmaxf(m, xp[p * size + i]);
            }
            want_avg[p] = (float)(s / (double)size);
            want_max[p] = m;
        }
        tu_assert_close(o[0].data, want_avg, planes, TOL);
        tu_assert_close(o[1].data, want_max, planes, TOL);
        for (int i = 0; i < rank; i++) assert_int_equal(o[0].shape.d[i], i < 2 ? d[i] : 1);
        tu_tensor_free(&o[0]);
        tu_tensor_free(&o[1]);
        tu_tensor_free(&xr);
    }
}

/* ---- normalizations ---- */

static void test_batchnorm(void **state)
{
    /* ONNX's example */
    ir_tensor in[5] = {tu_tensor_f32(TU_DIMS(1, 2, 1, 3), (float[]){-1, 0, 1, 2, 3, 4}),
                       tu_tensor_f32(TU_DIMS(2), (float[]){1.0f, 1.5f}),
                       tu_tensor_f32(TU_DIMS(2), (float[]){0, 1}),
                       tu_tensor_f32(TU_DIMS(2), (float[]){0, 3}),
                       tu_tensor_f32(TU_DIMS(2), (float[]){1, 1.5f})};
    ir_tensor out;
    run_ok("BatchNormalization", NULL, in, 5, &out, 1);
    ASSERT_VALUES(out.data, 1e-6, -0.999995f, 0, 0.999995f, -0.22474074f, 1, 2.2247407f);
    tu_tensor_free(&out);
    attrs T = {0};
    at_int(&T, "training_mode", 1);
    expect_err("BatchNormalization", &T, in, 5, 1, KILN_ERR_UNSUPPORTED, "training_mode=1");
    expect_err("BatchNormalization", NULL, in, 5, 3, KILN_ERR_INVALID_GRAPH, "only Y is produced");
    ir_tensor bad = tu_tensor_f32(TU_DIMS(3), NULL);
    ir_tensor swapped[5] = {in[0], in[1], in[2], bad, in[4]};
    expect_err("BatchNormalization", NULL, swapped, 5, 1, KILN_ERR_SHAPE,
               "input_mean must have shape 2, got 3");
    tu_tensor_free(&bad);
    for (int i = 0; i < 5; i++) tu_tensor_free(&in[i]);

    tu_rng r = {55};
    for (int it = 0; it < 40; it++) {
        int rank = 2 + it % 4;
        int64_t d[6];
        for (int i = 0; i < rank; i++) d[i] = tu_int(&r, 1, i == 1 ? 5 : 4);
        float eps = tu_uniform(&r, 1e-5f, 1e-2f);
        attrs A = {0};
        at_float(&A, "epsilon", eps);
        at_float(&A, "momentum", 0.5f);
        ir_tensor t[5] = {rand_tensor(&r, rank, d), rand_tensor(&r, 1, &d[1]),
                          rand_tensor(&r, 1, &d[1]), rand_tensor(&r, 1, &d[1]),
                          rand_tensor(&r, 1, &d[1])};
        tu_fill(&r, t[4].data, d[1], 0.1f, 2.0f); /* variances */
        run_ok("BatchNormalization", &A, t, 5, &out, 1);
        int64_t count = prod(d, rank), inner = count / (d[0] * d[1]);
        float *want = malloc(sizeof(float) * (size_t)count);
        const float *x = t[0].data, *s = t[1].data, *b = t[2].data, *m = t[3].data, *v = t[4].data;
        for (int64_t i = 0; i < count; i++) {
            int64_t c = (i / inner) % d[1];
            want[i] = (float)(((double)x[i] - m[c]) / sqrt((double)v[c] + eps) * s[c] + b[c]);
        }
        tu_assert_close(out.data, want, count, TOL);
        free(want);
        tu_tensor_free(&out);
        for (int i = 0; i < 5; i++) tu_tensor_free(&t[i]);
    }
}

static void test_lrn(void **state)
{
    /* one pixel, 3 channels, size 3: y_c = x_c / (1 + 1/3 * sum)^0.5 with alpha 1 */
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 3, 1, 1), (float[]){1, 2, 3}), out;
    attrs A = {0};
    at_int(&A, "size", 3);
    at_float(&A, "alpha", 1.0f);
    at_float(&A, "beta", 0.5f);
    run_ok("LRN", &A, &x, 1, &out, 1);
    const float want[] = {1 / sqrtf(1 + 5 / 3.0f), 2 / sqrtf(1 + 14 / 3.0f),
                          3 / sqrtf(1 + 13 / 3.0f)};
    tu_assert_close(out.data, want, 3, 1e-6);
    tu_tensor_free(&out);
    tu_tensor_free(&x);
    attrs Z = {0};
    at_int(&Z, "size", 0);
    ir_tensor x4 = tu_tensor_f32(TU_DIMS(1, 3, 2, 2), NULL);
    expect_err("LRN", &Z, &x4, 1, 1, KILN_ERR_INVALID_GRAPH, "size is 0");
    tu_tensor_free(&x4);

    tu_rng r = {77};
    for (int it = 0; it < 40; it++) {
        int rank = 3 + it % 3;
        int64_t d[5];
        for (int i = 0; i < rank; i++) d[i] = tu_int(&r, 1, i == 1 ? 7 : 4);
        int64_t size = tu_int(&r, 1, 6);
        float alpha = tu_uniform(&r, 1e-4f, 1.0f), beta = tu_uniform(&r, 0.5f, 1.0f);
        float bias = tu_uniform(&r, 0.5f, 2.0f);
        attrs B = {0};
        at_int(&B, "size", size);
        at_float(&B, "alpha", alpha);
        at_float(&B, "beta", beta);
        at_float(&B, "bias", bias);
        ir_tensor xr = rand_tensor(&r, rank, d);
        run_ok("LRN", &B, &xr, 1, &out, 1);
        int64_t count = prod(d, rank), inner = count / (d[0] * d[1]);
        float *w = malloc(sizeof(float) * (size_t)count);
        const float *xp = xr.data;
        for (int64_t i = 0; i < count; i++) {
            int64_t c = (i / inner) % d[1], base = i - c * inner;
            double sq = 0;
            for (int64_t k = c - (size - 1) / 2; k <= c + size / 2; k++)
                if (k >= 0 && k < d[1]) sq += (double)xp[base + k * inner] * xp[base + k * inner];
            w[i] = (float)(xp[i] / pow(bias + alpha / (double)size * sq, beta));
        }
        tu_assert_close(out.data, w, count, TOL);
        free(w);
        tu_tensor_free(&out);
        tu_tensor_free(&xr);
    }
}

/* Normalizes each run of `len` values of x (stride 1) in double. */
static void ref_normalize(const float *x, int64_t len, double eps, double *mean, double *inv)
{
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < len; i++) s += x[i];
    *mean = s / (double)len;
    for (int64_t i = 0; i < len; i++) s2 += (x[i] - *mean) * (x[i] - *mean);
    *inv = 1.0 / sqrt(s2 / (double)len + eps);
}

static void test_instance_group_norm(void **state)
{
    tu_rng r = {88};
    ir_tensor out;
    for (int it = 0; it < 60; it++) {
        bool group = it % 2;
        int rank = (group ? 2 : 3) + it % 3;
        int64_t groups = tu_int(&r, 1, 3), cg = tu_int(&r, 1, 3);
        int64_t d[5] = {tu_int(&r, 1, 2), group ? groups * cg : tu_int(&r, 1, 4)};
        for (int i = 2; i < rank; i++) d[i] = tu_int(&r, 1, 5);
        bool per_group = group && tu_int(&r, 0, 1); /* opset 18's scale per group */
        int64_t plen = per_group ? groups : d[1];
        float eps = tu_uniform(&r, 1e-5f, 1e-2f);
        attrs A = {0};
        at_float(&A, "epsilon", eps);
        if (group) at_int(&A, "num_groups", groups);
        ir_tensor t[3] = {rand_tensor(&r, rank, d), rand_tensor(&r, 1, &plen),
                          rand_tensor(&r, 1, &plen)};
        run_ok(group ? "GroupNormalization" : "InstanceNormalization", &A, t, 3, &out, 1);
        int64_t count = prod(d, rank), inner = prod(d + 2, rank - 2);
        int64_t run = group ? cg * inner : inner;
        float *w = malloc(sizeof(float) * (size_t)count);
        const float *x = t[0].data, *s = t[1].data, *b = t[2].data;
        for (int64_t start = 0; start < count; start += run) {
            double mean, inv;
            ref_normalize(x + start, run, eps, &mean, &inv);
            for (int64_t i = start; i < start + run; i++) {
                int64_t c = (i / inner) % d[1], k = per_group ? c / cg : c;
                w[i] = (float)((x[i] - mean) * inv * s[k] + b[k]);
            }
        }
        tu_assert_close(out.data, w, count, TOL);
        free(w);
        tu_tensor_free(&out);
        for (int i = 0; i < 3; i++) tu_tensor_free(&t[i]);
    }
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 6, 4), NULL), s4 = tu_tensor_f32(TU_DIMS(4), NULL);
    ir_tensor s6 = tu_tensor_f32(TU_DIMS(6), NULL);
    attrs G = {0};
    at_int(&G, "num_groups", 4);
    expect_err("GroupNormalization", &G, (ir_tensor[]){x, s6, s6}, 3, 1, KILN_ERR_SHAPE,
               "6 channels are not divisible by num_groups 4");
    attrs H = {0};
    at_int(&H, "num_groups", 3);
    expect_err("GroupNormalization", &H, (ir_tensor[]){x, s4, s4}, 3, 1, KILN_ERR_SHAPE,
               "scale must have shape 6, got 4");
    expect_err("InstanceNormalization", NULL, (ir_tensor[]){x, s6, s4}, 3, 1, KILN_ERR_SHAPE,
               "B must have shape 6, got 4");
    tu_tensor_free(&x);
    tu_tensor_free(&s4);
    tu_tensor_free(&s6);
}

static void test_lp_norm(void **state)
{
    ir_tensor x = tu_tensor_f32(TU_DIMS(2, 2), (float[]){3, 4, 0, 0}), out;
    run_ok("LpNormalization", NULL, &x, 1, &out, 1);
    ASSERT_VALUES(out.data, 1e-6, 0.6f, 0.8f, 0, 0);
    tu_tensor_free(&out);
    attrs A = {0};
    at_int(&A, "p", 1);
    at_int(&A, "axis", 0);
    run_ok("LpNormalization", &A, &x, 1, &out, 1);
    ASSERT_VALUES(out.data, 1e-6, 1, 1, 0, 0);
    tu_tensor_free(&out);
    attrs P = {0};
    at_int(&P, "p", 3);
    expect_err("LpNormalization", &P, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "p is 3");
    attrs X = {0};
    at_int(&X, "axis", 2);
    expect_err("LpNormalization", &X, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "axis 2 is out of range");
    tu_tensor_free(&x);

    tu_rng r = {99};
    for (int it = 0; it < 30; it++) {
        int rank = 1 + it % 4;
        int64_t d[4];
        for (int i = 0; i < rank; i++) d[i] = tu_int(&r, 1, 5);
        int64_t axis = tu_int(&r, -rank, rank - 1), p = tu_int(&r, 1, 2);
        int ax = (int)(axis < 0 ? axis + rank : axis);
        attrs B = {0};
        at_int(&B, "axis", axis);
        at_int(&B, "p", p);
        ir_tensor xr = rand_tensor(&r, rank, d);
        run_ok("LpNormalization", &B, &xr, 1, &out, 1);
        int64_t count = prod(d, rank), idx[4], at[4];
        float *w = malloc(sizeof(float) * (size_t)count);
        const float *xp = xr.data;
        for (int64_t i = 0; i < count; i++) {
            unflatten(i, d, rank, idx);
            memcpy(at, idx, sizeof at);
            double norm = 0;
            for (at[ax] = 0; at[ax] < d[ax]; at[ax]++) {
                double v = xp[flatten(at, d, rank)];
                norm += p == 1 ? fabs(v) : v * v;
            }
            w[i] = (float)(xp[i] / (p == 1 ? norm : sqrt(norm)));
        }
        tu_assert_close(out.data, w, count, TOL);
        free(w);
        tu_tensor_free(&out);
        tu_tensor_free(&xr);
    }
}

/* ---- DepthToSpace, SpaceToDepth ---- */

/* The ONNX definitions as reshape + transpose, spelled out: DCR views x as
 * N x b x b x C' x H x W and orders it (0, 3, 4, 1, 5, 2); CRD views it as
 * N x C' x b x b x H x W and orders it (0, 1, 4, 2, 5, 3). */
static void ref_depth_to_space(const float *x, const int64_t *d, int64_t b, bool crd, float *y)
{
    int64_t cp = d[1] / (b * b);
    int64_t v[6] = {d[0], crd ? cp : b, crd ? b : b, crd ? b : cp, d[2], d[3]};
    static const int dcr[6] = {0, 3, 4, 1, 5, 2}, crdp[6] = {0, 1, 4, 2, 5, 3};
    const int *perm = crd ? crdp : dcr;
    int64_t od[6], oi[6], si[6];
    for (int i = 0; i < 6; i++) od[i] = v[perm[i]];
    for (int64_t i = 0; i < prod(od, 6); i++) {
        unflatten(i, od, 6, oi);
        for (int k = 0; k < 6; k++) si[perm[k]] = oi[k];
        y[i] = x[flatten(si, v, 6)];
    }
}

static void test_depth_space(void **state)
{
    /* ONNX's examples: channel k holds 9k + 3h + w */
    ir_tensor x = tu_tensor_f32(TU_DIMS(1, 8, 2, 3), NULL), out;
    for (int k = 0; k < 8; k++)
        for (int i = 0; i < 6; i++)
            ((float *)x.data)[k * 6 + i] = (float)(9 * k + 3 * (i / 3) + i % 3);
    attrs A = {0};
    at_int(&A, "blocksize", 2);
    run_ok("DepthToSpace", &A, &x, 1, &out, 1);
    const float dcr[] = {0,  18, 1,  19, 2,  20, 36, 54, 37, 55, 38, 56, 3,  21, 4,  22,
                         5,  23, 39, 57, 40, 58, 41, 59, 9,  27, 10, 28, 11, 29, 45, 63,
                         46, 64, 47, 65, 12, 30, 13, 31, 14, 32, 48, 66, 49, 67, 50, 68};
    assert_shape(&out, 4, (int64_t[]){1, 2, 4, 6});
    tu_assert_close(out.data, dcr, 48, 0);
    tu_tensor_free(&out);
    at_str(&A, "mode", "CRD");
    run_ok("DepthToSpace", &A, &x, 1, &out, 1);
    const float crd[] = {0,  9,  1,  10, 2,  11, 18, 27, 19, 28, 20, 29, 3,  12, 4,  13,
                         5,  14, 21, 30, 22, 31, 23, 32, 36, 45, 37, 46, 38, 47, 54, 63,
                         55, 64, 56, 65, 39, 48, 40, 49, 41, 50, 57, 66, 58, 67, 59, 68};
    tu_assert_close(out.data, crd, 48, 0);
    tu_tensor_free(&out);
    attrs M = {0};
    at_int(&M, "blocksize", 2);
    at_str(&M, "mode", "XYZ");
    expect_err("DepthToSpace", &M, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "mode 'XYZ'");
    attrs B3 = {0};
    at_int(&B3, "blocksize", 3);
    expect_err("DepthToSpace", &B3, &x, 1, 1, KILN_ERR_SHAPE,
               "8 channels are not divisible by blocksize^2 = 9");
    expect_err("SpaceToDepth", &B3, &x, 1, 1, KILN_ERR_SHAPE,
               "dim 2 (2) is not divisible by blocksize 3");
    attrs B0 = {0};
    at_int(&B0, "blocksize", 0);
    expect_err("SpaceToDepth", &B0, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "blocksize is 0");
    attrs BM = {0};
    at_int(&BM, "blocksize", 2);
    at_str(&BM, "mode", "RCD");
    expect_err("SpaceToDepth", &BM, &x, 1, 1, KILN_ERR_INVALID_GRAPH, "mode 'RCD'");
    tu_tensor_free(&x);

    /* random: DepthToSpace against the transpose, and SpaceToDepth (with the same mode,
     * opset 28's CRD included) undoing it */
    tu_rng r = {1234};
    for (int it = 0; it < 30; it++) {
        int64_t b = tu_int(&r, 1, 3);
        int64_t d[4] = {tu_int(&r, 1, 2), b * b * tu_int(&r, 1, 3), tu_int(&r, 1, 4),
                        tu_int(&r, 1, 4)};
        bool crd_mode = it % 2;
        attrs D = {0};
        at_int(&D, "blocksize", b);
        if (crd_mode || tu_int(&r, 0, 1)) at_str(&D, "mode", crd_mode ? "CRD" : "DCR");
        ir_tensor xr = rand_tensor(&r, 4, d), back;
        run_ok("DepthToSpace", &D, &xr, 1, &out, 1);
        int64_t count = prod(d, 4);
        float *w = malloc(sizeof(float) * (size_t)count);
        ref_depth_to_space(xr.data, d, b, crd_mode, w);
        tu_assert_close(out.data, w, count, 0);
        attrs S = {0};
        at_int(&S, "blocksize", b);
        if (crd_mode) at_str(&S, "mode", "CRD");
        run_ok("SpaceToDepth", &S, &out, 1, &back, 1);
        assert_shape(&back, 4, d);
        tu_assert_close(back.data, xr.data, count, 0);
        tu_tensor_free(&back);
        free(w);
        tu_tensor_free(&out);
        tu_tensor_free(&xr);
    }

    /* any dtype moves: i64 through a round trip */
    ir_tensor xi = tu_tensor_i64(TU_DIMS(1, 1, 2, 2), (int64_t[]){1, 2, 3, (int64_t)1 << 40});
    attrs S2 = {0};
    at_int(&S2, "blocksize", 2);
    run_ok("SpaceToDepth", &S2, &xi, 1, &out, 1);
    assert_int_equal(out.dtype, KILN_DTYPE_I64);
    assert_shape(&out, 4, (int64_t[]){1, 4, 1, 1});
    assert_memory_equal(out.data, xi.data, 4 * sizeof(int64_t));
    tu_tensor_free(&out);
    tu_tensor_free(&xi);
}

/* ---- robustness ---- */

/* Random, mostly invalid window attributes: every run must end in a clean status
 * (ASan checks that nothing reads or writes out of bounds when it succeeds). */
static void test_window_attr_fuzz(void **state)
{
    static const char *const ops[] = {"Conv", "ConvTranspose", "MaxPool", "AveragePool"};
    static const char *const pads_modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID",
                                             "BOGUS"};
    tu_rng r = {4242};
    int ok = 0;
    for (int it = 0; it < 2000; it++) {
        const char *op = ops[it % 4];
        bool conv = it % 4 < 2, pool = !conv;
        int ns = (int)tu_int(&r, 1, 3);
        int64_t xd[8] = {tu_int(&r, 1, 2), 2}, wd[8] = {2, it % 4 == 0 ? tu_int(&r, 1, 2) : 1};
        for (int i = 0; i < ns; i++) {
            xd[2 + i] = tu_int(&r, 1, 5);
            wd[2 + i] = tu_int(&r, 1, 3);
        }
        attrs A = {0};
        const char *lists[] = {"kernel_shape", "strides",        "dilations",
                               "pads",         "output_padding", "output_shape"};
        int nlists = it % 4 == 1 ? 6 : 4;
        for (int l = 0; l < nlists; l++) {
            if (tu_int(&r, 0, 1)) continue;
            int want = l == 3 ? 2 * ns : ns, count = (int)tu_int(&r, want - 1, want + 1);
            if (tu_int(&r, 0, 5)) count = want;
            int64_t v[16]; /* mostly plausible values, now and then a bad one */
            for (int i = 0; i < count; i++)
                v[i] = tu_int(&r, 0, 15) == 0
                           ? tu_int(&r, -1, 0)
                           : tu_int(&r, l == 3 || l == 4 ? 0 : 1, l == 5 ? 9 : 3);
            at_ints(&A, lists[l], v, count);
        }
        if (tu_int(&r, 0, 1)) at_str(&A, "auto_pad", pads_modes[tu_int(&r, 0, 9) / 2]);
        if (conv && tu_int(&r, 0, 1)) at_int(&A, "group", tu_int(&r, -1, 3));
        if (pool && tu_int(&r, 0, 1)) at_int(&A, "ceil_mode", tu_int(&r, -1, 2));
        if (it % 4 == 2 && tu_int(&r, 0, 1)) at_int(&A, "storage_order", tu_int(&r, 0, 2));
        if (it % 4 == 3 && tu_int(&r, 0, 1)) at_int(&A, "count_include_pad", tu_int(&r, 0, 1));
        ir_tensor in[2] = {rand_tensor(&r, ns + 2, xd), rand_tensor(&r, ns + 2, wd)}, out[2];
        int nout = it % 4 == 2 ? 2 : 1;
        kiln_status st = tu_run_op(op, A.a, A.n, in, conv ? 2 : 1, out, nout);
        if (st == KILN_OK) {
            ok++;
        } else {
            assert_true(st == KILN_ERR_SHAPE || st == KILN_ERR_INVALID_GRAPH ||
                        st == KILN_ERR_UNSUPPORTED);
            assert_non_null(strstr(kiln_last_error(), "node 'node'"));
        }
        for (int i = 0; i < nout; i++) tu_tensor_free(&out[i]);
        tu_tensor_free(&in[0]);
        tu_tensor_free(&in[1]);
    }
    assert_true(ok > 100); /* the fuzzing reached the kernels too */
}

/* A dynamic batch (and spatial size) stays dynamic through shape inference. */
static void test_dynamic_dims(void **state)
{
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims xs = {4, {-1, 4, -1, 9}};
    float wdata[4 * 4 * 3 * 3] = {0};
    kiln_dims ws = {4, {4, 4, 3, 3}};
    assert_int_equal(ir_graph_add_input(&g, "x", KILN_DTYPE_F32, &xs), KILN_OK);
    assert_int_equal(
        ir_graph_add_constant(&g, "w", KILN_DTYPE_F32, &ws, wdata, sizeof wdata, false, NULL),
        KILN_OK);
    const char *in[] = {"x", "w"}, *out[] = {"y"}, *pin[] = {"x"}, *pout[] = {"p"};
    int64_t st[] = {2, 2}, k[] = {2, 2};
    kiln_attr ca[] = {KILN_ATTR_IS("strides", st, 2), KILN_ATTR_S("auto_pad", "SAME_UPPER")};
    kiln_attr pa[] = {KILN_ATTR_IS("kernel_shape", k, 2)};
    int32_t conv_id, pool_id;
    assert_int_equal(ir_graph_add_node(&g, "Conv", "c", in, 2, out, 1, ca, 2, &conv_id), KILN_OK);
    assert_int_equal(ir_graph_add_node(&g, "MaxPool", "p", pin, 1, pout, 1, pa, 1, &pool_id),
                     KILN_OK);
    ir_tensor ti[2] = {{KILN_DTYPE_F32, xs, NULL, IR_LAYOUT_PLAIN},
                       {KILN_DTYPE_F32, ws, wdata, IR_LAYOUT_PLAIN}},
              to;
    memset(&to, 0, sizeof to);
    ir_infer c = {.node = &g.nodes[conv_id], .n_in = 2, .n_out = 1, .in = ti, .out = &to};
    assert_int_equal(g.nodes[conv_id].op->infer(&c), KILN_OK);
    assert_shape(&to, 4, (int64_t[]){-1, 4, -1, 5});
    c.node = &g.nodes[pool_id];
    c.n_in = 1;
    assert_int_equal(g.nodes[pool_id].op->infer(&c), KILN_OK);
    assert_shape(&to, 4, (int64_t[]){-1, 4, -1, 8});
    ir_graph_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_hand),
        cmocka_unit_test(test_conv_random),
        cmocka_unit_test(test_conv_large),
        cmocka_unit_test(test_conv_errors),
        cmocka_unit_test(test_conv_transpose_hand),
        cmocka_unit_test(test_conv_transpose_random),
        cmocka_unit_test(test_conv_transpose_errors),
        cmocka_unit_test(test_maxpool_hand),
        cmocka_unit_test(test_avgpool_hand),
        cmocka_unit_test(test_maxpool_random),
        cmocka_unit_test(test_avgpool_random),
        cmocka_unit_test(test_pool_errors),
        cmocka_unit_test(test_global_pools),
        cmocka_unit_test(test_batchnorm),
        cmocka_unit_test(test_lrn),
        cmocka_unit_test(test_instance_group_norm),
        cmocka_unit_test(test_lp_norm),
        cmocka_unit_test(test_depth_space),
        cmocka_unit_test(test_window_attr_fuzz),
        cmocka_unit_test(test_dynamic_dims),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
