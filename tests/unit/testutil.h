/* testutil.h - shared helpers of the unit tests: a seeded RNG, error norms, and
 * running one op through shape inference and reference evaluation. */
#ifndef KILN_TESTUTIL_H
#define KILN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka needs the three above first */
#include <cmocka.h>

#include "ir/ir.h"

/* Deterministic xorshift64* generator. */
typedef struct tu_rng {
    uint64_t s;
} tu_rng;

uint64_t tu_next(tu_rng *r);
/* Uniform in [lo, hi). */
float tu_uniform(tu_rng *r, float lo, float hi);
/* Uniform integer in [lo, hi]. */
int64_t tu_int(tu_rng *r, int64_t lo, int64_t hi);
void tu_fill(tu_rng *r, float *p, int64_t n, float lo, float hi);

/* ||a - b|| / max(||b||, tiny) */
double tu_rel_l2(const float *a, const float *b, int64_t n);
/* Largest |a - b|. */
double tu_max_abs(const float *a, const float *b, int64_t n);

/* Asserts rel-L2 under tol, printing the first differences when not. */
#define tu_assert_close(got, want, n, tol) tu_assert_close_(got, want, n, tol, __FILE__, __LINE__)
void tu_assert_close_(const float *got, const float *want, int64_t n, double tol, const char *file,
                      int line);

/* A tensor for tests, owning its data (malloc). */
ir_tensor tu_tensor(kiln_dtype dtype, int32_t rank, const int64_t *dims, const void *data);
ir_tensor tu_tensor_f32(int32_t rank, const int64_t *dims, const float *data);
ir_tensor tu_tensor_i64(int32_t rank, const int64_t *dims, const int64_t *data);
/* An absent optional input. */
ir_tensor tu_absent(void);
void tu_tensor_free(ir_tensor *t);
/* Shorthand for shapes: TU_DIMS(2, 3) -> rank, dims. */
#define TU_DIMS(...)                                                                               \
    (int32_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]) { __VA_ARGS__ }

/* Runs `op` on `in` (all passed as constants, so shape inference sees their values):
 * adds the node with `attrs`, infers output dtypes and shapes, allocates `out[i]`
 * (free with tu_tensor_free) and evaluates. Returns the status of the first failing
 * step (the message is in kiln_last_error()). */
kiln_status tu_run_op(const char *op, const kiln_attr *attrs, int32_t n_attrs, const ir_tensor *in,
                      int32_t n_in, ir_tensor *out, int32_t n_out);

/* tu_run_op that must succeed: fails the test with the op's message otherwise. */
#define tu_run_op_ok(op, attrs, n_attrs, in, n_in, out, n_out)                                     \
    tu_run_op_ok_(op, attrs, n_attrs, in, n_in, out, n_out, __FILE__, __LINE__)
void tu_run_op_ok_(const char *op, const kiln_attr *attrs, int32_t n_attrs, const ir_tensor *in,
                   int32_t n_in, ir_tensor *out, int32_t n_out, const char *file, int line);

/* Checks a failed call: status `want`, a message naming the node ("node 'node'", as
 * tu_run_op names it) and containing `text` (NULL: any). */
#define tu_check_op_error(op, st, want, text)                                                      \
    tu_check_op_error_(op, st, want, text, __FILE__, __LINE__)
void tu_check_op_error_(const char *op, kiln_status st, kiln_status want, const char *text,
                        const char *file, int line);

/* tu_run_op that must fail as tu_check_op_error describes; outputs are freed. */
#define tu_expect_op_error(op, attrs, n_attrs, in, n_in, n_out, want, text)                        \
    tu_expect_op_error_(op, attrs, n_attrs, in, n_in, n_out, want, text, __FILE__, __LINE__)
void tu_expect_op_error_(const char *op, const kiln_attr *attrs, int32_t n_attrs,
                         const ir_tensor *in, int32_t n_in, int32_t n_out, kiln_status want,
                         const char *text, const char *file, int line);

/* The ISA paths the fast-kernel tests sweep, best first: KILN_ISA's value for each
 * ("avx512", "avx2", "portable") and the suffix of the kernel names it picks ("avx512",
 * "avx2", "generic"). tu_isa_runs(i): whether this machine runs path i. */
#define TU_ISA_PATHS 3
extern const char *const tu_isa_env[TU_ISA_PATHS];
extern const char *const tu_isa_suffix[TU_ISA_PATHS];
bool tu_isa_runs(int i);

/* Builds `net` with the N-th allocation failing, for every N until a build succeeds:
 * each failure must report KILN_ERR_OUT_OF_MEMORY (leaks show in the sanitizer build). */
void tu_build_survives_allocation_failures(kiln_network *net);
/* The same with a config (NULL: defaults). */
void tu_build_cfg_survives_allocation_failures(kiln_network *net, const kiln_config *cfg);

#endif
