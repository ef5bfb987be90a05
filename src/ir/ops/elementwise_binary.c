/* elementwise_binary.c - broadcasting elementwise ops: arithmetic, comparisons, logic,
 * Pow, Mod, PRelu, Where and the variadic Max, Min, Sum, Mean. One loop driver walks
 * the broadcast shape and hands whole rows to small typed row kernels. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/ops/elementwise_impl.h"
#include "ir/ops/elementwise_scalar.h"

/* ---- shared helpers ---- */

const char *ir_ew_dtype_list(uint32_t mask, char *buf, size_t n)
{
    static const kiln_dtype all[] = {KILN_DTYPE_F32, KILN_DTYPE_F16, KILN_DTYPE_BF16,
                                     KILN_DTYPE_I64, KILN_DTYPE_I32, KILN_DTYPE_I8,
                                     KILN_DTYPE_U8,  KILN_DTYPE_BOOL};
    int32_t total = 0, k = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (mask & IR_EW_BIT(all[i])) total++;
    size_t off = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof all / sizeof *all && off < n; i++) {
        if (!(mask & IR_EW_BIT(all[i]))) continue;
        const char *sep = k == 0 ? "" : (k == total - 1 ? " or " : ", ");
        int w = snprintf(buf + off, n - off, "%s%s", sep, kiln_dtype_name(all[i]));
        if (w < 0) break;
        off += (size_t)w;
        k++;
    }
    return buf;
}

kiln_status ir_ew_check_dtype(const ir_node *n, const char *what, kiln_dtype t, uint32_t mask)
{
    if ((unsigned)t < 32 && (mask & IR_EW_BIT(t)) && kiln_dtype_size(t) != 0) return KILN_OK;
    char list[96];
    return ir_node_error(n, KILN_ERR_UNSUPPORTED, "%s has dtype %s, expected %s", what,
                         kiln_dtype_name(t), ir_ew_dtype_list(mask, list, sizeof list));
}

static kiln_status broadcast_error(const ir_node *n, const kiln_dims *a, const kiln_dims *b)
{
    char sa[KILN_DIMS_STR_MAX], sb[KILN_DIMS_STR_MAX];
    return ir_node_error(n, KILN_ERR_SHAPE,
                         "input shapes %s and %s do not broadcast (expected equal dims or 1)",
                         kiln_dims_str(a, sa, sizeof sa), kiln_dims_str(b, sb, sizeof sb));
}

/* ---- the broadcast loop ---- */

#define BC_MAX_OPS 4 /* the output and up to three inputs (Where) */

/* A row kernel: p[0] is the output row, p[1..] the input rows; s[k] is input k's
 * element stride along the row: 1, or 0 where it is broadcast. */
typedef void (*row_fn)(char *const *p, const int64_t *s, int64_t n);

/* The output shape with size-1 dims dropped and neighbours merged wherever every
 * operand walks them as one, so equal shapes become one row and a scalar operand
 * becomes a row of stride 0: the fast paths fall out of the general loop. */
typedef struct bc_loop {
    int32_t n_ops, rank;
    int64_t d[KILN_MAX_RANK];
    int64_t st[BC_MAX_OPS][KILN_MAX_RANK]; /* element strides; operand 0 is the output */
    int64_t es[BC_MAX_OPS];                /* element sizes in bytes */
    int64_t count;
} bc_loop;

static void bc_init(bc_loop *L, const ir_tensor *out, const ir_tensor *const *ins, int32_t n_in)
{
    int64_t full[BC_MAX_OPS][KILN_MAX_RANK];
    memset(L, 0, sizeof *L);
    L->n_ops = n_in + 1;
    L->es[0] = (int64_t)kiln_dtype_size(out->dtype);
    kiln_dims_strides(&out->shape, full[0]);
    for (int32_t k = 0; k < n_in; k++) {
        L->es[k + 1] = (int64_t)kiln_dtype_size(ins[k]->dtype);
        ir_broadcast_strides(&ins[k]->shape, &out->shape, full[k + 1]);
    }
    L->count = kiln_dims_count(&out->shape);
    for (int32_t i = 0; i < out->shape.rank; i++) {
        int64_t di = out->shape.d[i];
        if (di == 1) continue;
        if (L->rank > 0) {
            int32_t j = L->rank - 1;
            bool merge = true;
            for (int32_t k = 0; k < L->n_ops; k++)
                if (L->st[k][j] != full[k][i] * di) merge = false;
            if (merge) {
                L->d[j] *= di;
                for (int32_t k = 0; k < L->n_ops; k++) L->st[k][j] = full[k][i];
                continue;
            }
        }
        L->d[L->rank] = di;
        for (int32_t k = 0; k < L->n_ops; k++) L->st[k][L->rank] = full[k][i];
        L->rank++;
    }
    if (L->rank == 0) { /* one element */
        L->rank = 1;
        L->d[0] = 1;
        for (int32_t k = 0; k < L->n_ops; k++) L->st[k][0] = k == 0;
    }
}

/* Offsets, not pointers, walk the outer dims: a pointer stepped past the end of its
 * buffer before being wound back would be undefined behaviour. */
static void bc_run(const bc_loop *L, char *const *base, row_fn fn)
{
    if (L->count == 0) return;
    int32_t r = L->rank;
    int64_t inner = L->d[r - 1], rows = L->count / inner;
    int64_t idx[KILN_MAX_RANK] = {0}, off[BC_MAX_OPS] = {0}, s[BC_MAX_OPS] = {0};
    char *p[BC_MAX_OPS] = {0};
    for (int32_t k = 0; k < L->n_ops; k++) s[k] = L->st[k][r - 1];
    for (int64_t row = 0; row < rows; row++) {
        for (int32_t k = 0; k < L->n_ops; k++) p[k] = base[k] + off[k] * L->es[k];
        fn(p, s, inner);
        for (int32_t j = r - 2; j >= 0; j--) {
            for (int32_t k = 0; k < L->n_ops; k++) off[k] += L->st[k][j];
            if (++idx[j] < L->d[j]) break;
            for (int32_t k = 0; k < L->n_ops; k++) off[k] -= L->st[k][j] * L->d[j];
            idx[j] = 0;
        }
    }
}

/* ---- row kernels ---- */

/* y = EXPR(a, b) along a row; the branches give the compiler plain loops for the
 * both-contiguous and one-side-scalar cases. */
#define ROW2(name, TA, TB, TY, EXPR)                                                               \
    static void name(char *const *p, const int64_t *s, int64_t n)                                  \
    {                                                                                              \
        TY *y = (TY *)p[0];                                                                        \
        const TA *pa = (const TA *)p[1];                                                           \
        const TB *pb = (const TB *)p[2];                                                           \
        if (s[1] && s[2]) {                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const TA a = pa[i];                                                                \
                const TB b = pb[i];                                                                \
                y[i] = (EXPR);                                                                     \
            }                                                                                      \
        } else if (s[1]) {                                                                         \
            const TB b = pb[0];                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const TA a = pa[i];                                                                \
                y[i] = (EXPR);                                                                     \
            }                                                                                      \
        } else {                                                                                   \
            const TA a = pa[0];                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                const TB b = pb[i * s[2]];                                                         \
                y[i] = (EXPR);                                                                     \
            }                                                                                      \
        }                                                                                          \
    }

/* Integer arithmetic wraps like two's complement hardware (and numpy) instead of
 * overflowing, which C leaves undefined. Division follows the ONNX reference:
 * truncation toward zero, and x / 0 == 0 (numpy's floor_divide and remainder both
 * give 0 there). INT_MIN / -1 wraps to INT_MIN instead of trapping. */
#define INT_OPS(T, U, sfx)                                                                         \
    static inline T add_##sfx(T a, T b) { return (T)((U)a + (U)b); }                               \
    static inline T sub_##sfx(T a, T b) { return (T)((U)a - (U)b); }                               \
    static inline T mul_##sfx(T a, T b) { return (T)((U)a * (U)b); }                               \
    static inline T div_##sfx(T a, T b)                                                            \
    {                                                                                              \
        if (b == 0) return 0;                                                                      \
        if (b == -1) return (T)((U)0 - (U)a);                                                      \
        return a / b;                                                                              \
    }                                                                                              \
    /* Python's %: the sign of the divisor. */                                                     \
    static inline T pymod_##sfx(T a, T b)                                                          \
    {                                                                                              \
        if (b == 0 || b == -1) return 0;                                                           \
        T r = a % b;                                                                               \
        return (r != 0 && ((r < 0) != (b < 0))) ? (T)(r + b) : r;                                  \
    }                                                                                              \
    /* C's %: the sign of the dividend. */                                                         \
    static inline T cmod_##sfx(T a, T b) { return (b == 0 || b == -1) ? 0 : a % b; }

INT_OPS(int8_t, uint8_t, i8)
INT_OPS(int32_t, uint32_t, i32)
INT_OPS(int64_t, uint64_t, i64)

/* u8: wraps modulo 256; x / 0 and x % 0 are 0 as for the signed types. */
static inline uint8_t add_u8(uint8_t a, uint8_t b) { return (uint8_t)(a + b); }
static inline uint8_t sub_u8(uint8_t a, uint8_t b) { return (uint8_t)(a - b); }
static inline uint8_t mul_u8(uint8_t a, uint8_t b) { return (uint8_t)(a * b); }
static inline uint8_t div_u8(uint8_t a, uint8_t b) { return b == 0 ? 0 : (uint8_t)(a / b); }
static inline uint8_t mod_u8(uint8_t a, uint8_t b) { return b == 0 ? 0 : (uint8_t)(a % b); }

/* Python's % on floats (Mod with fmod=0, opset 28): the sign of the divisor, as numpy's
 * remainder computes it. A zero result takes the divisor's sign; x % +-inf is x, or the
 * divisor when the signs differ; inf % y and x % 0 are NaN (fmodf's). */
static inline float pymodf(float a, float b)
{
    float r = fmodf(a, b);
    if (r == 0.0f) return copysignf(0.0f, b);
    if ((r < 0.0f) != (b < 0.0f) && !isnan(r)) r += b;
    return r;
}

/* Float to integer: truncation toward zero, saturating, NaN to 0 (C leaves
 * out-of-range conversions undefined). */
static inline int64_t sat_i64(double v)
{
    if (isnan(v)) return 0;
    if (v >= 9.2233720368547758e18) return INT64_MAX;
    if (v <= -9.2233720368547758e18) return INT64_MIN;
    return (int64_t)v;
}

static inline int32_t sat_i32(double v)
{
    if (isnan(v)) return 0;
    if (v >= 2147483647.0) return INT32_MAX;
    if (v <= -2147483648.0) return INT32_MIN;
    return (int32_t)v;
}

/* base ** e for integers, wrapping. A negative exponent gives the truncated value of
 * 1 / base**|e|: +-1 for base +-1, 0 otherwise (numpy refuses; 0 ** -e is 0 here). */
static inline uint64_t ipow_u64(int64_t base, int64_t e)
{
    if (e < 0) {
        if (base == 1) return 1;
        if (base == -1) return (e & 1) ? (uint64_t)-1 : 1;
        return 0;
    }
    uint64_t r = 1, b = (uint64_t)base;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return r;
}

ROW2(add_f32, float, float, float, ew_add(a, b))
ROW2(add_i32r, int32_t, int32_t, int32_t, add_i32(a, b))
ROW2(add_i64r, int64_t, int64_t, int64_t, add_i64(a, b))
ROW2(sub_f32, float, float, float, ew_sub(a, b))
ROW2(sub_i32r, int32_t, int32_t, int32_t, sub_i32(a, b))
ROW2(sub_i64r, int64_t, int64_t, int64_t, sub_i64(a, b))
ROW2(mul_f32, float, float, float, ew_mul(a, b))
ROW2(mul_i32r, int32_t, int32_t, int32_t, mul_i32(a, b))
ROW2(mul_i64r, int64_t, int64_t, int64_t, mul_i64(a, b))
ROW2(div_f32, float, float, float, ew_div(a, b))
ROW2(div_i32r, int32_t, int32_t, int32_t, div_i32(a, b))
ROW2(div_i64r, int64_t, int64_t, int64_t, div_i64(a, b))
ROW2(max_f32, float, float, float, ew_max(a, b))
ROW2(max_i32, int32_t, int32_t, int32_t, a > b ? a : b)
ROW2(max_i64, int64_t, int64_t, int64_t, a > b ? a : b)
ROW2(min_f32, float, float, float, ew_min(a, b))
ROW2(min_i32, int32_t, int32_t, int32_t, a < b ? a : b)
ROW2(min_i64, int64_t, int64_t, int64_t, a < b ? a : b)
ROW2(fmod_f32, float, float, float, fmodf(a, b))
ROW2(pymod_i32r, int32_t, int32_t, int32_t, pymod_i32(a, b))
ROW2(pymod_i64r, int64_t, int64_t, int64_t, pymod_i64(a, b))
ROW2(cmod_i32r, int32_t, int32_t, int32_t, cmod_i32(a, b))
ROW2(cmod_i64r, int64_t, int64_t, int64_t, cmod_i64(a, b))
ROW2(prelu_f32, float, float, float, ew_prelu(a, b))
ROW2(pymod_f32, float, float, float, pymodf(a, b))

/* i8 and u8: the integer rules above at their width. */
ROW2(add_i8r, int8_t, int8_t, int8_t, add_i8(a, b))
ROW2(sub_i8r, int8_t, int8_t, int8_t, sub_i8(a, b))
ROW2(mul_i8r, int8_t, int8_t, int8_t, mul_i8(a, b))
ROW2(div_i8r, int8_t, int8_t, int8_t, div_i8(a, b))
ROW2(pymod_i8r, int8_t, int8_t, int8_t, pymod_i8(a, b))
ROW2(cmod_i8r, int8_t, int8_t, int8_t, cmod_i8(a, b))
ROW2(max_i8, int8_t, int8_t, int8_t, a > b ? a : b)
ROW2(min_i8, int8_t, int8_t, int8_t, a < b ? a : b)
ROW2(add_u8r, uint8_t, uint8_t, uint8_t, add_u8(a, b))
ROW2(sub_u8r, uint8_t, uint8_t, uint8_t, sub_u8(a, b))
ROW2(mul_u8r, uint8_t, uint8_t, uint8_t, mul_u8(a, b))
ROW2(div_u8r, uint8_t, uint8_t, uint8_t, div_u8(a, b))
ROW2(mod_u8r, uint8_t, uint8_t, uint8_t, mod_u8(a, b))
ROW2(max_u8, uint8_t, uint8_t, uint8_t, a > b ? a : b)
ROW2(min_u8, uint8_t, uint8_t, uint8_t, a < b ? a : b)

/* f16 and bf16 compute in f32 and round once: for + - * / the f32 result rounds to the
 * same half value as exact arithmetic would (f32 carries more than twice the bits), and
 * fmod, max and min are exact; numpy computes its half-precision ops the same way. */
#define HALF_ROWS(name, F)                                                                         \
    ROW2(name##_f16, uint16_t, uint16_t, uint16_t,                                                 \
         kiln_f32_to_f16(F(kiln_f16_to_f32(a), kiln_f16_to_f32(b))))                               \
    ROW2(name##_bf16, uint16_t, uint16_t, uint16_t,                                                \
         kiln_f32_to_bf16(F(kiln_bf16_to_f32(a), kiln_bf16_to_f32(b))))
#define HALF_CMP(name, OP)                                                                         \
    ROW2(name##_f16, uint16_t, uint16_t, uint8_t, kiln_f16_to_f32(a) OP kiln_f16_to_f32(b))        \
    ROW2(name##_bf16, uint16_t, uint16_t, uint8_t, kiln_bf16_to_f32(a) OP kiln_bf16_to_f32(b))

HALF_ROWS(add, ew_add)
HALF_ROWS(sub, ew_sub)
HALF_ROWS(mul, ew_mul)
HALF_ROWS(div, ew_div)
HALF_ROWS(max, ew_max)
HALF_ROWS(min, ew_min)
HALF_ROWS(fmod, fmodf)
HALF_ROWS(pymod, pymodf)

ROW2(eq_f32, float, float, uint8_t, a == b)
ROW2(eq_i32, int32_t, int32_t, uint8_t, a == b)
ROW2(eq_i64, int64_t, int64_t, uint8_t, a == b)
ROW2(eq_b8, uint8_t, uint8_t, uint8_t, (a != 0) == (b != 0))
ROW2(lt_f32, float, float, uint8_t, a < b)
ROW2(lt_i32, int32_t, int32_t, uint8_t, a < b)
ROW2(lt_i64, int64_t, int64_t, uint8_t, a < b)
ROW2(gt_f32, float, float, uint8_t, a > b)
ROW2(gt_i32, int32_t, int32_t, uint8_t, a > b)
ROW2(gt_i64, int64_t, int64_t, uint8_t, a > b)
ROW2(le_f32, float, float, uint8_t, a <= b)
ROW2(le_i32, int32_t, int32_t, uint8_t, a <= b)
ROW2(le_i64, int64_t, int64_t, uint8_t, a <= b)
ROW2(ge_f32, float, float, uint8_t, a >= b)
ROW2(ge_i32, int32_t, int32_t, uint8_t, a >= b)
ROW2(ge_i64, int64_t, int64_t, uint8_t, a >= b)
ROW2(eq_i8, int8_t, int8_t, uint8_t, a == b)
ROW2(lt_i8, int8_t, int8_t, uint8_t, a < b)
ROW2(gt_i8, int8_t, int8_t, uint8_t, a > b)
ROW2(le_i8, int8_t, int8_t, uint8_t, a <= b)
ROW2(ge_i8, int8_t, int8_t, uint8_t, a >= b)
ROW2(eq_u8, uint8_t, uint8_t, uint8_t, a == b)
ROW2(lt_u8, uint8_t, uint8_t, uint8_t, a < b)
ROW2(gt_u8, uint8_t, uint8_t, uint8_t, a > b)
ROW2(le_u8, uint8_t, uint8_t, uint8_t, a <= b)
ROW2(ge_u8, uint8_t, uint8_t, uint8_t, a >= b)
HALF_CMP(eq, ==)
HALF_CMP(lt, <)
HALF_CMP(gt, >)
HALF_CMP(le, <=)
HALF_CMP(ge, >=)
ROW2(and_b8, uint8_t, uint8_t, uint8_t, (a != 0) & (b != 0))
ROW2(or_b8, uint8_t, uint8_t, uint8_t, (a != 0) | (b != 0))
ROW2(xor_b8, uint8_t, uint8_t, uint8_t, (a != 0) ^ (b != 0))

/* Pow for every base and exponent dtype pair; the result has the base's dtype. */
ROW2(pow_f_f, float, float, float, ew_pow(a, b))
ROW2(pow_f_i32, float, int32_t, float, (float)pow((double)a, (double)b))
ROW2(pow_f_i64, float, int64_t, float, (float)pow((double)a, (double)b))
ROW2(pow_i32_f, int32_t, float, int32_t, sat_i32(pow((double)a, (double)b)))
ROW2(pow_i32_i32, int32_t, int32_t, int32_t, (int32_t)(uint32_t)ipow_u64(a, b))
ROW2(pow_i32_i64, int32_t, int64_t, int32_t, (int32_t)(uint32_t)ipow_u64(a, b))
ROW2(pow_i64_f, int64_t, float, int64_t, sat_i64(pow((double)a, (double)b)))
ROW2(pow_i64_i32, int64_t, int32_t, int64_t, (int64_t)ipow_u64(a, b))
ROW2(pow_i64_i64, int64_t, int64_t, int64_t, (int64_t)ipow_u64(a, b))

/* Broadcast copies, by element size (the first step of the variadic ops). */
#define ROW_COPY(name, T)                                                                          \
    static void name(char *const *p, const int64_t *s, int64_t n)                                  \
    {                                                                                              \
        T *y = (T *)p[0];                                                                          \
        const T *a = (const T *)p[1];                                                              \
        if (s[1])                                                                                  \
            memmove(y, a, (size_t)n * sizeof(T));                                                  \
        else                                                                                       \
            for (int64_t i = 0; i < n; i++) y[i] = a[0];                                           \
    }

ROW_COPY(copy_1, uint8_t)
ROW_COPY(copy_2, uint16_t)
ROW_COPY(copy_4, uint32_t)
ROW_COPY(copy_8, uint64_t)

/* Where by element size: the bytes are moved, not interpreted. */
#define ROW_WHERE(name, T)                                                                         \
    static void name(char *const *p, const int64_t *s, int64_t n)                                  \
    {                                                                                              \
        T *y = (T *)p[0];                                                                          \
        const uint8_t *c = (const uint8_t *)p[1];                                                  \
        const T *a = (const T *)p[2], *b = (const T *)p[3];                                        \
        for (int64_t i = 0; i < n; i++) y[i] = c[i * s[1]] ? a[i * s[2]] : b[i * s[3]];            \
    }

ROW_WHERE(where_1, uint8_t)
ROW_WHERE(where_2, uint16_t)
ROW_WHERE(where_4, uint32_t)
ROW_WHERE(where_8, uint64_t)

static row_fn row_by_size(size_t es, row_fn f1, row_fn f2, row_fn f4, row_fn f8)
{
    switch (es) {
    case 1: return f1;
    case 2: return f2;
    case 4: return f4;
    case 8: return f8;
    default: return NULL;
    }
}

/* ---- binary ops: one descriptor each ---- */

typedef struct binop {
    row_fn f32, i32, i64, b8, i8, u8, f16, bf16;
    bool to_bool; /* comparisons */
} binop;

static uint32_t binop_mask(const binop *op)
{
    static const kiln_dtype types[] = {KILN_DTYPE_F32,  KILN_DTYPE_I32, KILN_DTYPE_I64,
                                       KILN_DTYPE_BOOL, KILN_DTYPE_I8,  KILN_DTYPE_U8,
                                       KILN_DTYPE_F16,  KILN_DTYPE_BF16};
    const row_fn rows[] = {op->f32, op->i32, op->i64, op->b8, op->i8, op->u8, op->f16, op->bf16};
    uint32_t mask = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (rows[i]) mask |= IR_EW_BIT(types[i]);
    return mask;
}

static row_fn binop_row(const binop *op, kiln_dtype t)
{
    switch (t) {
    case KILN_DTYPE_F32: return op->f32;
    case KILN_DTYPE_I32: return op->i32;
    case KILN_DTYPE_I64: return op->i64;
    case KILN_DTYPE_BOOL: return op->b8;
    case KILN_DTYPE_I8: return op->i8;
    case KILN_DTYPE_U8: return op->u8;
    case KILN_DTYPE_F16: return op->f16;
    case KILN_DTYPE_BF16: return op->bf16;
    default: return NULL;
    }
}

/* Every numeric dtype kiln has; one row kernel per dtype and op. */
#define NUM_ROWS(p, ri)                                                                            \
    .f32 = p##_f32, .i32 = p##_i32##ri, .i64 = p##_i64##ri, .i8 = p##_i8##ri, .u8 = p##_u8##ri,    \
    .f16 = p##_f16, .bf16 = p##_bf16

static const binop k_add = {NUM_ROWS(add, r)};
static const binop k_sub = {NUM_ROWS(sub, r)};
static const binop k_mul = {NUM_ROWS(mul, r)};
static const binop k_div = {NUM_ROWS(div, r)};
static const binop k_max = {NUM_ROWS(max, )};
static const binop k_min = {NUM_ROWS(min, )};
/* ONNX's Sum is for floating types only. */
static const binop k_sum = {.f32 = add_f32, .f16 = add_f16, .bf16 = add_bf16};
static const binop k_mean = {.f32 = add_f32}; /* eval_mean divides f32 */
static const binop k_pymod = {.f32 = pymod_f32,
                              .i32 = pymod_i32r,
                              .i64 = pymod_i64r,
                              .i8 = pymod_i8r,
                              .u8 = mod_u8r,
                              .f16 = pymod_f16,
                              .bf16 = pymod_bf16};
static const binop k_cmod = {.f32 = fmod_f32,
                             .i32 = cmod_i32r,
                             .i64 = cmod_i64r,
                             .i8 = cmod_i8r,
                             .u8 = mod_u8r,
                             .f16 = fmod_f16,
                             .bf16 = fmod_bf16};
static const binop k_equal = {NUM_ROWS(eq, ), .b8 = eq_b8, .to_bool = true};
static const binop k_less = {NUM_ROWS(lt, ), .to_bool = true};
static const binop k_greater = {NUM_ROWS(gt, ), .to_bool = true};
static const binop k_less_equal = {NUM_ROWS(le, ), .to_bool = true};
static const binop k_greater_equal = {NUM_ROWS(ge, ), .to_bool = true};
static const binop k_and = {.b8 = and_b8, .to_bool = true};
static const binop k_or = {.b8 = or_b8, .to_bool = true};
static const binop k_xor = {.b8 = xor_b8, .to_bool = true};

static kiln_status same_dtype(const ir_node *n, const ir_tensor *in, int32_t i)
{
    if (in[i].dtype == in[0].dtype) return KILN_OK;
    return ir_node_error(n, KILN_ERR_INVALID_GRAPH,
                         "input %d has dtype %s, expected %s like input 0", i,
                         kiln_dtype_name(in[i].dtype), kiln_dtype_name(in[0].dtype));
}

static kiln_status infer_binary(ir_infer *c, const binop *op)
{
    KILN_TRY(ir_ew_check_dtype(c->node, "input 0", c->in[0].dtype, binop_mask(op)));
    KILN_TRY(same_dtype(c->node, c->in, 1));
    if (!ir_broadcast(&c->in[0].shape, &c->in[1].shape, &c->out[0].shape))
        return broadcast_error(c->node, &c->in[0].shape, &c->in[1].shape);
    c->out[0].dtype = op->to_bool ? KILN_DTYPE_BOOL : c->in[0].dtype;
    return KILN_OK;
}

/* Runs fn over out = f(a, b) with a and b broadcast against out's shape. */
static kiln_status run2(const ir_node *n, row_fn fn, const ir_tensor *a, const ir_tensor *b,
                        ir_tensor *out)
{
    if (!fn)
        return ir_node_error(n, KILN_ERR_INTERNAL, "no kernel for dtypes %s and %s",
                             kiln_dtype_name(a->dtype), kiln_dtype_name(b->dtype));
    const ir_tensor *ins[2] = {a, b};
    bc_loop L;
    bc_init(&L, out, ins, 2);
    char *base[3] = {out->data, a->data, b->data};
    bc_run(&L, base, fn);
    return KILN_OK;
}

#define BINARY_OP(lname, desc)                                                                     \
    kiln_status ir_ew_infer_##lname(ir_infer *c) { return infer_binary(c, &desc); }                \
    kiln_status ir_ew_eval_##lname(const ir_node *n, const ir_tensor *in, int32_t n_in,            \
                                   ir_tensor *out, int32_t n_out)                                  \
    {                                                                                              \
        return run2(n, binop_row(&desc, in[0].dtype), &in[0], &in[1], &out[0]);                    \
    }

BINARY_OP(add, k_add)
BINARY_OP(sub, k_sub)
BINARY_OP(mul, k_mul)
BINARY_OP(div, k_div)
BINARY_OP(equal, k_equal)
BINARY_OP(less, k_less)
BINARY_OP(greater, k_greater)
BINARY_OP(less_equal, k_less_equal)
BINARY_OP(greater_equal, k_greater_equal)
BINARY_OP(and, k_and)
BINARY_OP(or, k_or)
BINARY_OP(xor, k_xor)

/* ---- Mod ---- */

/* ONNX: fmod=0 is Python's % (floor division; opset 28 defines it for floats too, as
 * numpy's remainder), fmod=1 is C's fmod (truncation; on integers C's %). */
kiln_status ir_ew_infer_mod(ir_infer *c)
{
    int64_t fm = ir_attr_int(c->node, "fmod");
    if (fm != 0 && fm != 1)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH, "fmod must be 0 or 1, got %lld",
                             (long long)fm);
    return infer_binary(c, fm ? &k_cmod : &k_pymod);
}

kiln_status ir_ew_eval_mod(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out)
{
    const binop *op = ir_attr_int(n, "fmod") ? &k_cmod : &k_pymod;
    return run2(n, binop_row(op, in[0].dtype), &in[0], &in[1], &out[0]);
}

/* ---- Pow ---- */

static int pow_index(kiln_dtype t)
{
    return t == KILN_DTYPE_F32 ? 0 : t == KILN_DTYPE_I32 ? 1 : t == KILN_DTYPE_I64 ? 2 : -1;
}

static const row_fn k_pow_rows[3][3] = {
    {pow_f_f, pow_f_i32, pow_f_i64},
    {pow_i32_f, pow_i32_i32, pow_i32_i64},
    {pow_i64_f, pow_i64_i32, pow_i64_i64},
};

kiln_status ir_ew_infer_pow(ir_infer *c)
{
    KILN_TRY(ir_ew_check_dtype(c->node, "base (input 0)", c->in[0].dtype, IR_EW_NUM));
    KILN_TRY(ir_ew_check_dtype(c->node, "exponent (input 1)", c->in[1].dtype, IR_EW_NUM));
    if (!ir_broadcast(&c->in[0].shape, &c->in[1].shape, &c->out[0].shape))
        return broadcast_error(c->node, &c->in[0].shape, &c->in[1].shape);
    c->out[0].dtype = c->in[0].dtype;
    return KILN_OK;
}

kiln_status ir_ew_eval_pow(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                           int32_t n_out)
{
    int ib = pow_index(in[0].dtype), ie = pow_index(in[1].dtype);
    row_fn fn = ib >= 0 && ie >= 0 ? k_pow_rows[ib][ie] : NULL;
    return run2(n, fn, &in[0], &in[1], &out[0]);
}

/* ---- PRelu: the slope broadcasts to X's shape, never the other way ---- */

kiln_status ir_ew_infer_prelu(ir_infer *c)
{
    const kiln_dims *x = &c->in[0].shape, *s = &c->in[1].shape;
    KILN_TRY(ir_ew_check_dtype(c->node, "X (input 0)", c->in[0].dtype, IR_EW_F32));
    KILN_TRY(same_dtype(c->node, c->in, 1));
    bool ok = s->rank <= x->rank;
    for (int32_t j = 0; ok && j < s->rank; j++) {
        int64_t ds = s->d[j], dx = x->d[j + x->rank - s->rank];
        if (!(ds == 1 || ds == dx || dx == -1 || ds == -1)) ok = false;
    }
    if (!ok) {
        char sx[KILN_DIMS_STR_MAX], ss[KILN_DIMS_STR_MAX];
        return ir_node_error(c->node, KILN_ERR_SHAPE,
                             "slope of shape %s does not broadcast to X of shape %s "
                             "(expected trailing dims equal to X's or 1)",
                             kiln_dims_str(s, ss, sizeof ss), kiln_dims_str(x, sx, sizeof sx));
    }
    return ir_infer_same_as_input(c);
}

kiln_status ir_ew_eval_prelu(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    return run2(n, prelu_f32, &in[0], &in[1], &out[0]);
}

/* ---- Where ---- */

kiln_status ir_ew_infer_where(ir_infer *c)
{
    KILN_TRY(ir_ew_check_dtype(c->node, "condition (input 0)", c->in[0].dtype, IR_EW_BOOL));
    if (kiln_dtype_size(c->in[1].dtype) == 0)
        return ir_node_error(c->node, KILN_ERR_UNSUPPORTED, "X (input 1) has unknown dtype %d",
                             (int)c->in[1].dtype);
    if (c->in[2].dtype != c->in[1].dtype)
        return ir_node_error(c->node, KILN_ERR_INVALID_GRAPH,
                             "Y (input 2) has dtype %s, expected %s like X",
                             kiln_dtype_name(c->in[2].dtype), kiln_dtype_name(c->in[1].dtype));
    kiln_dims t;
    if (!ir_broadcast(&c->in[1].shape, &c->in[2].shape, &t))
        return broadcast_error(c->node, &c->in[1].shape, &c->in[2].shape);
    if (!ir_broadcast(&c->in[0].shape, &t, &c->out[0].shape))
        return broadcast_error(c->node, &c->in[0].shape, &t);
    c->out[0].dtype = c->in[1].dtype;
    return KILN_OK;
}

kiln_status ir_ew_eval_where(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                             int32_t n_out)
{
    row_fn fn = row_by_size(kiln_dtype_size(in[1].dtype), where_1, where_2, where_4, where_8);
    if (!fn)
        return ir_node_error(n, KILN_ERR_INTERNAL, "no kernel for dtype %s",
                             kiln_dtype_name(in[1].dtype));
    const ir_tensor *ins[3] = {&in[0], &in[1], &in[2]};
    bc_loop L;
    bc_init(&L, &out[0], ins, 3);
    char *base[4] = {out[0].data, in[0].data, in[1].data, in[2].data};
    bc_run(&L, base, fn);
    return KILN_OK;
}

/* ---- variadic Max, Min, Sum, Mean ---- */

static kiln_status infer_variadic(ir_infer *c, const binop *op)
{
    KILN_TRY(ir_ew_check_dtype(c->node, "input 0", c->in[0].dtype, binop_mask(op)));
    kiln_dims acc = c->in[0].shape;
    for (int32_t i = 1; i < c->n_in; i++) {
        KILN_TRY(same_dtype(c->node, c->in, i));
        kiln_dims next;
        if (!ir_broadcast(&acc, &c->in[i].shape, &next))
            return broadcast_error(c->node, &acc, &c->in[i].shape);
        acc = next;
    }
    c->out[0].dtype = c->in[0].dtype;
    c->out[0].shape = acc;
    return KILN_OK;
}

/* out = broadcast(in[0]), then out = f(out, in[i]) for each further input, in place:
 * the output has the full shape, so it never broadcasts against itself. */
static kiln_status eval_variadic(const ir_node *n, const binop *op, const ir_tensor *in,
                                 int32_t n_in, ir_tensor *out)
{
    row_fn copy = row_by_size(kiln_dtype_size(in[0].dtype), copy_1, copy_2, copy_4, copy_8);
    row_fn fn = binop_row(op, in[0].dtype);
    if (!copy || !fn)
        return ir_node_error(n, KILN_ERR_INTERNAL, "no kernel for dtype %s",
                             kiln_dtype_name(in[0].dtype));
    const ir_tensor *ins[2] = {&in[0], NULL};
    bc_loop L;
    bc_init(&L, out, ins, 1);
    char *base[3] = {out->data, in[0].data, NULL};
    bc_run(&L, base, copy);
    for (int32_t i = 1; i < n_in; i++) KILN_TRY(run2(n, fn, out, &in[i], out));
    return KILN_OK;
}

#define VARIADIC_OP(lname, desc)                                                                   \
    kiln_status ir_ew_infer_##lname(ir_infer *c) { return infer_variadic(c, &desc); }              \
    kiln_status ir_ew_eval_##lname(const ir_node *n, const ir_tensor *in, int32_t n_in,            \
                                   ir_tensor *out, int32_t n_out)                                  \
    {                                                                                              \
        return eval_variadic(n, &desc, in, n_in, &out[0]);                                         \
    }

VARIADIC_OP(max, k_max)
VARIADIC_OP(min, k_min)
VARIADIC_OP(sum, k_sum)

kiln_status ir_ew_infer_mean(ir_infer *c) { return infer_variadic(c, &k_mean); }

kiln_status ir_ew_eval_mean(const ir_node *n, const ir_tensor *in, int32_t n_in, ir_tensor *out,
                            int32_t n_out)
{
    KILN_TRY(eval_variadic(n, &k_mean, in, n_in, &out[0]));
    float *y = out[0].data;
    int64_t cnt = ir_tensor_count(&out[0]);
    float k = (float)n_in;
    for (int64_t i = 0; i < cnt; i++) y[i] /= k;
    return KILN_OK;
}
