/* test_ops_elementwise.c - the elementwise op group against naive references written
 * here (explicit multi-index loops for broadcasting): hand-computed cases, seeded random
 * sweeps over shapes and dtypes, and error cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- shapes and element access ---- */

static int64_t dims_count(const kiln_dims *d)
{
    int64_t n = 1;
    for (int32_t i = 0; i < d->rank; i++) n *= d->d[i];
    return n;
}

static void assert_dims(const kiln_dims *got, const kiln_dims *want)
{
    assert_int_equal(got->rank, want->rank);
    for (int32_t i = 0; i < want->rank; i++) assert_int_equal(got->d[i], want->d[i]);
}

/* Element of `in` read for linear index `lin` of `out` under numpy broadcasting:
 * decode the output multi-index, right-align, use 0 on size-1 dims. */
static int64_t src_index(const kiln_dims *in, const kiln_dims *out, int64_t lin)
{
    int64_t idx[KILN_MAX_RANK] = {0};
    for (int32_t i = out->rank - 1; i >= 0; i--) {
        idx[i] = lin % out->d[i];
        lin /= out->d[i];
    }
    int64_t off = 0;
    for (int32_t j = 0; j < in->rank; j++) {
        int32_t i = j + out->rank - in->rank;
        off = off * in->d[j] + (in->d[j] == 1 ? 0 : idx[i]);
    }
    return off;
}

/* A random output shape of rank 0..5 and n input shapes that broadcast to it: each
 * input drops some leading dims or has dims set to 1, and every output dim is kept
 * whole by at least one input. `mode` 0: all equal; 1: input 0 a scalar; 2: the last
 * input a scalar; else general. */
static void rand_bshapes(tu_rng *r, int n, int mode, kiln_dims *in, kiln_dims *out)
{
    memset(out, 0, sizeof *out);
    out->rank = (int32_t)tu_int(r, 0, 5);
    for (int32_t i = 0; i < out->rank; i++) {
        out->d[i] = tu_int(r, 1, 5);
        if (mode >= 3 && tu_int(r, 0, 30) == 0) out->d[i] = 0;
    }
    int scalar = mode == 1 ? 0 : mode == 2 ? n - 1 : -1;
    int full = (int)tu_int(r, 0, n - 1);
    if (n > 1 && full == scalar) full = scalar == 0 ? n - 1 : 0;
    for (int k = 0; k < n; k++) {
        memset(&in[k], 0, sizeof in[k]);
        if (mode == 0 || k == full) {
            in[k] = *out;
        } else if (k != scalar) {
            in[k].rank = (int32_t)tu_int(r, 0, out->rank);
            for (int32_t j = 0; j < in[k].rank; j++)
                in[k].d[j] = tu_int(r, 0, 1) ? out->d[j + out->rank - in[k].rank] : 1;
        }
    }
}

static double get_f(const ir_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case KILN_DTYPE_F32: return ((const float *)t->data)[i];
    case KILN_DTYPE_I32: return ((const int32_t *)t->data)[i];
    case KILN_DTYPE_I64: return (double)((const int64_t *)t->data)[i];
    default: return ((const uint8_t *)t->data)[i];
    }
}

static int64_t get_i(const ir_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case KILN_DTYPE_I32: return ((const int32_t *)t->data)[i];
    case KILN_DTYPE_I64: return ((const int64_t *)t->data)[i];
    case KILN_DTYPE_I8: return ((const int8_t *)t->data)[i];
    default: return ((const uint8_t *)t->data)[i];
    }
}

/* Fills with uniform floats in [lo, hi] (integral values if `integral`), or integers. */
static void fill(tu_rng *r, ir_tensor *t, double lo, double hi, bool integral)
{
    int64_t n = ir_tensor_count(t);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case KILN_DTYPE_F32:
            ((float *)t->data)[i] = integral ? (float)tu_int(r, (int64_t)lo, (int64_t)hi)
                                             : tu_uniform(r, (float)lo, (float)hi);
            break;
        case KILN_DTYPE_I32:
            ((int32_t *)t->data)[i] = (int32_t)tu_int(r, (int64_t)lo, (int64_t)hi);
            break;
        case KILN_DTYPE_I64: ((int64_t *)t->data)[i] = tu_int(r, (int64_t)lo, (int64_t)hi); break;
        default: ((uint8_t *)t->data)[i] = (uint8_t)tu_int(r, 0, 1); break;
        }
    }
}

static ir_tensor make(kiln_dtype dt, const kiln_dims *d)
{
    return tu_tensor(dt, d->rank, d->d, NULL);
}

/* Integer view of an element; f32 inputs of the integer sweeps hold integral values. */
static int64_t get_int_any(const ir_tensor *t, int64_t i)
{
    return t->dtype == KILN_DTYPE_F32 ? (int64_t)get_f(t, i) : get_i(t, i);
}

/* Runs an op expected to fail; checks the status and that the message names the node
 * (and contains `needle` when given). */
static void expect_error(const char *op, const kiln_attr *attrs, int32_t n_attrs,
                         const ir_tensor *in, int32_t n_in, kiln_status want, const char *needle)
{
    tu_expect_op_error(op, attrs, n_attrs, in, n_in, 1, want, needle);
}

static void free_all(ir_tensor *t, int n)
{
    for (int i = 0; i < n; i++) tu_tensor_free(&t[i]);
}

/* ---- binary ops: random sweeps ---- */

typedef double (*ref2_f)(double a, double b);
typedef int64_t (*ref2_i)(int64_t a, int64_t b);

typedef struct bin_case {
    const char *op;
    kiln_dtype dtype;
    ref2_f rf; /* f32 results */
    ref2_i ri; /* integer and bool results */
    bool bool_out;
    double lo, hi;
    bool integral;  /* f32 inputs drawn from integers (so equality happens) */
    bool nonzero_b; /* no zeros in input 1 */
    const kiln_attr *attrs;
    int32_t n_attrs;
} bin_case;

static void sweep_binary(const bin_case *c, uint64_t seed)
{
    tu_rng r = {seed};
    for (int it = 0; it < 80; it++) {
        kiln_dims s[2], o;
        rand_bshapes(&r, 2, it % 5, s, &o);
        ir_tensor in[2] = {make(c->dtype, &s[0]), make(c->dtype, &s[1])}, out[1];
        fill(&r, &in[0], c->lo, c->hi, c->integral);
        fill(&r, &in[1], c->lo, c->hi, c->integral);
        if (c->nonzero_b)
            for (int64_t i = 0; i < ir_tensor_count(&in[1]); i++)
                if (get_f(&in[1], i) == 0.0) {
                    if (c->dtype == KILN_DTYPE_F32) ((float *)in[1].data)[i] = 1.5f;
                    if (c->dtype == KILN_DTYPE_I32) ((int32_t *)in[1].data)[i] = 3;
                    if (c->dtype == KILN_DTYPE_I64) ((int64_t *)in[1].data)[i] = 3;
                }
        kiln_status st = tu_run_op(c->op, c->attrs, c->n_attrs, in, 2, out, 1);
        if (st) print_error("%s: %s\n", c->op, kiln_last_error());
        assert_int_equal(st, KILN_OK);
        assert_dims(&out[0].shape, &o);
        assert_int_equal(out[0].dtype, c->bool_out ? KILN_DTYPE_BOOL : c->dtype);
        int64_t n = dims_count(&o);
        if (out[0].dtype == KILN_DTYPE_F32) {
            float *want = malloc(sizeof(float) * (size_t)(n + 1));
            for (int64_t i = 0; i < n; i++)
                want[i] = (float)c->rf(get_f(&in[0], src_index(&s[0], &o, i)),
                                       get_f(&in[1], src_index(&s[1], &o, i)));
            tu_assert_close(out[0].data, want, n, 1e-5);
            free(want);
        } else {
            for (int64_t i = 0; i < n; i++) {
                int64_t want = c->ri(get_int_any(&in[0], src_index(&s[0], &o, i)),
                                     get_int_any(&in[1], src_index(&s[1], &o, i)));
                if (out[0].dtype == KILN_DTYPE_I32) want = (int32_t)want;
                assert_int_equal(get_i(&out[0], i), want);
            }
        }
        free_all(in, 2);
        free_all(out, 1);
    }
}

static double rf_add(double a, double b) { return a + b; }
static double rf_sub(double a, double b) { return a - b; }
static double rf_mul(double a, double b) { return a * b; }
static double rf_div(double a, double b) { return a / b; }
static double rf_pow(double a, double b) { return pow(a, b); }
static double rf_fmod(double a, double b) { return fmod(a, b); }
static double rf_prelu(double a, double b) { return a < 0 ? a * b : a; }
static int64_t ri_add(int64_t a, int64_t b) { return a + b; }
static int64_t ri_sub(int64_t a, int64_t b) { return a - b; }
static int64_t ri_mul(int64_t a, int64_t b) { return a * b; }
static int64_t ri_div(int64_t a, int64_t b) { return (int64_t)trunc((double)a / (double)b); }
static int64_t ri_pymod(int64_t a, int64_t b)
{
    return a - b * (int64_t)floor((double)a / (double)b);
}
static int64_t ri_cmod(int64_t a, int64_t b)
{
    return a - b * (int64_t)trunc((double)a / (double)b);
}
static int64_t ri_eq(int64_t a, int64_t b) { return a == b; }
static int64_t ri_lt(int64_t a, int64_t b) { return a < b; }
static int64_t ri_gt(int64_t a, int64_t b) { return a > b; }
static int64_t ri_le(int64_t a, int64_t b) { return a <= b; }
static int64_t ri_ge(int64_t a, int64_t b) { return a >= b; }
static int64_t ri_and(int64_t a, int64_t b) { return a && b; }
static int64_t ri_or(int64_t a, int64_t b) { return a || b; }
static int64_t ri_xor(int64_t a, int64_t b) { return !a != !b; }

static const kiln_dtype k_num[3] = {KILN_DTYPE_F32, KILN_DTYPE_I32, KILN_DTYPE_I64};

static void test_arith_sweep(void **state)
{
    struct {
        const char *op;
        ref2_f rf;
        ref2_i ri;
        bool nonzero_b;
    } ops[] = {{"Add", rf_add, ri_add, false},
               {"Sub", rf_sub, ri_sub, false},
               {"Mul", rf_mul, ri_mul, false},
               {"Div", rf_div, ri_div, true}};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        for (int t = 0; t < 3; t++) {
            bin_case c = {ops[k].op,
                          k_num[t],
                          ops[k].rf,
                          ops[k].ri,
                          false,
                          t == 0 ? -4.0 : -1000.0,
                          t == 0 ? 4.0 : 1000.0,
                          false,
                          ops[k].nonzero_b,
                          NULL,
                          0};
            if (t == 0 && ops[k].nonzero_b) c.lo = 0.25; /* keep divisors away from 0 */
            sweep_binary(&c, 100 + k * 7 + (uint64_t)t);
        }
}

static void test_compare_sweep(void **state)
{
    struct {
        const char *op;
        ref2_i ri;
    } ops[] = {{"Equal", ri_eq},
               {"Less", ri_lt},
               {"Greater", ri_gt},
               {"LessOrEqual", ri_le},
               {"GreaterOrEqual", ri_ge}};
    for (size_t k = 0; k < sizeof ops / sizeof *ops; k++)
        for (int t = 0; t < 3; t++) {
            /* small integers so that equality is common; f32 compared as integers too */
            bin_case c = {ops[k].op, k_num[t], NULL, ops[k].ri, true, -2, 2, true, false, NULL, 0};
            sweep_binary(&c, 200 + k * 7 + (uint64_t)t);
        }
    bin_case eqb = {"Equal", KILN_DTYPE_BOOL, NULL, ri_eq, true, 0, 1, true, false, NULL, 0};
    sweep_binary(&eqb, 250);
}

static void test_logic_sweep(void **state)
{
    bin_case cs[] = {
        {"And", KILN_DTYPE_BOOL, NULL, ri_and, true, 0, 1, true, false, NULL, 0},
        {"Or", KILN_DTYPE_BOOL, NULL, ri_or, true, 0, 1, true, false, NULL, 0},
        {"Xor", KILN_DTYPE_BOOL, NULL, ri_xor, true, 0, 1, true, false, NULL, 0},
    };
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) sweep_binary(&cs[k], 300 + k);
}

static void test_mod_sweep(void **state)
{
    kiln_attr fm1[] = {KILN_ATTR_I("fmod", 1)};
    bin_case cs[] = {
        {"Mod", KILN_DTYPE_I32, NULL, ri_pymod, false, -50, 50, false, true, NULL, 0},
        {"Mod", KILN_DTYPE_I64, NULL, ri_pymod, false, -50, 50, false, true, NULL, 0},
        {"Mod", KILN_DTYPE_I32, NULL, ri_cmod, false, -50, 50, false, true, fm1, 1},
        {"Mod", KILN_DTYPE_I64, NULL, ri_cmod, false, -50, 50, false, true, fm1, 1},
        {"Mod", KILN_DTYPE_F32, rf_fmod, NULL, false, -7, 7, false, true, fm1, 1},
    };
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) sweep_binary(&cs[k], 400 + k);
}

static void test_pow_sweep(void **state)
{
    /* f32 ** f32 with positive bases; f32 ** int and int ** int with any small values;
     * int ** f32 truncated. The reference multiplies out integer powers. */
    bin_case c = {"Pow", KILN_DTYPE_F32, rf_pow, NULL, false, 0.1, 3.0, false, false, NULL, 0};
    sweep_binary(&c, 500);
    tu_rng r = {501};
    for (int it = 0; it < 120; it++) {
        kiln_dims s[2], o;
        rand_bshapes(&r, 2, it % 5, s, &o);
        kiln_dtype tb = k_num[it % 3], te = k_num[(it / 3) % 3];
        ir_tensor in[2] = {make(tb, &s[0]), make(te, &s[1])}, out[1];
        if (tb == KILN_DTYPE_F32)
            fill(&r, &in[0], te == KILN_DTYPE_F32 ? 0.1 : -3, 3, false);
        else
            fill(&r, &in[0], te == KILN_DTYPE_F32 ? 1 : -5, 5, false);
        if (te == KILN_DTYPE_F32)
            fill(&r, &in[1], 0, 3, false);
        else
            fill(&r, &in[1], 0, 6, false);
        assert_int_equal(tu_run_op("Pow", NULL, 0, in, 2, out, 1), KILN_OK);
        assert_dims(&out[0].shape, &o);
        assert_int_equal(out[0].dtype, tb);
        int64_t n = dims_count(&o);
        float *want = malloc(sizeof(float) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) {
            double a = get_f(&in[0], src_index(&s[0], &o, i));
            double e = get_f(&in[1], src_index(&s[1], &o, i));
            if (tb == KILN_DTYPE_F32) {
                want[i] = (float)pow(a, e);
            } else if (te == KILN_DTYPE_F32) {
                assert_int_equal(get_i(&out[0], i), (int64_t)trunc(pow(a, e)));
            } else {
                int64_t p = 1;
                for (int64_t k = 0; k < (int64_t)e; k++) p *= (int64_t)a;
                assert_int_equal(get_i(&out[0], i), p);
            }
        }
        if (tb == KILN_DTYPE_F32) tu_assert_close(out[0].data, want, n, 1e-5);
        free(want);
        free_all(in, 2);
        free_all(out, 1);
    }
}

/* ---- binary ops: hand-computed cases ---- */

static void run_ok(const char *op, const kiln_attr *attrs, int32_t n_attrs, ir_tensor *in,
                   int32_t n_in, ir_tensor *out)
{
    tu_run_op_ok(op, attrs, n_attrs, in, n_in, out, 1);
}

/* ---- binary ops on i8, u8, f16 and bf16 (ONNX node tests test_add_uint8, test_max_int8,
 * test_mod_float16_*, ...; these dtypes were refused) ---- */

/* The integer rules of the wide types at 8 bits: wrap, truncating division, x / 0 == 0,
 * Python's % (fmod=0) or C's % (fmod=1), x % 0 == 0. */
static int64_t ref_small(const char *op, int64_t a, int64_t b, bool u8, int fm)
{
    int64_t r;
    if (!strcmp(op, "Add"))
        r = a + b;
    else if (!strcmp(op, "Sub"))
        r = a - b;
    else if (!strcmp(op, "Mul"))
        r = a * b;
    else if (!strcmp(op, "Div"))
        r = b == 0 ? 0 : a / b;
    else if (!strcmp(op, "Mod"))
        r = b == 0 ? 0 : fm ? a % b : ri_pymod(a, b);
    else if (!strcmp(op, "Max"))
        r = a > b ? a : b;
    else if (!strcmp(op, "Min"))
        r = a < b ? a : b;
    else if (!strcmp(op, "Equal"))
        return a == b;
    else if (!strcmp(op, "Less"))
        return a < b;
    else if (!strcmp(op, "Greater"))
        return a > b;
    else if (!strcmp(op, "LessOrEqual"))
        return a <= b;
    else
        return a >= b;
    return u8 ? (int64_t)(uint8_t)r : (int64_t)(int8_t)r;
}

static const char *const k_small_ops[] = {
    "Add", "Sub",   "Mul",  "Div",     "Mod",         "Mod",           "Max",
    "Min", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"};

static void test_small_int_binary(void **state)
{
    tu_rng r = {900};
    for (int u = 0; u < 2; u++) {
        kiln_dtype dt = u ? KILN_DTYPE_U8 : KILN_DTYPE_I8;
        for (size_t k = 0; k < sizeof k_small_ops / sizeof *k_small_ops; k++) {
            const char *op = k_small_ops[k];
            int fm = k == 5;
            kiln_attr fmod = KILN_ATTR_I("fmod", fm);
            bool cmp = k >= 8;
            /* [3,4] against [4]: a row broadcast; extremes included by the range */
            ir_tensor in[2] = {tu_tensor(dt, TU_DIMS(3, 4), NULL), tu_tensor(dt, TU_DIMS(4), NULL)},
                      out[1];
            for (int i = 0; i < 2; i++)
                for (int64_t e = 0; e < ir_tensor_count(&in[i]); e++)
                    ir_tensor_set(&in[i], e, (double)tu_int(&r, u ? 0 : -128, u ? 255 : 127));
            ir_tensor_set(&in[1], 0, 0); /* x / 0 and x % 0 */
            ir_tensor_set(&in[0], 1, u ? 255 : -128);
            ir_tensor_set(&in[1], 1, u ? 255 : -1); /* i8: -128 / -1 wraps */
            run_ok(op, strcmp(op, "Mod") ? NULL : &fmod, strcmp(op, "Mod") ? 0 : 1, in, 2, out);
            assert_int_equal(out[0].dtype, cmp ? KILN_DTYPE_BOOL : dt);
            assert_dims(&out[0].shape, &(kiln_dims){2, {3, 4}});
            for (int64_t e = 0; e < 12; e++) {
                int64_t a = (int64_t)ir_tensor_get(&in[0], e),
                        b = (int64_t)ir_tensor_get(&in[1], e % 4);
                int64_t want = ref_small(op, a, b, u, fm);
                int64_t got = (int64_t)ir_tensor_get(&out[0], e);
                if (got != want)
                    print_error("%s %s: %lld, %lld -> %lld, want %lld\n", op, kiln_dtype_name(dt),
                                (long long)a, (long long)b, (long long)got, (long long)want);
                assert_int_equal(got, want);
            }
            free_all(in, 2);
            free_all(out, 1);
        }
    }
}

static float half_get(const ir_tensor *t, int64_t i)
{
    uint16_t h = ((const uint16_t *)t->data)[i];
    return t->dtype == KILN_DTYPE_F16 ? kiln_f16_to_f32(h) : kiln_bf16_to_f32(h);
}

static void half_set(ir_tensor *t, int64_t i, float v)
{
    ((uint16_t *)t->data)[i] =
        t->dtype == KILN_DTYPE_F16 ? kiln_f32_to_f16(v) : kiln_f32_to_bf16(v);
}

static float pymod_ref(float a, float b)
{
    float r = fmodf(a, b);
    if (r == 0) return copysignf(0, b);
    return (r < 0) != (b < 0) ? r + b : r;
}

static void test_half_binary(void **state)
{
    tu_rng r = {901};
    for (int h = 0; h < 2; h++) {
        kiln_dtype dt = h ? KILN_DTYPE_BF16 : KILN_DTYPE_F16;
        for (size_t k = 0; k < sizeof k_small_ops / sizeof *k_small_ops; k++) {
            const char *op = k_small_ops[k];
            int fm = k == 5;
            kiln_attr fmod = KILN_ATTR_I("fmod", fm);
            bool cmp = k >= 8;
            ir_tensor in[2] = {tu_tensor(dt, TU_DIMS(2, 5), NULL),
                               tu_tensor(dt, TU_DIMS(2, 1), NULL)},
                      out[1];
            for (int i = 0; i < 2; i++)
                for (int64_t e = 0; e < ir_tensor_count(&in[i]); e++)
                    half_set(&in[i], e, (float)tu_int(&r, -6, 6) * 0.75f);
            half_set(&in[1], 0, 1.5f);
            half_set(&in[0], 0, NAN); /* Max and Min propagate NaN */
            half_set(&in[0], 1, 1.5f);
            run_ok(op, strcmp(op, "Mod") ? NULL : &fmod, strcmp(op, "Mod") ? 0 : 1, in, 2, out);
            assert_int_equal(out[0].dtype, cmp ? KILN_DTYPE_BOOL : dt);
            for (int64_t e = 0; e < 10; e++) {
                float a = half_get(&in[0], e), b = half_get(&in[1], e / 5), want;
                if (cmp) {
                    bool w = !strcmp(op, "Equal")         ? a == b
                             : !strcmp(op, "Less")        ? a < b
                             : !strcmp(op, "Greater")     ? a > b
                             : !strcmp(op, "LessOrEqual") ? a <= b
                                                          : a >= b;
                    assert_int_equal(((uint8_t *)out[0].data)[e], w);
                    continue;
                }
                if (!strcmp(op, "Add"))
                    want = a + b;
                else if (!strcmp(op, "Sub"))
                    want = a - b;
                else if (!strcmp(op, "Mul"))
                    want = a * b;
                else if (!strcmp(op, "Div"))
                    want = a / b;
                else if (!strcmp(op, "Mod"))
                    want = fm ? fmodf(a, b) : pymod_ref(a, b);
                else if (!strcmp(op, "Max"))
                    want = isnan(a) || a > b ? a : b;
                else
                    want = isnan(a) || a < b ? a : b;
                /* the reference rounded to the half type as the op must */
                ir_tensor w1 = tu_tensor(dt, TU_DIMS(1), NULL);
                half_set(&w1, 0, want);
                float wr = half_get(&w1, 0), got = half_get(&out[0], e);
                tu_tensor_free(&w1);
                if (isnan(wr))
                    assert_true(isnan(got));
                else
                    assert_true(got == wr && signbit(got) == signbit(wr));
            }
            free_all(in, 2);
            free_all(out, 1);
        }
    }
}

/* IsNaN and IsInf on f16 and bf16 (test_isnan_float16, test_isinf_float16). */
static void test_classify_half(void **state)
{
    float v[] = {1.0f, NAN, INFINITY, -INFINITY, -0.0f, 65504.0f};
    for (int h = 0; h < 2; h++) {
        kiln_dtype dt = h ? KILN_DTYPE_BF16 : KILN_DTYPE_F16;
        ir_tensor in[1] = {tu_tensor(dt, TU_DIMS(6), NULL)}, out[1];
        for (int i = 0; i < 6; i++) half_set(&in[0], i, v[i]);
        run_ok("IsNaN", NULL, 0, in, 1, out);
        assert_int_equal(out[0].dtype, KILN_DTYPE_BOOL);
        assert_memory_equal(out[0].data, ((uint8_t[]){0, 1, 0, 0, 0, 0}), 6);
        tu_tensor_free(&out[0]);
        kiln_attr pos_only = KILN_ATTR_I("detect_negative", 0);
        run_ok("IsInf", &pos_only, 1, in, 1, out);
        assert_memory_equal(out[0].data, ((uint8_t[]){0, 0, 1, 0, 0, 0}), 6);
        tu_tensor_free(&out[0]);
        run_ok("IsInf", NULL, 0, in, 1, out);
        assert_memory_equal(out[0].data, ((uint8_t[]){0, 0, 1, 1, 0, 0}), 6);
        tu_tensor_free(&out[0]);
        free_all(in, 1);
    }
}

/* Mod fmod=0 on floats (opset 28; test_mod_float_edge_cases_fmod_0_*): floor division's
 * remainder with the divisor's sign, and the special cases ONNX lists. */
static void test_mod_float_floor(void **state)
{
    float a[] = {5.5f, -5.5f, 5.5f, -5.5f, 0.0f, -0.0f, 4.0f, INFINITY, 3.0f, 3.0f, -3.0f, NAN};
    float b[] = {2.0f,  2.0f, -2.0f, -2.0f,    -3.0f,    3.0f,
                 -2.0f, 2.0f, 0.0f,  INFINITY, INFINITY, 1.0f};
    float w[] = {1.5f, 0.5f, -0.5f, -1.5f, -0.0f, 0.0f, -0.0f, NAN, NAN, 3.0f, INFINITY, NAN};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(12), a), tu_tensor_f32(TU_DIMS(12), b)}, out[1];
    run_ok("Mod", NULL, 0, in, 2, out);
    for (int i = 0; i < 12; i++) {
        float g = ((float *)out[0].data)[i];
        if (isnan(w[i]))
            assert_true(isnan(g));
        else
            assert_true(g == w[i] && signbit(g) == signbit(w[i]));
    }
    free_all(in, 2);
    free_all(out, 1);
}

static void test_binary_hand(void **state)
{
    /* [2,3] + [3]: row bias; [2,1] * [1,3]: outer product; scalar - tensor */
    float a[] = {1, 2, 3, 4, 5, 6}, b[] = {10, 20, 30}, c[] = {1, 2}, s[] = {100};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(2, 3), a), tu_tensor_f32(TU_DIMS(3), b)}, out[1];
    run_ok("Add", NULL, 0, in, 2, out);
    float w1[] = {11, 22, 33, 14, 25, 36};
    tu_assert_close(out[0].data, w1, 6, 0);
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    in[0] = tu_tensor_f32(TU_DIMS(2, 1), c);
    in[1] = tu_tensor_f32(TU_DIMS(1, 3), b);
    run_ok("Mul", NULL, 0, in, 2, out);
    assert_dims(&out[0].shape, &(kiln_dims){2, {2, 3}});
    float w2[] = {10, 20, 30, 20, 40, 60};
    tu_assert_close(out[0].data, w2, 6, 0);
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    in[0] = tu_tensor_f32(0, NULL, s);
    in[1] = tu_tensor_f32(TU_DIMS(3), b);
    run_ok("Sub", NULL, 0, in, 2, out);
    float w3[] = {90, 80, 70};
    tu_assert_close(out[0].data, w3, 3, 0);
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    /* integer Div truncates toward zero; x / 0 is 0; INT_MIN / -1 wraps */
    int64_t ia[] = {7, -7, 7, -7, 5, INT64_MIN}, ib[] = {2, 2, -2, -2, 0, -1};
    in[0] = tu_tensor_i64(TU_DIMS(6), ia);
    in[1] = tu_tensor_i64(TU_DIMS(6), ib);
    run_ok("Div", NULL, 0, in, 2, out);
    int64_t wd[] = {3, -3, -3, 3, 0, INT64_MIN};
    assert_memory_equal(out[0].data, wd, sizeof wd);
    tu_tensor_free(&out[0]);
    /* Python %: sign of the divisor; fmod=1: sign of the dividend */
    run_ok("Mod", NULL, 0, in, 2, out);
    int64_t wm[] = {1, 1, -1, -1, 0, 0};
    assert_memory_equal(out[0].data, wm, sizeof wm);
    tu_tensor_free(&out[0]);
    kiln_attr fm1[] = {KILN_ATTR_I("fmod", 1)};
    run_ok("Mod", fm1, 1, in, 2, out);
    int64_t wf[] = {1, -1, 1, -1, 0, 0};
    assert_memory_equal(out[0].data, wf, sizeof wf);
    tu_tensor_free(&out[0]);
    /* wrapping Add and Mul */
    ia[0] = INT64_MAX;
    ib[0] = 1;
    memcpy(in[0].data, ia, sizeof ia);
    memcpy(in[1].data, ib, sizeof ib);
    run_ok("Add", NULL, 0, in, 2, out);
    assert_int_equal(((int64_t *)out[0].data)[0], INT64_MIN);
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    int32_t ja[] = {INT32_MAX, 65536, -9}, jb[] = {1, 65536, 4};
    in[0] = tu_tensor(KILN_DTYPE_I32, TU_DIMS(3), ja);
    in[1] = tu_tensor(KILN_DTYPE_I32, TU_DIMS(3), jb);
    run_ok("Mul", NULL, 0, in, 2, out);
    int32_t wj[] = {INT32_MAX, 0, -36};
    assert_memory_equal(out[0].data, wj, sizeof wj);
    tu_tensor_free(&out[0]);
    run_ok("Div", NULL, 0, in, 2, out);
    int32_t wjd[] = {INT32_MAX, 1, -2};
    assert_memory_equal(out[0].data, wjd, sizeof wjd);
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    /* f32 Mod with fmod=1 is C's fmod */
    float fa[] = {5.5f, -5.5f, 5.5f}, fb[] = {2, 2, -2};
    in[0] = tu_tensor_f32(TU_DIMS(3), fa);
    in[1] = tu_tensor_f32(TU_DIMS(3), fb);
    run_ok("Mod", fm1, 1, in, 2, out);
    float wfm[] = {1.5f, -1.5f, 1.5f};
    tu_assert_close(out[0].data, wfm, 3, 0);
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    /* comparisons give bool */
    float ca[] = {1, 2, 3}, cb[] = {2};
    in[0] = tu_tensor_f32(TU_DIMS(3), ca);
    in[1] = tu_tensor_f32(TU_DIMS(1), cb);
    const char *cops[] = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"};
    uint8_t cw[][3] = {{0, 1, 0}, {1, 0, 0}, {0, 0, 1}, {1, 1, 0}, {0, 1, 1}};
    for (int k = 0; k < 5; k++) {
        run_ok(cops[k], NULL, 0, in, 2, out);
        assert_int_equal(out[0].dtype, KILN_DTYPE_BOOL);
        assert_memory_equal(out[0].data, cw[k], 3);
        tu_tensor_free(&out[0]);
    }
    free_all(in, 2);

    /* logic */
    uint8_t la[] = {0, 0, 1, 1}, lb[] = {0, 1, 0, 1};
    in[0] = tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(4), la);
    in[1] = tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(4), lb);
    const char *lops[] = {"And", "Or", "Xor", "Equal"};
    uint8_t lw[][4] = {{0, 0, 0, 1}, {0, 1, 1, 1}, {0, 1, 1, 0}, {1, 0, 0, 1}};
    for (int k = 0; k < 4; k++) {
        run_ok(lops[k], NULL, 0, in, 2, out);
        assert_memory_equal(out[0].data, lw[k], 4);
        tu_tensor_free(&out[0]);
    }
    free_all(in, 2);
}

static void test_pow_hand(void **state)
{
    float a[] = {2, -2, 9, 0.5f}, e[] = {3, 2, 0.5f, -1};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(4), a), tu_tensor_f32(TU_DIMS(4), e)}, out[1];
    run_ok("Pow", NULL, 0, in, 2, out);
    float w[] = {8, 4, 3, 2};
    tu_assert_close(out[0].data, w, 4, 1e-7);
    tu_tensor_free(&out[0]);
    tu_tensor_free(&in[1]);
    /* f32 base, i64 exponent */
    int64_t ie[] = {3, 2, 0, -2};
    in[1] = tu_tensor_i64(TU_DIMS(4), ie);
    run_ok("Pow", NULL, 0, in, 2, out);
    assert_int_equal(out[0].dtype, KILN_DTYPE_F32);
    float w2[] = {8, 4, 1, 4};
    tu_assert_close(out[0].data, w2, 4, 1e-7);
    tu_tensor_free(&out[0]);
    free_all(in, 2);
    /* integer base, negative exponents: truncated 1 / base**|e| */
    /* and 3 ** 40 wraps modulo 2 ** 64 */
    int64_t ib[] = {2, 1, -1, -1, 3}, ix[] = {-1, -5, -3, -2, 40};
    in[0] = tu_tensor_i64(TU_DIMS(5), ib);
    in[1] = tu_tensor_i64(TU_DIMS(5), ix);
    run_ok("Pow", NULL, 0, in, 2, out);
    uint64_t p40 = 1;
    for (int k = 0; k < 40; k++) p40 *= 3;
    int64_t wi[] = {0, 1, -1, 1, (int64_t)p40};
    assert_memory_equal(out[0].data, wi, sizeof wi);
    tu_tensor_free(&out[0]);
    free_all(in, 2);
    /* i32 base, f32 exponent: truncated */
    int32_t jb[] = {9, 10, 2};
    float fe[] = {0.5f, 0.5f, -1};
    in[0] = tu_tensor(KILN_DTYPE_I32, TU_DIMS(3), jb);
    in[1] = tu_tensor_f32(TU_DIMS(3), fe);
    run_ok("Pow", NULL, 0, in, 2, out);
    int32_t wj[] = {3, 3, 0};
    assert_memory_equal(out[0].data, wj, sizeof wj);
    tu_tensor_free(&out[0]);
    free_all(in, 2);
}

/* ---- PRelu ---- */

static void test_prelu(void **state)
{
    float x[] = {-1, 2, -3, 4, -5, 6}, sl[] = {0.5f, 0.25f};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(1, 2, 3), x), tu_tensor_f32(TU_DIMS(2, 1), sl)},
              out[1];
    run_ok("PRelu", NULL, 0, in, 2, out);
    float w[] = {-0.5f, 2, -1.5f, 4, -1.25f, 6};
    assert_dims(&out[0].shape, &in[0].shape);
    tu_assert_close(out[0].data, w, 6, 0);
    free_all(in, 2);
    free_all(out, 1);

    tu_rng r = {600};
    for (int it = 0; it < 60; it++) {
        kiln_dims s[2], o;
        rand_bshapes(&r, 2, 3, s, &o);
        /* slope: a suffix of X's shape with some dims set to 1 */
        kiln_dims sd = {0, {0}};
        sd.rank = (int32_t)tu_int(&r, 0, o.rank);
        for (int32_t j = 0; j < sd.rank; j++)
            sd.d[j] = tu_int(&r, 0, 1) ? o.d[j + o.rank - sd.rank] : 1;
        in[0] = make(KILN_DTYPE_F32, &o);
        in[1] = make(KILN_DTYPE_F32, &sd);
        fill(&r, &in[0], -2, 2, false);
        fill(&r, &in[1], -1, 1, false);
        run_ok("PRelu", NULL, 0, in, 2, out);
        assert_dims(&out[0].shape, &o);
        int64_t n = dims_count(&o);
        float *want = malloc(sizeof(float) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++)
            want[i] = (float)rf_prelu(get_f(&in[0], i), get_f(&in[1], src_index(&sd, &o, i)));
        tu_assert_close(out[0].data, want, n, 1e-6);
        free(want);
        free_all(in, 2);
        free_all(out, 1);
    }
}

/* ---- Where ---- */

static void test_where(void **state)
{
    uint8_t c[] = {1, 0, 1, 0};
    float x[] = {1, 2}, y[] = {-1};
    ir_tensor in[3] = {tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(2, 2), c), tu_tensor_f32(TU_DIMS(2), x),
                       tu_tensor_f32(0, NULL, y)},
              out[1];
    run_ok("Where", NULL, 0, in, 3, out);
    float w[] = {1, -1, 1, -1};
    tu_assert_close(out[0].data, w, 4, 0);
    free_all(in, 3);
    free_all(out, 1);

    /* every dtype, three-way broadcasting */
    const kiln_dtype dts[] = {KILN_DTYPE_F32,  KILN_DTYPE_I64, KILN_DTYPE_I32,
                              KILN_DTYPE_BOOL, KILN_DTYPE_F16, KILN_DTYPE_U8};
    tu_rng r = {700};
    for (int it = 0; it < 120; it++) {
        kiln_dims s[3], o;
        rand_bshapes(&r, 3, it % 5, s, &o);
        kiln_dtype dt = dts[it % 6];
        in[0] = make(KILN_DTYPE_BOOL, &s[0]);
        in[1] = make(dt, &s[1]);
        in[2] = make(dt, &s[2]);
        fill(&r, &in[0], 0, 1, true);
        size_t es = kiln_dtype_size(dt);
        for (int k = 1; k < 3; k++) /* arbitrary bytes: Where moves them unchanged */
            for (size_t i = 0; i < (size_t)ir_tensor_count(&in[k]) * es; i++)
                ((uint8_t *)in[k].data)[i] = (uint8_t)tu_int(&r, 0, 255);
        run_ok("Where", NULL, 0, in, 3, out);
        assert_dims(&out[0].shape, &o);
        assert_int_equal(out[0].dtype, dt);
        for (int64_t i = 0; i < dims_count(&o); i++) {
            bool cond = ((uint8_t *)in[0].data)[src_index(&s[0], &o, i)] != 0;
            int k = cond ? 1 : 2;
            const uint8_t *src =
                (const uint8_t *)in[k].data + src_index(&s[k], &o, i) * (int64_t)es;
            assert_memory_equal((uint8_t *)out[0].data + i * (int64_t)es, src, es);
        }
        free_all(in, 3);
        free_all(out, 1);
    }
}

/* ---- variadic ---- */

static void test_variadic(void **state)
{
    float a[] = {1, 5, 3}, b[] = {4}, c[] = {2, 2, 6};
    ir_tensor in[4] = {tu_tensor_f32(TU_DIMS(3), a), tu_tensor_f32(TU_DIMS(1), b),
                       tu_tensor_f32(TU_DIMS(3), c)},
              out[1];
    const char *ops[] = {"Max", "Min", "Sum", "Mean"};
    float w[][3] = {{4, 5, 6}, {1, 2, 3}, {7, 11, 13}, {7.0f / 3, 11.0f / 3, 13.0f / 3}};
    for (int k = 0; k < 4; k++) {
        run_ok(ops[k], NULL, 0, in, 3, out);
        tu_assert_close(out[0].data, w[k], 3, 1e-7);
        tu_tensor_free(&out[0]);
    }
    /* one input: a copy */
    run_ok("Max", NULL, 0, in, 1, out);
    tu_assert_close(out[0].data, a, 3, 0);
    tu_tensor_free(&out[0]);
    free_all(in, 3);
    /* NaN propagates through Max and Min, as numpy's maximum */
    float na[] = {NAN, 1}, nb[] = {0, NAN};
    in[0] = tu_tensor_f32(TU_DIMS(2), na);
    in[1] = tu_tensor_f32(TU_DIMS(2), nb);
    run_ok("Max", NULL, 0, in, 2, out);
    assert_true(isnan(((float *)out[0].data)[0]) && isnan(((float *)out[0].data)[1]));
    tu_tensor_free(&out[0]);
    run_ok("Min", NULL, 0, in, 2, out);
    assert_true(isnan(((float *)out[0].data)[0]) && isnan(((float *)out[0].data)[1]));
    tu_tensor_free(&out[0]);
    free_all(in, 2);

    tu_rng r = {800};
    for (int it = 0; it < 160; it++) {
        int nin = (int)tu_int(&r, 1, 4), opk = it % 4;
        kiln_dtype dt = opk < 2 ? k_num[(it / 4) % 3] : KILN_DTYPE_F32;
        kiln_dims s[4], o;
        rand_bshapes(&r, nin, (it / 4) % 5, s, &o);
        for (int k = 0; k < nin; k++) {
            in[k] = make(dt, &s[k]);
            fill(&r, &in[k], -100, 100, false);
        }
        run_ok(ops[opk], NULL, 0, in, nin, out);
        assert_dims(&out[0].shape, &o);
        int64_t n = dims_count(&o);
        float *want = malloc(sizeof(float) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) {
            double acc = get_f(&in[0], src_index(&s[0], &o, i));
            for (int k = 1; k < nin; k++) {
                double v = get_f(&in[k], src_index(&s[k], &o, i));
                acc = opk == 0 ? (v > acc ? v : acc) : opk == 1 ? (v < acc ? v : acc) : acc + v;
            }
            if (opk == 3) acc /= nin;
            if (dt == KILN_DTYPE_F32)
                want[i] = (float)acc;
            else
                assert_int_equal(get_i(&out[0], i), (int64_t)acc);
        }
        if (dt == KILN_DTYPE_F32) tu_assert_close(out[0].data, want, n, 1e-6);
        free(want);
        free_all(in, nin);
        free_all(out, 1);
    }
}

/* ---- unary ops ---- */

typedef double (*ref1_f)(double x, const double *p);

typedef struct un_case {
    const char *op;
    ref1_f rf;
    double p[3]; /* alpha, beta, gamma as the reference sees them */
    double lo, hi;
    const kiln_attr *attrs;
    int32_t n_attrs;
} un_case;

static void sweep_unary(const un_case *c, uint64_t seed)
{
    tu_rng r = {seed};
    for (int it = 0; it < 25; it++) {
        kiln_dims s[1], o;
        rand_bshapes(&r, 1, 3, s, &o);
        ir_tensor in[1] = {make(KILN_DTYPE_F32, &o)}, out[1];
        fill(&r, &in[0], c->lo, c->hi, false);
        run_ok(c->op, c->attrs, c->n_attrs, in, 1, out);
        assert_dims(&out[0].shape, &o);
        assert_int_equal(out[0].dtype, KILN_DTYPE_F32);
        int64_t n = dims_count(&o);
        float *want = malloc(sizeof(float) * (size_t)(n + 1));
        for (int64_t i = 0; i < n; i++) want[i] = (float)c->rf(((float *)in[0].data)[i], c->p);
        if (tu_rel_l2(out[0].data, want, n) > 1e-5) print_error("op %s\n", c->op);
        tu_assert_close(out[0].data, want, n, 1e-5);
        free(want);
        free_all(in, 1);
        free_all(out, 1);
    }
}

#define K_PI 3.14159265358979323846

static double clamp01d(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }
static double u_relu(double x, const double *p) { return x > 0 ? x : 0; }
static double u_leaky(double x, const double *p) { return x >= 0 ? x : p[0] * x; }
static double u_sigmoid(double x, const double *p) { return 1 / (1 + exp(-x)); }
static double u_tanh(double x, const double *p) { return tanh(x); }
static double u_hsig(double x, const double *p) { return clamp01d(p[0] * x + p[1]); }
static double u_hswish(double x, const double *p) { return x * clamp01d(x / 6 + 0.5); }
static double u_gelu(double x, const double *p) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double u_gelu_tanh(double x, const double *p)
{
    return 0.5 * x * (1 + tanh(sqrt(2 / K_PI) * (x + 0.044715 * x * x * x)));
}
static double u_erf(double x, const double *p) { return erf(x); }
static double u_elu(double x, const double *p) { return x >= 0 ? x : p[0] * (exp(x) - 1); }
static double u_selu(double x, const double *p)
{
    return x > 0 ? p[2] * x : p[2] * (p[0] * exp(x) - p[0]);
}
static double u_softplus(double x, const double *p) { return log(1 + exp(x)); }
static double u_softsign(double x, const double *p) { return x / (1 + fabs(x)); }
static double u_mish(double x, const double *p) { return x * tanh(log(1 + exp(x))); }
static double u_thr(double x, const double *p) { return x > p[0] ? x : 0; }
static double u_sqrt(double x, const double *p) { return sqrt(x); }
static double u_exp(double x, const double *p) { return exp(x); }
static double u_log(double x, const double *p) { return log(x); }
static double u_neg(double x, const double *p) { return -x; }
static double u_abs(double x, const double *p) { return fabs(x); }
static double u_recip(double x, const double *p) { return 1 / x; }
static double u_floor(double x, const double *p) { return floor(x); }
static double u_ceil(double x, const double *p) { return ceil(x); }
static double u_sign(double x, const double *p) { return x > 0 ? 1 : x < 0 ? -1 : 0; }
static double u_sin(double x, const double *p) { return sin(x); }
static double u_cos(double x, const double *p) { return cos(x); }
static double u_round(double x, const double *p)
{
    double f = floor(x), d = x - f;
    if (d > 0.5) return f + 1;
    if (d < 0.5) return f;
    return fmod(f, 2.0) == 0 ? f : f + 1; /* ties to even */
}

static void test_unary_sweep(void **state)
{
    static const kiln_attr leaky[] = {KILN_ATTR_F("alpha", 0.2f)};
    static const kiln_attr hsig[] = {KILN_ATTR_F("alpha", 0.3f), KILN_ATTR_F("beta", 0.4f)};
    static const kiln_attr elu[] = {KILN_ATTR_F("alpha", 0.7f)};
    static const kiln_attr thr[] = {KILN_ATTR_F("alpha", 0.5f)};
    static const kiln_attr selu[] = {KILN_ATTR_F("alpha", 1.5f), KILN_ATTR_F("gamma", 2.0f)};
    static const kiln_attr gelu_t[] = {KILN_ATTR_S("approximate", "tanh")};
    const un_case cs[] = {
        {"Relu", u_relu, {0}, -3, 3, NULL, 0},
        {"LeakyRelu", u_leaky, {0.01}, -3, 3, NULL, 0},
        {"LeakyRelu", u_leaky, {0.2f}, -3, 3, leaky, 1},
        {"Sigmoid", u_sigmoid, {0}, -20, 20, NULL, 0},
        {"Tanh", u_tanh, {0}, -5, 5, NULL, 0},
        {"HardSigmoid", u_hsig, {0.2f, 0.5}, -5, 5, NULL, 0},
        {"HardSigmoid", u_hsig, {0.3f, 0.4f}, -5, 5, hsig, 2},
        {"HardSwish", u_hswish, {0}, -5, 5, NULL, 0},
        {"Gelu", u_gelu, {0}, -5, 5, NULL, 0},
        {"Gelu", u_gelu_tanh, {0}, -5, 5, gelu_t, 1},
        {"Erf", u_erf, {0}, -3, 3, NULL, 0},
        {"Elu", u_elu, {1}, -5, 5, NULL, 0},
        {"Elu", u_elu, {0.7f}, -5, 5, elu, 1},
        {"Selu", u_selu, {1.67326319217681884765625, 0, 1.05070102214813232421875}, -5, 5, NULL, 0},
        {"Selu", u_selu, {1.5, 0, 2}, -5, 5, selu, 2},
        {"Softplus", u_softplus, {0}, -20, 20, NULL, 0},
        {"Softsign", u_softsign, {0}, -5, 5, NULL, 0},
        {"Mish", u_mish, {0}, -10, 10, NULL, 0},
        {"ThresholdedRelu", u_thr, {1}, -3, 3, NULL, 0},
        {"ThresholdedRelu", u_thr, {0.5}, -3, 3, thr, 1},
        {"Sqrt", u_sqrt, {0}, 0, 100, NULL, 0},
        {"Exp", u_exp, {0}, -10, 10, NULL, 0},
        {"Log", u_log, {0}, 0.01, 100, NULL, 0},
        {"Neg", u_neg, {0}, -5, 5, NULL, 0},
        {"Abs", u_abs, {0}, -5, 5, NULL, 0},
        {"Reciprocal", u_recip, {0}, 0.1, 10, NULL, 0},
        {"Floor", u_floor, {0}, -10, 10, NULL, 0},
        {"Ceil", u_ceil, {0}, -10, 10, NULL, 0},
        {"Round", u_round, {0}, -10, 10, NULL, 0},
        {"Sign", u_sign, {0}, -3, 3, NULL, 0},
        {"Sin", u_sin, {0}, -7, 7, NULL, 0},
        {"Cos", u_cos, {0}, -7, 7, NULL, 0},
    };
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) sweep_unary(&cs[k], 900 + k);
}

static void check_unary(const char *op, const kiln_attr *attrs, int32_t n_attrs, const float *x,
                        const float *want, int64_t n)
{
    ir_tensor in[1] = {tu_tensor_f32(TU_DIMS(n), x)}, out[1];
    run_ok(op, attrs, n_attrs, in, 1, out);
    for (int64_t i = 0; i < n; i++) {
        float g = ((float *)out[0].data)[i];
        if (isnan(want[i]))
            assert_true(isnan(g));
        else if (fabsf(g - want[i]) > 1e-6f * (1 + fabsf(want[i])))
            fail_msg("%s[%lld]: got %.9g want %.9g", op, (long long)i, g, want[i]);
    }
    free_all(in, 1);
    free_all(out, 1);
}

static void test_unary_hand(void **state)
{
    float x[] = {-2, -0.5f, 0, 0.5f, 2};
    check_unary("Relu", NULL, 0, x, (float[]){0, 0, 0, 0.5f, 2}, 5);
    check_unary("LeakyRelu", NULL, 0, x, (float[]){-0.02f, -0.005f, 0, 0.5f, 2}, 5);
    check_unary("Sigmoid", NULL, 0, (float[]){0, -200, 200}, (float[]){0.5f, 0, 1}, 3);
    check_unary("HardSigmoid", NULL, 0, x, (float[]){0.1f, 0.4f, 0.5f, 0.6f, 0.9f}, 5);
    check_unary("HardSwish", NULL, 0, (float[]){-4, -1, 0, 1, 4},
                (float[]){0, -1.0f / 3, 0, 2.0f / 3, 4}, 5);
    check_unary("Gelu", NULL, 0, (float[]){0, 1}, (float[]){0, 0.8413447460685429f}, 2);
    check_unary("Elu", NULL, 0, (float[]){-1, 1}, (float[]){(float)(exp(-1) - 1), 1}, 2);
    check_unary("Softplus", NULL, 0, (float[]){0, 100, -100}, (float[]){(float)log(2.0), 100, 0},
                3);
    check_unary("Round", NULL, 0, (float[]){0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 2.4f},
                (float[]){0, 2, 2, -0.0f, -2, 2}, 6);
    check_unary("Sign", NULL, 0, (float[]){-3, 0, 7, NAN}, (float[]){-1, 0, 1, NAN}, 4);
    check_unary("Relu", NULL, 0, (float[]){NAN}, (float[]){NAN}, 1);
    check_unary("Sqrt", NULL, 0, (float[]){4, -1}, (float[]){2, NAN}, 2);
    check_unary("ThresholdedRelu", NULL, 0, (float[]){1, 1.5f}, (float[]){0, 1.5f}, 2);
    check_unary("Softsign", NULL, 0, (float[]){-3, 1}, (float[]){-0.75f, 0.5f}, 2);
    check_unary("Identity", NULL, 0, x, x, 5);
}

static void test_unary_int(void **state)
{
    int64_t x[] = {-5, 0, 7, INT64_MIN};
    ir_tensor in[1] = {tu_tensor_i64(TU_DIMS(4), x)}, out[1];
    const char *ops[] = {"Neg", "Abs", "Sign", "Relu"};
    int64_t w[][4] = {{5, 0, -7, INT64_MIN}, {5, 0, 7, INT64_MIN}, {-1, 0, 1, -1}, {0, 0, 7, 0}};
    for (int k = 0; k < 4; k++) {
        run_ok(ops[k], NULL, 0, in, 1, out);
        assert_int_equal(out[0].dtype, KILN_DTYPE_I64);
        assert_memory_equal(out[0].data, w[k], sizeof w[k]);
        tu_tensor_free(&out[0]);
    }
    free_all(in, 1);
    /* i32 sweep against plain C */
    tu_rng r = {1000};
    for (int it = 0; it < 40; it++) {
        kiln_dims s[1], o;
        rand_bshapes(&r, 1, 3, s, &o);
        in[0] = make(KILN_DTYPE_I32, &o);
        fill(&r, &in[0], -1000, 1000, false);
        int k = it % 4;
        run_ok(ops[k], NULL, 0, in, 1, out);
        for (int64_t i = 0; i < dims_count(&o); i++) {
            int64_t v = get_i(&in[0], i);
            int64_t want = k == 0   ? -v
                           : k == 1 ? (v < 0 ? -v : v)
                           : k == 2 ? (v > 0) - (v < 0)
                                    : (v > 0 ? v : 0);
            assert_int_equal(get_i(&out[0], i), want);
        }
        free_all(in, 1);
        free_all(out, 1);
    }
    /* Not, IsNaN, IsInf */
    uint8_t b[] = {0, 1, 0};
    in[0] = tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(3), b);
    run_ok("Not", NULL, 0, in, 1, out);
    assert_memory_equal(out[0].data, ((uint8_t[]){1, 0, 1}), 3);
    free_all(in, 1);
    free_all(out, 1);
    float f[] = {NAN, INFINITY, -INFINITY, 1};
    in[0] = tu_tensor_f32(TU_DIMS(4), f);
    run_ok("IsNaN", NULL, 0, in, 1, out);
    assert_int_equal(out[0].dtype, KILN_DTYPE_BOOL);
    assert_memory_equal(out[0].data, ((uint8_t[]){1, 0, 0, 0}), 4);
    tu_tensor_free(&out[0]);
    run_ok("IsInf", NULL, 0, in, 1, out);
    assert_memory_equal(out[0].data, ((uint8_t[]){0, 1, 1, 0}), 4);
    tu_tensor_free(&out[0]);
    kiln_attr neg_only[] = {KILN_ATTR_I("detect_positive", 0)};
    run_ok("IsInf", neg_only, 1, in, 1, out);
    assert_memory_equal(out[0].data, ((uint8_t[]){0, 0, 1, 0}), 4);
    tu_tensor_free(&out[0]);
    kiln_attr pos_only[] = {KILN_ATTR_I("detect_negative", 0)};
    run_ok("IsInf", pos_only, 1, in, 1, out);
    assert_memory_equal(out[0].data, ((uint8_t[]){0, 1, 0, 0}), 4);
    free_all(in, 1);
    free_all(out, 1);
}

/* ---- Clip ---- */

static void test_clip(void **state)
{
    float x[] = {-3, -1, 0, 1, 3}, lo[] = {-1.5f}, hi[] = {2};
    ir_tensor in[3] = {tu_tensor_f32(TU_DIMS(5), x), tu_tensor_f32(0, NULL, lo),
                       tu_tensor_f32(TU_DIMS(1), hi)},
              out[1];
    run_ok("Clip", NULL, 0, in, 3, out);
    tu_assert_close(out[0].data, ((float[]){-1.5f, -1, 0, 1, 2}), 5, 0);
    tu_tensor_free(&out[0]);
    run_ok("Clip", NULL, 0, in, 2, out); /* min only */
    tu_assert_close(out[0].data, ((float[]){-1.5f, -1, 0, 1, 3}), 5, 0);
    tu_tensor_free(&out[0]);
    ir_tensor only_max[3] = {in[0], tu_absent(), in[2]};
    run_ok("Clip", NULL, 0, only_max, 3, out);
    tu_assert_close(out[0].data, ((float[]){-3, -1, 0, 1, 2}), 5, 0);
    tu_tensor_free(&out[0]);
    run_ok("Clip", NULL, 0, in, 1, out); /* neither: a copy */
    tu_assert_close(out[0].data, x, 5, 0);
    tu_tensor_free(&out[0]);
    /* min > max: everything becomes max */
    ir_tensor swapped[3] = {in[0], tu_tensor_f32(0, NULL, (float[]){2}),
                            tu_tensor_f32(0, NULL, (float[]){-1})};
    run_ok("Clip", NULL, 0, swapped, 3, out);
    tu_assert_close(out[0].data, ((float[]){-1, -1, -1, -1, -1}), 5, 0);
    tu_tensor_free(&out[0]);
    free_all(swapped + 1, 2);
    free_all(in, 3);

    /* i8 and u8 (test_clip_default_int8_*): the absent bound is the dtype's limit */
    int8_t x8[] = {-128, -5, 0, 5, 127}, hi8[] = {6};
    ir_tensor in8[3] = {tu_tensor(KILN_DTYPE_I8, TU_DIMS(5), x8), tu_absent(),
                        tu_tensor(KILN_DTYPE_I8, 0, NULL, hi8)};
    run_ok("Clip", NULL, 0, in8, 3, out);
    assert_int_equal(out[0].dtype, KILN_DTYPE_I8);
    assert_memory_equal(out[0].data, ((int8_t[]){-128, -5, 0, 5, 6}), 5);
    tu_tensor_free(&out[0]);
    free_all(in8, 3);
    uint8_t xu[] = {0, 9, 200, 255}, lou[] = {10};
    ir_tensor inu[2] = {tu_tensor(KILN_DTYPE_U8, TU_DIMS(4), xu),
                        tu_tensor(KILN_DTYPE_U8, 0, NULL, lou)};
    run_ok("Clip", NULL, 0, inu, 2, out);
    assert_memory_equal(out[0].data, ((uint8_t[]){10, 10, 200, 255}), 4);
    tu_tensor_free(&out[0]);
    free_all(inu, 2);

    /* random sweep over f32, i32, i64 and which bounds are present */
    tu_rng r = {1100};
    for (int it = 0; it < 60; it++) {
        kiln_dims s[1], o;
        rand_bshapes(&r, 1, 3, s, &o);
        kiln_dtype dt = k_num[it % 3];
        bool has_lo = (it / 3) % 2, has_hi = (it / 6) % 2;
        in[0] = make(dt, &o);
        fill(&r, &in[0], -100, 100, false);
        kiln_dims sc = {0, {0}};
        in[1] = has_lo ? make(dt, &sc) : tu_absent();
        in[2] = has_hi ? make(dt, &sc) : tu_absent();
        if (has_lo) fill(&r, &in[1], -60, 0, false);
        if (has_hi) fill(&r, &in[2], 0, 60, false);
        run_ok("Clip", NULL, 0, in, 3, out);
        for (int64_t i = 0; i < dims_count(&o); i++) {
            double v = get_f(&in[0], i);
            if (has_lo && v < get_f(&in[1], 0)) v = get_f(&in[1], 0);
            if (has_hi && v > get_f(&in[2], 0)) v = get_f(&in[2], 0);
            assert_true(get_f(&out[0], i) == (dt == KILN_DTYPE_F32 ? (double)(float)v : v));
        }
        free_all(in, 3);
        free_all(out, 1);
    }
}

/* ---- Cast ---- */

static bool is_float(kiln_dtype t)
{
    return t == KILN_DTYPE_F32 || t == KILN_DTYPE_F16 || t == KILN_DTYPE_BF16;
}

static double read_float(const ir_tensor *t, int64_t i)
{
    if (t->dtype == KILN_DTYPE_F32) return ((const float *)t->data)[i];
    uint16_t h = ((const uint16_t *)t->data)[i];
    return t->dtype == KILN_DTYPE_F16 ? kiln_f16_to_f32(h) : kiln_bf16_to_f32(h);
}

/* The expected bytes of one element cast from `src` element i to dtype `to`. */
static void cast_expect(const ir_tensor *src, int64_t i, kiln_dtype to, uint8_t *outb)
{
    memset(outb, 0, 8);
    if (is_float(src->dtype)) {
        double v = read_float(src, i);
        if (to == KILN_DTYPE_F32) {
            float f = (float)v;
            memcpy(outb, &f, 4);
        } else if (to == KILN_DTYPE_F16 || to == KILN_DTYPE_BF16) {
            uint16_t h =
                to == KILN_DTYPE_F16 ? kiln_f32_to_f16((float)v) : kiln_f32_to_bf16((float)v);
            memcpy(outb, &h, 2);
        } else if (to == KILN_DTYPE_BOOL) {
            outb[0] = v != 0;
        } else { /* truncate, saturate, NaN -> 0 */
            double lo = to == KILN_DTYPE_U8    ? 0
                        : to == KILN_DTYPE_I8  ? -128
                        : to == KILN_DTYPE_I32 ? -2147483648.0
                                               : -9223372036854775808.0;
            double hi = to == KILN_DTYPE_U8    ? 255
                        : to == KILN_DTYPE_I8  ? 127
                        : to == KILN_DTYPE_I32 ? 2147483647.0
                                               : 9223372036854775807.0;
            double t = isnan(v) ? 0 : trunc(v);
            int64_t r;
            if (t <= lo)
                r = to == KILN_DTYPE_I64 ? INT64_MIN : (int64_t)lo;
            else if (t >= hi)
                r = to == KILN_DTYPE_I64 ? INT64_MAX : (int64_t)hi;
            else
                r = (int64_t)t;
            memcpy(outb, &r, kiln_dtype_size(to)); /* little-endian: the low bytes */
        }
        return;
    }
    int64_t v =
        src->dtype == KILN_DTYPE_BOOL ? ((const uint8_t *)src->data)[i] != 0 : get_i(src, i);
    if (to == KILN_DTYPE_F32) {
        float f = (float)v;
        memcpy(outb, &f, 4);
    } else if (to == KILN_DTYPE_F16 || to == KILN_DTYPE_BF16) {
        uint16_t h = to == KILN_DTYPE_F16 ? kiln_f32_to_f16((float)v) : kiln_f32_to_bf16((float)v);
        memcpy(outb, &h, 2);
    } else if (to == KILN_DTYPE_BOOL) {
        outb[0] = v != 0;
    } else {
        memcpy(outb, &v, kiln_dtype_size(to)); /* wrap: keep the low bytes */
    }
}

static void test_castlike(void **state)
{
    /* The second input only gives the dtype: the result equals Cast to that dtype. */
    const float x[5] = {-2.7f, -0.5f, 0.0f, 2.5f, 300.0f};
    const int64_t like[2] = {7, 9};
    ir_tensor in[2] = {tu_tensor_f32(TU_DIMS(5), x), tu_tensor_i64(TU_DIMS(2), like)}, out;
    assert_int_equal(tu_run_op("CastLike", NULL, 0, in, 2, &out, 1), KILN_OK);
    assert_int_equal(out.dtype, KILN_DTYPE_I64);
    assert_int_equal(out.shape.rank, 1);
    assert_int_equal(out.shape.d[0], 5);
    const int64_t want[5] = {-2, 0, 0, 2, 300};
    assert_memory_equal(out.data, want, sizeof want);
    tu_tensor_free(&out);
    kiln_attr bad = KILN_ATTR_I("saturate", 3);
    assert_int_equal(tu_run_op("CastLike", &bad, 1, in, 2, &out, 1), KILN_ERR_INVALID_GRAPH);
    assert_non_null(strstr(kiln_last_error(), "node 'node' (CastLike)"));
    tu_tensor_free(&out);
    tu_tensor_free(&in[0]);
    tu_tensor_free(&in[1]);
}

static void test_cast(void **state)
{
    const kiln_dtype all[] = {KILN_DTYPE_F32, KILN_DTYPE_U8,   KILN_DTYPE_I8,  KILN_DTYPE_I32,
                              KILN_DTYPE_I64, KILN_DTYPE_BOOL, KILN_DTYPE_F16, KILN_DTYPE_BF16};
    const float specials[] = {NAN,     INFINITY, -INFINITY, -0.5f,    2.5f,  -2.7f, 300.0f,
                              -200.0f, 1e10f,    -1e10f,    65504.0f, 1e-8f, 0.0f,  1.0f};
    tu_rng r = {1200};
    for (int si = 0; si < 8; si++)
        for (int di = 0; di < 8; di++) {
            kiln_dtype from = all[si], to = all[di];
            kiln_dims s[1], o;
            rand_bshapes(&r, 1, 3, s, &o);
            if (dims_count(&o) < 20) o = (kiln_dims){2, {3, 97}}; /* crosses a block edge */
            if (si == 0 && di == 0) o = (kiln_dims){1, {600}};
            ir_tensor in[1] = {make(from, &o)}, out[1];
            int64_t n = dims_count(&o);
            for (int64_t i = 0; i < n; i++) {
                float f = i < 14 ? specials[i] : tu_uniform(&r, -1000, 1000);
                int64_t v = i % 3 == 0 ? (int64_t)tu_next(&r) : tu_int(&r, -300, 300);
                switch (from) {
                case KILN_DTYPE_F32: ((float *)in[0].data)[i] = f; break;
                case KILN_DTYPE_F16: ((uint16_t *)in[0].data)[i] = kiln_f32_to_f16(f); break;
                case KILN_DTYPE_BF16: ((uint16_t *)in[0].data)[i] = kiln_f32_to_bf16(f); break;
                case KILN_DTYPE_BOOL: ((uint8_t *)in[0].data)[i] = (uint8_t)(v & 1); break;
                default:
                    memcpy((uint8_t *)in[0].data + i * (int64_t)kiln_dtype_size(from), &v,
                           kiln_dtype_size(from));
                }
            }
            kiln_attr to_attr[] = {KILN_ATTR_I("to", to)};
            run_ok("Cast", to_attr, 1, in, 1, out);
            assert_int_equal(out[0].dtype, to);
            assert_dims(&out[0].shape, &o);
            size_t es = kiln_dtype_size(to);
            for (int64_t i = 0; i < n; i++) {
                uint8_t want[8];
                cast_expect(&in[0], i, to, want);
                const uint8_t *got = (const uint8_t *)out[0].data + i * (int64_t)es;
                if (memcmp(got, want, es) != 0)
                    fail_msg("Cast %s -> %s element %lld differs", kiln_dtype_name(from),
                             kiln_dtype_name(to), (long long)i);
            }
            free_all(in, 1);
            free_all(out, 1);
        }
    /* hand-computed */
    float f[] = {-2.7f, 2.7f, 300, NAN};
    ir_tensor in[1] = {tu_tensor_f32(TU_DIMS(4), f)}, out[1];
    kiln_attr to_u8[] = {KILN_ATTR_I("to", KILN_DTYPE_U8), KILN_ATTR_I("saturate", 0)};
    run_ok("Cast", to_u8, 2, in, 1, out);
    assert_memory_equal(out[0].data, ((uint8_t[]){0, 2, 255, 0}), 4);
    tu_tensor_free(&out[0]);
    kiln_attr to_i64[] = {KILN_ATTR_I("to", KILN_DTYPE_I64)};
    run_ok("Cast", to_i64, 1, in, 1, out);
    assert_memory_equal(out[0].data, ((int64_t[]){-2, 2, 300, 0}), 32);
    free_all(in, 1);
    free_all(out, 1);
    int64_t big[] = {257, -1, 4294967297LL};
    in[0] = tu_tensor_i64(TU_DIMS(3), big);
    kiln_attr to_i32[] = {KILN_ATTR_I("to", KILN_DTYPE_I32)};
    run_ok("Cast", to_i32, 1, in, 1, out);
    assert_memory_equal(out[0].data, ((int32_t[]){257, -1, 1}), 12);
    tu_tensor_free(&out[0]);
    run_ok("Cast", to_u8, 2, in, 1, out);
    assert_memory_equal(out[0].data, ((uint8_t[]){1, 255, 1}), 3);
    free_all(in, 1);
    free_all(out, 1);
}

/* ---- shape inference details ---- */

static void test_infer_dynamic_dims(void **state)
{
    /* An unknown dim (-1) broadcasts against a known one, as in ONNX shape inference. */
    ir_graph g;
    ir_graph_init(&g);
    kiln_dims sa = {2, {-1, 4}}, sb = {2, {3, 1}};
    assert_int_equal(ir_graph_add_input(&g, "a", KILN_DTYPE_F32, &sa), KILN_OK);
    assert_int_equal(ir_graph_add_input(&g, "b", KILN_DTYPE_F32, &sb), KILN_OK);
    const char *ins[] = {"a", "b"}, *outs[] = {"y"};
    int32_t id;
    assert_int_equal(ir_graph_add_node(&g, "Add", "n", ins, 2, outs, 1, NULL, 0, &id), KILN_OK);
    ir_tensor in[2] = {{KILN_DTYPE_F32, sa, NULL, IR_LAYOUT_PLAIN},
                       {KILN_DTYPE_F32, sb, NULL, IR_LAYOUT_PLAIN}},
              out[1];
    memset(out, 0, sizeof out);
    ir_infer c = {&g.nodes[id], 2, 1, in, out};
    assert_int_equal(g.nodes[id].op->infer(&c), KILN_OK);
    assert_dims(&out[0].shape, &(kiln_dims){2, {3, 4}});
    in[1].shape = (kiln_dims){1, {-1}};
    assert_int_equal(g.nodes[id].op->infer(&c), KILN_OK);
    assert_dims(&out[0].shape, &(kiln_dims){2, {-1, 4}});
    in[1].shape = (kiln_dims){1, {5}};
    assert_int_equal(g.nodes[id].op->infer(&c), KILN_ERR_SHAPE);
    ir_graph_free(&g);
}

/* ---- errors ---- */

static void test_errors(void **state)
{
    float f[6] = {0};
    int64_t l[6] = {0};
    uint8_t b[6] = {0};
    ir_tensor f23 = tu_tensor_f32(TU_DIMS(2, 3), f), f4 = tu_tensor_f32(TU_DIMS(4), f);
    ir_tensor f2 = tu_tensor_f32(TU_DIMS(2), f), i23 = tu_tensor_i64(TU_DIMS(2, 3), l);
    ir_tensor b23 = tu_tensor(KILN_DTYPE_BOOL, TU_DIMS(2, 3), b);
    ir_tensor h23 = tu_tensor(KILN_DTYPE_F16, TU_DIMS(2, 3), l);

    expect_error("Add", NULL, 0, (ir_tensor[]){f23, f4}, 2, KILN_ERR_SHAPE, "2x3 and 4");
    expect_error("Mul", NULL, 0, (ir_tensor[]){f23, i23}, 2, KILN_ERR_INVALID_GRAPH, "i64");
    expect_error("Sub", NULL, 0, (ir_tensor[]){b23, b23}, 2, KILN_ERR_UNSUPPORTED, "bool");
    expect_error("Div", NULL, 0, (ir_tensor[]){b23, b23}, 2, KILN_ERR_UNSUPPORTED, "bool");
    expect_error("Add", NULL, 0, (ir_tensor[]){h23, f23}, 2, KILN_ERR_INVALID_GRAPH, "f16");
    expect_error("Less", NULL, 0, (ir_tensor[]){b23, b23}, 2, KILN_ERR_UNSUPPORTED, "bool");
    expect_error("And", NULL, 0, (ir_tensor[]){f23, f23}, 2, KILN_ERR_UNSUPPORTED, "f32");
    expect_error("Sigmoid", NULL, 0, (ir_tensor[]){i23}, 1, KILN_ERR_UNSUPPORTED, "i64");
    expect_error("Exp", NULL, 0, (ir_tensor[]){h23}, 1, KILN_ERR_UNSUPPORTED, "f16");
    expect_error("Relu", NULL, 0, (ir_tensor[]){b23}, 1, KILN_ERR_UNSUPPORTED, "bool");
    expect_error("Not", NULL, 0, (ir_tensor[]){f23}, 1, KILN_ERR_UNSUPPORTED, "f32");
    expect_error("IsNaN", NULL, 0, (ir_tensor[]){i23}, 1, KILN_ERR_UNSUPPORTED, "i64");
    kiln_attr bad_gelu[] = {KILN_ATTR_S("approximate", "fast")};
    expect_error("Gelu", bad_gelu, 1, (ir_tensor[]){f23}, 1, KILN_ERR_INVALID_GRAPH, "fast");
    kiln_attr bad_inf[] = {KILN_ATTR_I("detect_negative", 2)};
    expect_error("IsInf", bad_inf, 1, (ir_tensor[]){f23}, 1, KILN_ERR_INVALID_GRAPH,
                 "detect_negative");
    /* Mod: fmod outside 0..1 */
    kiln_attr fm2[] = {KILN_ATTR_I("fmod", 2)};
    expect_error("Mod", fm2, 1, (ir_tensor[]){i23, i23}, 2, KILN_ERR_INVALID_GRAPH, "fmod");
    /* Pow: bad exponent dtype, shapes */
    expect_error("Pow", NULL, 0, (ir_tensor[]){f23, b23}, 2, KILN_ERR_UNSUPPORTED, "exponent");
    expect_error("Pow", NULL, 0, (ir_tensor[]){f23, f4}, 2, KILN_ERR_SHAPE, NULL);
    /* PRelu: slope must broadcast to X, never widen it */
    expect_error("PRelu", NULL, 0, (ir_tensor[]){f2, f23}, 2, KILN_ERR_SHAPE, "slope");
    expect_error("PRelu", NULL, 0, (ir_tensor[]){f23, f4}, 2, KILN_ERR_SHAPE, "slope");
    expect_error("PRelu", NULL, 0, (ir_tensor[]){f23, i23}, 2, KILN_ERR_INVALID_GRAPH, NULL);
    /* Where */
    expect_error("Where", NULL, 0, (ir_tensor[]){f23, f23, f23}, 3, KILN_ERR_UNSUPPORTED,
                 "condition");
    expect_error("Where", NULL, 0, (ir_tensor[]){b23, f23, i23}, 3, KILN_ERR_INVALID_GRAPH, "Y");
    expect_error("Where", NULL, 0, (ir_tensor[]){b23, f23, f4}, 3, KILN_ERR_SHAPE, NULL);
    expect_error("Where", NULL, 0, (ir_tensor[]){f4, f23, f23}, 3, KILN_ERR_UNSUPPORTED, NULL);
    /* variadic */
    expect_error("Max", NULL, 0, (ir_tensor[]){f23, f23, f4}, 3, KILN_ERR_SHAPE, "4");
    expect_error("Min", NULL, 0, (ir_tensor[]){f23, f23, i23}, 3, KILN_ERR_INVALID_GRAPH,
                 "input 2");
    expect_error("Sum", NULL, 0, (ir_tensor[]){i23}, 1, KILN_ERR_UNSUPPORTED, "i64");
    expect_error("Mean", NULL, 0, (ir_tensor[]){b23, b23}, 2, KILN_ERR_UNSUPPORTED, NULL);
    /* Clip bounds: dtype and shape */
    expect_error("Clip", NULL, 0, (ir_tensor[]){f23, f2}, 2, KILN_ERR_SHAPE, "scalar");
    expect_error("Clip", NULL, 0, (ir_tensor[]){f23, tu_absent(), i23}, 3, KILN_ERR_INVALID_GRAPH,
                 "max");
    expect_error("Clip", NULL, 0, (ir_tensor[]){b23}, 1, KILN_ERR_UNSUPPORTED, "bool");
    /* Cast */
    expect_error("Cast", NULL, 0, (ir_tensor[]){f23}, 1, KILN_ERR_INVALID_GRAPH, "'to'");
    kiln_attr to_double[] = {KILN_ATTR_I("to", 11)};
    expect_error("Cast", to_double, 1, (ir_tensor[]){f23}, 1, KILN_ERR_UNSUPPORTED, "DOUBLE");
    kiln_attr to_bad[] = {KILN_ATTR_I("to", 99)};
    expect_error("Cast", to_bad, 1, (ir_tensor[]){f23}, 1, KILN_ERR_INVALID_GRAPH, "99");
    kiln_attr to_neg[] = {KILN_ATTR_I("to", -1)};
    expect_error("Cast", to_neg, 1, (ir_tensor[]){f23}, 1, KILN_ERR_INVALID_GRAPH, NULL);
    kiln_attr sat_bad[] = {KILN_ATTR_I("to", 1), KILN_ATTR_I("saturate", 3)};
    expect_error("Cast", sat_bad, 2, (ir_tensor[]){f23}, 1, KILN_ERR_INVALID_GRAPH, "saturate");
    /* attribute of the wrong type is refused when the node is added */
    kiln_attr alpha_int[] = {KILN_ATTR_I("alpha", 1)};
    expect_error("LeakyRelu", alpha_int, 1, (ir_tensor[]){f23}, 1, KILN_ERR_INVALID_ARGUMENT,
                 "alpha");

    tu_tensor_free(&f23);
    tu_tensor_free(&f4);
    tu_tensor_free(&f2);
    tu_tensor_free(&i23);
    tu_tensor_free(&b23);
    tu_tensor_free(&h23);
}

/* ---- a network-sized case: the row loop must not crawl ---- */

static void test_large_broadcast(void **state)
{
    /* [8,64,32,32] + [64,1,1] (a conv bias) and * scalar: 524288 elements each */
    kiln_dims sx = {4, {8, 64, 32, 32}}, sb = {3, {64, 1, 1}}, ss = {0, {0}};
    ir_tensor in[2] = {make(KILN_DTYPE_F32, &sx), make(KILN_DTYPE_F32, &sb)}, out[1];
    tu_rng r = {1300};
    fill(&r, &in[0], -1, 1, false);
    fill(&r, &in[1], -1, 1, false);
    for (int rep = 0; rep < 4; rep++) {
        run_ok("Add", NULL, 0, in, 2, out);
        if (rep == 0) {
            int64_t n = dims_count(&sx);
            float *want = malloc(sizeof(float) * (size_t)n);
            for (int64_t i = 0; i < n; i++)
                want[i] = ((float *)in[0].data)[i] + ((float *)in[1].data)[(i / 1024) % 64];
            tu_assert_close(out[0].data, want, n, 1e-7);
            free(want);
        }
        tu_tensor_free(&out[0]);
    }
    tu_tensor_free(&in[1]);
    in[1] = make(KILN_DTYPE_F32, &ss);
    ((float *)in[1].data)[0] = 3;
    run_ok("Mul", NULL, 0, in, 2, out);
    for (int64_t i = 0; i < dims_count(&sx); i += 4097)
        assert_true(((float *)out[0].data)[i] == 3 * ((float *)in[0].data)[i]);
    free_all(in, 2);
    free_all(out, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arith_sweep),
        cmocka_unit_test(test_compare_sweep),
        cmocka_unit_test(test_logic_sweep),
        cmocka_unit_test(test_mod_sweep),
        cmocka_unit_test(test_pow_sweep),
        cmocka_unit_test(test_binary_hand),
        cmocka_unit_test(test_pow_hand),
        cmocka_unit_test(test_prelu),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_variadic),
        cmocka_unit_test(test_unary_sweep),
        cmocka_unit_test(test_unary_hand),
        cmocka_unit_test(test_unary_int),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_cast),
        cmocka_unit_test(test_castlike),
        cmocka_unit_test(test_infer_dynamic_dims),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_large_broadcast),
        cmocka_unit_test(test_small_int_binary),
        cmocka_unit_test(test_half_binary),
        cmocka_unit_test(test_mod_float_floor),
        cmocka_unit_test(test_classify_half),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
