/* test_attention_kernels.c - the transformer kernels of the CPU backend (attention.c,
 * transpose.c, matmul_act.c) against the ops' reference kernels: kiln.Attention on random
 * shapes, broadcasts, masks and scale attributes, Transpose of every rank 2..5 permutation
 * form and element size, MatMul of two activations with broadcast batches and kiln.MatMul's
 * epilogue; on every ISA path this machine runs (KILN_ISA), and on more threads bit for bit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testnet.h"

#define TOL 1e-5

/* The errors seen per family, for the summary line. */
typedef struct err_log {
    const char *what;
    double e[4096];
    int n;
} err_log;

static err_log g_att = {"kiln.Attention", {0}, 0}, g_mm = {"MatMul", {0}, 0};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void err_summary(err_log *l)
{
    if (l->n == 0) return;
    qsort(l->e, (size_t)l->n, sizeof *l->e, cmp_double);
    print_message("%s: %d runs, rel L2 to the reference: median %.2g, max %.2g\n", l->what, l->n,
                  l->e[l->n / 2], l->e[l->n - 1]);
}

/* One layer over network inputs x0..x3 (absent ones skipped), output y. */
typedef struct kcase {
    const char *op;
    int32_t n_in;
    kiln_dims in[4];
    bool absent[4];
    kiln_dtype dtype; /* of every input; UNDEFINED: f32 */
    const kiln_attr *attrs;
    int32_t n_attrs;
    const char *family; /* the kernel expected: family_<path> */
    int32_t threads;    /* > 1: also run on this many threads, expecting the same bytes */
    int32_t big_mask;   /* > 0: input 3 gets -1e9 at about 1 in big_mask entries */
    err_log *log;       /* f32 results within TOL go here; NULL: bytes must be equal */
} kcase;

static const char *const k_names[] = {"x0", "x1", "x2", "x3"};

static kiln_dtype dtype_of(const kcase *c)
{
    return c->dtype == KILN_DTYPE_UNDEFINED ? KILN_DTYPE_F32 : c->dtype;
}

static kiln_network *case_net(const kcase *c)
{
    kiln_network *net = tn_net();
    const char *in[4];
    for (int32_t i = 0; i < c->n_in; i++) {
        in[i] = c->absent[i] ? "" : k_names[i];
        if (!c->absent[i])
            assert_int_equal(kiln_network_add_input(net, k_names[i], dtype_of(c), &c->in[i]),
                             KILN_OK);
    }
    tn_layer(net, c->op, "layer", in, c->n_in, NAMES("y"), 1, c->attrs, c->n_attrs);
    tn_output(net, "y");
    return net;
}

/* Passes that would change a lone Transpose (an identity one, one that is a reshape). */
static kiln_engine *case_build(const kiln_network *net)
{
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    assert_int_equal(kiln_config_create(&cfg), KILN_OK);
    assert_int_equal(kiln_config_set_threads(cfg, 1), KILN_OK);
    assert_int_equal(kiln_config_set_tactic_timing(cfg, 0), KILN_OK); /* the first candidate */
    assert_int_equal(kiln_config_disable_pass(cfg, "identity"), KILN_OK);
    assert_int_equal(kiln_config_disable_pass(cfg, "transpose-sinking"), KILN_OK);
    assert_int_equal(kiln_config_disable_pass(cfg, "reshape-transpose"), KILN_OK);
    kiln_status st = kiln_build(net, cfg, &e);
    if (st) fail_msg("build failed: %s", kiln_last_error());
    kiln_config_destroy(cfg);
    return e;
}

static void run_into(kiln_context *ctx, void *y)
{
    assert_int_equal(kiln_context_set_tensor(ctx, "y", y), KILN_OK);
    kiln_status st = kiln_context_run(ctx);
    if (st) fail_msg("run failed: %s", kiln_last_error());
}

/* The engine's output on each path against the reference kernel on the same inputs. */
static void check_case(const kcase *c, uint64_t seed)
{
    const kiln_dtype dt = dtype_of(c);
    const size_t es = kiln_dtype_size(dt);
    void *data[4] = {NULL, NULL, NULL, NULL};
    ir_tensor ins[4];
    tu_rng r = {seed};
    for (int32_t i = 0; i < c->n_in; i++) {
        if (c->absent[i]) {
            ins[i] = tu_absent();
            continue;
        }
        int64_t cnt = kiln_dims_count(&c->in[i]);
        data[i] = malloc(es * (size_t)cnt + 1);
        if (dt == KILN_DTYPE_F32) {
            float *f = data[i];
            tu_fill(&r, f, cnt, -2.0f, 2.0f);
            if (i == 3 && c->big_mask > 0)
                for (int64_t j = 0; j < cnt; j++)
                    if (tu_int(&r, 0, c->big_mask - 1) == 0) f[j] = -1e9f;
        } else {
            for (size_t j = 0; j < es * (size_t)cnt; j++)
                ((uint8_t *)data[i])[j] = (uint8_t)tu_next(&r);
        }
        ins[i] = tu_tensor(dt, c->in[i].rank, c->in[i].d, data[i]);
    }
    ir_tensor ref;
    tu_run_op_ok(c->op, c->attrs, c->n_attrs, ins, c->n_in, &ref, 1);
    const int64_t count = ir_tensor_count(&ref);
    const size_t bytes = (size_t)count * es;

    kiln_network *net = case_net(c);
    char *saved = getenv("KILN_ISA") ? strdup(getenv("KILN_ISA")) : NULL;
    void *y = malloc(bytes + 1), *y2 = malloc(bytes + 1);
    for (int p = 0; p < 3; p++) {
        if (!tu_isa_runs(p)) continue;
        setenv("KILN_ISA", tu_isa_env[p], 1);
        kiln_engine *e = case_build(net);
        kiln_layer_info li;
        char want[64];
        snprintf(want, sizeof want, "%s_%s", c->family, tu_isa_suffix[p]);
        assert_int_equal(kiln_engine_num_layers(e), 1);
        assert_int_equal(kiln_engine_layer_info(e, 0, &li), KILN_OK);
        if (strcmp(li.kernel, want) != 0)
            fail_msg("%s on %s runs kernel %s, expected %s", c->op, tu_isa_env[p], li.kernel, want);
        kiln_context *ctx = NULL;
        assert_int_equal(kiln_context_create(e, &ctx), KILN_OK);
        for (int32_t i = 0; i < c->n_in; i++)
            if (!c->absent[i])
                assert_int_equal(kiln_context_set_tensor(ctx, k_names[i], data[i]), KILN_OK);
        memset(y, 0x7f, bytes + 1);
        run_into(ctx, y);
        if (c->log) {
            double err = count ? tu_rel_l2(y, ref.data, count) : 0.0;
            if (!(err <= TOL))
                fail_msg("%s on %s (case seed %llu): rel L2 %g against the reference", c->op,
                         tu_isa_env[p], (unsigned long long)seed, err);
            if (c->log->n < (int)(sizeof c->log->e / sizeof *c->log->e))
                c->log->e[c->log->n++] = err;
        } else if (memcmp(y, ref.data, bytes) != 0) {
            fail_msg("%s on %s (case seed %llu): bytes differ from the reference", c->op,
                     tu_isa_env[p], (unsigned long long)seed);
        }
        if (c->threads > 1) {
            assert_int_equal(kiln_context_set_threads(ctx, c->threads), KILN_OK);
            memset(y2, 0x3f, bytes + 1);
            run_into(ctx, y2);
            if (memcmp(y, y2, bytes) != 0)
                fail_msg("%s on %s: %d threads change the result", c->op, tu_isa_env[p],
                         c->threads);
        }
        kiln_context_destroy(ctx);
        kiln_engine_destroy(e);
    }
    if (saved) {
        setenv("KILN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("KILN_ISA");
    }
    free(y);
    free(y2);
    tu_tensor_free(&ref);
    for (int32_t i = 0; i < c->n_in; i++) {
        if (!c->absent[i]) tu_tensor_free(&ins[i]);
        free(data[i]);
    }
    kiln_network_destroy(net);
}

/* A size in lo..hi, half the time one of the vector widths' edges. */
static int64_t pick(tu_rng *r, int64_t lo, int64_t hi)
{
    static const int64_t edges[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65};
    if (tu_int(r, 0, 1)) {
        int64_t v = edges[tu_int(r, 0, (int64_t)(sizeof edges / sizeof *edges) - 1)];
        if (v >= lo && v <= hi) return v;
    }
    return tu_int(r, lo, hi);
}

/* ---- kiln.Attention ---- */

typedef struct att_desc {
    int32_t rank;
    int64_t batch[2]; /* the output's batch dims (rank 3: one) */
    int64_t sq, sk, d, dv;
    /* per batch dim: which of Q, K, V have it (bit 0 Q, 1 K, 2 V; others 1) */
    int32_t has[2];
    bool kt;
    int32_t mask_rank;  /* -1: no mask */
    uint32_t mask_full; /* bit i: dim i of the right-aligned scores dims is full, else 1 */
    float q_scale, scale;
    bool div;
    int32_t threads, big_mask;
} att_desc;

static void check_attention(const att_desc *a, uint64_t seed)
{
    const int32_t nb = a->rank - 2;
    kcase c = {.op = "kiln.Attention", .n_in = 4, .family = "attention", .log = &g_att};
    c.threads = a->threads;
    c.big_mask = a->big_mask;
    for (int32_t t = 0; t < 3; t++) {
        kiln_dims *s = &c.in[t];
        s->rank = a->rank;
        for (int32_t i = 0; i < nb; i++) s->d[i] = (a->has[i] >> t & 1) ? a->batch[i] : 1;
    }
    c.in[0].d[nb] = a->sq;
    c.in[0].d[nb + 1] = a->d;
    c.in[1].d[nb] = a->kt ? a->d : a->sk;
    c.in[1].d[nb + 1] = a->kt ? a->sk : a->d;
    c.in[2].d[nb] = a->sk;
    c.in[2].d[nb + 1] = a->dv;
    int64_t scores[4] = {a->batch[0], a->batch[1], 0, 0};
    scores[nb] = a->sq;
    scores[nb + 1] = a->sk;
    if (a->mask_rank < 0) {
        c.absent[3] = true;
    } else {
        c.in[3].rank = a->mask_rank;
        for (int32_t i = 0; i < a->mask_rank; i++) {
            int32_t sd = a->rank - a->mask_rank + i; /* the scores dim it aligns with */
            c.in[3].d[i] = (a->mask_full >> sd & 1) ? scores[sd] : 1;
        }
    }
    kiln_attr attrs[] = {KILN_ATTR_I("k_transposed", a->kt), KILN_ATTR_F("q_scale", a->q_scale),
                         KILN_ATTR_F("scale", a->scale),
                         KILN_ATTR_S("scale_mode", a->div ? "div" : "mul")};
    c.attrs = attrs;
    c.n_attrs = 4;
    check_case(&c, seed);
}

static att_desc random_attention(tu_rng *r)
{
    att_desc a;
    memset(&a, 0, sizeof a);
    a.rank = (int32_t)tu_int(r, 3, 4);
    int64_t b = tu_int(r, 1, 3), h = tu_int(r, 1, 5);
    if (a.rank == 4) {
        a.batch[0] = b;
        a.batch[1] = h;
    } else {
        a.batch[0] = b * h;
    }
    for (int32_t i = 0; i < a.rank - 2; i++) {
        /* one of Q, K, V owns the dim; the others have it or broadcast */
        int32_t owner = (int32_t)tu_int(r, 0, 2);
        a.has[i] = (int32_t)((1 << owner) | tu_int(r, 0, 7));
    }
    a.sq = pick(r, 1, 70);
    a.sk = pick(r, 1, 70);
    a.d = pick(r, 1, 70);
    a.dv = pick(r, 1, 70);
    a.kt = tu_int(r, 0, 1);
    a.mask_rank = (int32_t)tu_int(r, -1, a.rank);
    a.mask_full = (uint32_t)tu_int(r, 0, 15);
    a.q_scale = tu_int(r, 0, 2) == 0 ? 0.37f : 1.0f;
    switch (tu_int(r, 0, 3)) {
    case 0: a.scale = 1.0f; break;
    case 1: a.scale = 0.125f; break;
    case 2: a.scale = 8.0f, a.div = true; break;
    default: a.scale = 2.5f, a.div = tu_int(r, 0, 1); break;
    }
    a.big_mask = tu_int(r, 0, 1) ? 4 : 0;
    return a;
}

static void test_attention_random(void **state)
{
    (void)state;
    tu_rng r = {11};
    for (int t = 0; t < 90; t++) {
        att_desc a = random_attention(&r);
        check_attention(&a, 1000 + (uint64_t)t);
    }
}

/* Every mask form of a rank-4 layer with batch dims [2, 3]: each of the four scores dims
 * full or 1, at ranks 0..4, and rank 3 layers' forms too. */
static void test_attention_mask_forms(void **state)
{
    (void)state;
    int t = 0;
    for (int32_t rank = 3; rank <= 4; rank++)
        for (int32_t mr = 0; mr <= rank; mr++)
            for (uint32_t full = 0; full < (1u << rank); full++) {
                /* dims before the mask's rank do not matter: visit each form once */
                if (full & ((1u << (rank - mr)) - 1u)) continue;
                att_desc a = {.rank = rank,
                              .batch = {rank == 4 ? 2 : 6, 3},
                              .has = {7, 7},
                              .sq = 5,
                              .sk = 19,
                              .d = 9,
                              .dv = 7,
                              .kt = t % 2,
                              .mask_rank = mr,
                              .mask_full = full,
                              .q_scale = 1.0f,
                              .scale = 0.25f,
                              .div = t % 3 == 0,
                              .big_mask = 3};
                check_attention(&a, 2000 + (uint64_t)t++);
            }
}

/* Score blocks of fewer rows than Sq (Sk of 1100: 59 rows a block), a row longer than a block
 * (Sk of 70000), and thread counts that split heads or rows. */
static void test_attention_blocks_and_threads(void **state)
{
    (void)state;
    att_desc a = {.rank = 4,
                  .batch = {1, 2},
                  .has = {7, 7},
                  .sq = 70,
                  .sk = 1100,
                  .d = 16,
                  .dv = 24,
                  .mask_rank = 2,
                  .mask_full = 0xc,
                  .q_scale = 1.0f,
                  .scale = 0.25f,
                  .threads = 2,
                  .big_mask = 5};
    check_attention(&a, 3000);
    a.kt = true;
    a.mask_rank = 4;
    a.mask_full = 0x9;
    check_attention(&a, 3001);
    att_desc lng = {.rank = 3,
                    .batch = {2},
                    .has = {7},
                    .sq = 3,
                    .sk = 70000,
                    .d = 3,
                    .dv = 5,
                    .mask_rank = 1,
                    .mask_full = 0x4,
                    .q_scale = 0.5f,
                    .scale = 1.0f,
                    .big_mask = 2};
    check_attention(&lng, 3002);
    /* 6 heads over 2 and 3 threads; one head of 200 rows split in row blocks */
    att_desc heads = {.rank = 4,
                      .batch = {2, 3},
                      .has = {7, 7},
                      .sq = 150,
                      .sk = 150,
                      .d = 64,
                      .dv = 64,
                      .mask_rank = 4,
                      .mask_full = 0x9,
                      .q_scale = 1.0f,
                      .scale = 8.0f,
                      .div = true,
                      .threads = 3,
                      .big_mask = 7};
    check_attention(&heads, 3003);
    att_desc rows = {.rank = 3,
                     .batch = {1},
                     .has = {7},
                     .sq = 200,
                     .sk = 203,
                     .d = 64,
                     .dv = 40,
                     .mask_rank = -1,
                     .q_scale = 1.0f,
                     .scale = 0.125f,
                     .threads = 2};
    check_attention(&rows, 3004);
}

/* ---- Transpose ---- */

static void check_transpose(kiln_dtype dt, int32_t rank, const int64_t *dims, const int64_t *perm,
                            int32_t threads, uint64_t seed)
{
    kiln_attr attrs[] = {KILN_ATTR_IS("perm", perm, rank)};
    kcase c = {.op = "Transpose",
               .n_in = 1,
               .in = {kiln_dims_make(rank, dims)},
               .dtype = dt,
               .attrs = perm ? attrs : NULL,
               .n_attrs = perm ? 1 : 0,
               .family = "transpose",
               .threads = threads};
    check_case(&c, seed);
}

static void test_transpose_random(void **state)
{
    (void)state;
    const kiln_dtype dts[] = {KILN_DTYPE_U8, KILN_DTYPE_F16, KILN_DTYPE_F32, KILN_DTYPE_I64};
    tu_rng r = {21};
    int t = 0;
    for (int k = 0; k < 4; k++)
        for (int n = 0; n < 36; n++) {
            int32_t rank = (int32_t)tu_int(&r, 2, 5);
            int64_t dims[5], perm[5], total;
            do {
                total = 1;
                for (int32_t i = 0; i < rank; i++) total *= dims[i] = pick(&r, 1, 33);
            } while (total > 100000);
            for (int32_t i = 0; i < rank; i++) perm[i] = i;
            for (int32_t i = rank - 1; i > 0; i--) {
                int64_t j = tu_int(&r, 0, i), tmp = perm[i];
                perm[i] = perm[j];
                perm[j] = tmp;
            }
            check_transpose(dts[k], rank, dims, perm, 1, 4000 + (uint64_t)t++);
        }
}

/* The transformers' perms, 2-D ones, the default perm, and sizes that take threads. */
static void test_transpose_forms(void **state)
{
    (void)state;
    const kiln_dtype dts[] = {KILN_DTYPE_U8, KILN_DTYPE_F16, KILN_DTYPE_F32, KILN_DTYPE_I64};
    int t = 0;
    for (int k = 0; k < 4; k++) {
        check_transpose(dts[k], 4, (int64_t[]){2, 37, 5, 19}, (int64_t[]){0, 2, 1, 3}, 1,
                        5000 + t++);
        check_transpose(dts[k], 4, (int64_t[]){2, 5, 37, 19}, (int64_t[]){0, 2, 1, 3}, 1,
                        5000 + t++);
        check_transpose(dts[k], 4, (int64_t[]){2, 37, 5, 19}, (int64_t[]){0, 2, 3, 1}, 1,
                        5000 + t++);
        check_transpose(dts[k], 4, (int64_t[]){1, 64, 4, 16}, (int64_t[]){0, 2, 3, 1}, 1,
                        5000 + t++);
        check_transpose(dts[k], 2, (int64_t[]){33, 47}, (int64_t[]){1, 0}, 1, 5000 + t++);
        check_transpose(dts[k], 2, (int64_t[]){64, 48}, (int64_t[]){1, 0}, 1, 5000 + t++);
        check_transpose(dts[k], 3, (int64_t[]){3, 17, 9}, NULL, 1, 5000 + t++);
        check_transpose(dts[k], 3, (int64_t[]){1, 17, 1}, (int64_t[]){2, 1, 0}, 1, 5000 + t++);
        check_transpose(dts[k], 3, (int64_t[]){4, 5, 6}, (int64_t[]){0, 1, 2}, 1, 5000 + t++);
        check_transpose(dts[k], 5, (int64_t[]){2, 3, 4, 5, 6}, (int64_t[]){4, 2, 0, 3, 1}, 1,
                        5000 + t++);
    }
    /* more than the parallel threshold: a 2-D tile batch and runs */
    check_transpose(KILN_DTYPE_F32, 2, (int64_t[]){600, 520}, (int64_t[]){1, 0}, 2, 5100);
    check_transpose(KILN_DTYPE_I64, 2, (int64_t[]){400, 330}, (int64_t[]){1, 0}, 3, 5101);
    check_transpose(KILN_DTYPE_F32, 4, (int64_t[]){2, 128, 12, 64}, (int64_t[]){0, 2, 1, 3}, 2,
                    5102);
    check_transpose(KILN_DTYPE_F32, 4, (int64_t[]){2, 128, 12, 64}, (int64_t[]){0, 2, 3, 1}, 2,
                    5103);
}

/* ---- MatMul of two activations ---- */

static void check_matmul(const char *op, int32_t ra, const int64_t *a, int32_t rb, const int64_t *b,
                         bool bias, bool z, const char *act, int32_t threads, uint64_t seed)
{
    kcase c = {.op = op, .n_in = 2, .family = "matmul_act", .threads = threads, .log = &g_mm};
    c.in[0] = kiln_dims_make(ra, a);
    c.in[1] = kiln_dims_make(rb, b);
    kiln_attr attrs[] = {KILN_ATTR_S("activation", act), KILN_ATTR_F("act_alpha", 0.1f),
                         KILN_ATTR_F("act_beta", 0.6f)};
    if (strcmp(op, "kiln.MatMul") == 0) {
        c.attrs = attrs;
        c.n_attrs = 3;
    }
    if (bias || z) {
        /* Z has the output's shape: broadcast batch dims, then M and N where A and B have them */
        kiln_dims ab = kiln_dims_make(ra >= 2 ? ra - 2 : 0, a);
        kiln_dims bb = kiln_dims_make(rb >= 2 ? rb - 2 : 0, b), o;
        assert_true(ir_broadcast(&ab, &bb, &o));
        if (ra >= 2) o.d[o.rank++] = a[ra - 2];
        if (rb >= 2) o.d[o.rank++] = b[rb - 1];
        c.n_in = 4;
        c.absent[2] = !bias;
        c.absent[3] = !z;
        c.in[2] = (kiln_dims){1, {rb >= 2 ? b[rb - 1] : 1}};
        c.in[3] = o;
    }
    check_case(&c, seed);
}

static void test_matmul_random(void **state)
{
    (void)state;
    tu_rng r = {31};
    for (int t = 0; t < 60; t++) {
        int32_t ra = (int32_t)tu_int(&r, 1, 4), rb = (int32_t)tu_int(&r, 1, 4);
        int32_t nb = (ra > rb ? ra : rb) - 2;
        int64_t batch[2] = {tu_int(&r, 1, 3), tu_int(&r, 1, 3)};
        int64_t m = pick(&r, 1, 70), n = pick(&r, 1, 70), k = pick(&r, 1, 70);
        if (t % 10 == 9) m = 130, n = 100, k = 120;
        int64_t a[4], b[4];
        /* batch dims right-aligned before the matrices, each full or 1 */
        for (int32_t i = 0; i < ra - 2; i++) a[i] = tu_int(&r, 0, 2) ? batch[nb - (ra - 2) + i] : 1;
        for (int32_t i = 0; i < rb - 2; i++) b[i] = tu_int(&r, 0, 2) ? batch[nb - (rb - 2) + i] : 1;
        if (ra >= 2) {
            a[ra - 2] = m;
            a[ra - 1] = k;
        } else {
            a[0] = k;
        }
        if (rb >= 2) {
            b[rb - 2] = k;
            b[rb - 1] = n;
        } else {
            b[0] = k;
        }
        check_matmul("MatMul", ra, a, rb, b, false, false, "", 1, 6000 + (uint64_t)t);
    }
}

static void test_matmul_fused_and_threads(void **state)
{
    (void)state;
    const char *acts[] = {"", "Relu", "Gelu", "Sigmoid", "Tanh", "LeakyRelu"};
    for (int f = 0; f < 6; f++)
        check_matmul("kiln.MatMul", 3, (int64_t[]){2, 9, 33}, f % 2 ? 3 : 2,
                     f % 2 ? (int64_t[]){2, 33, 21} : (int64_t[]){33, 21}, f % 3 != 1, f % 2 == 0,
                     acts[f], 1, 7000 + (uint64_t)f);
    /* batches in parallel; A's batches folded into M; batches in turn on threaded GEMMs */
    check_matmul("MatMul", 3, (int64_t[]){4, 64, 100}, 3, (int64_t[]){4, 100, 90}, false, false, "",
                 2, 7100);
    check_matmul("MatMul", 3, (int64_t[]){3, 100, 64}, 2, (int64_t[]){64, 80}, false, false, "", 2,
                 7101);
    check_matmul("MatMul", 3, (int64_t[]){2, 128, 64}, 3, (int64_t[]){2, 64, 128}, false, false, "",
                 3, 7102);
    check_matmul("kiln.MatMul", 4, (int64_t[]){2, 1, 40, 64}, 3, (int64_t[]){3, 64, 50}, true, true,
                 "Relu", 2, 7103);
}

/* Empty dims: nothing to move or a product over nothing (the reference's zeros). */
static void test_zero_sizes(void **state)
{
    (void)state;
    check_transpose(KILN_DTYPE_U8, 3, (int64_t[]){3, 0, 5}, (int64_t[]){2, 0, 1}, 1, 8000);
    check_transpose(KILN_DTYPE_F32, 2, (int64_t[]){0, 7}, (int64_t[]){1, 0}, 1, 8001);
    const int64_t zeros[][4] = {{5, 0, 4, 3}, {5, 6, 0, 3}, {0, 6, 4, 3}, {5, 6, 4, 0}};
    for (int i = 0; i < 4; i++) {
        att_desc a = {.rank = 4,
                      .batch = {1, 2},
                      .has = {7, 7},
                      .sq = zeros[i][0],
                      .sk = zeros[i][1],
                      .d = zeros[i][2],
                      .dv = zeros[i][3],
                      .kt = i % 2,
                      .mask_rank = 2,
                      .mask_full = 0xc,
                      .q_scale = 1.0f,
                      .scale = 1.0f};
        check_attention(&a, 8010 + (uint64_t)i);
    }
    check_matmul("MatMul", 3, (int64_t[]){2, 3, 0}, 3, (int64_t[]){2, 0, 5}, false, false, "", 1,
                 8020);
    check_matmul("MatMul", 3, (int64_t[]){0, 3, 4}, 2, (int64_t[]){4, 5}, false, false, "", 1,
                 8021);
    check_matmul("MatMul", 4, (int64_t[]){2, 0, 3, 4}, 4, (int64_t[]){2, 1, 4, 5}, false, false, "",
                 1, 8023);
    check_matmul("kiln.MatMul", 2, (int64_t[]){3, 0}, 2, (int64_t[]){0, 5}, true, false, "Sigmoid",
                 1, 8022);
}

/* A constant B still goes to the GEMM kernels with packed weights, unless they cannot take it
 * (a batched constant B); two activations come here. */
static void test_kernel_order(void **state)
{
    (void)state;
    kiln_network *net = tn_net();
    kiln_dims x = {3, {2, 5, 6}};
    assert_int_equal(kiln_network_add_input(net, "x", KILN_DTYPE_F32, &x), KILN_OK);
    tn_weights(net, "w2", 2, (int64_t[]){6, 7}, 1, -1.0f, 1.0f);
    tn_weights(net, "w3", 3, (int64_t[]){2, 6, 7}, 2, -1.0f, 1.0f);
    tn_layer(net, "MatMul", "packed", IN("x", "w2"), OUT("y2"), NO_ATTRS);
    tn_layer(net, "MatMul", "batched", IN("x", "w3"), OUT("y3"), NO_ATTRS);
    tn_output(net, "y2");
    tn_output(net, "y3");
    kiln_engine *e = tn_build(net, NULL);
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "packed"), &li), KILN_OK);
    assert_true(strncmp(li.kernel, "gemm_", 5) == 0);
    assert_int_equal(kiln_engine_layer_info(e, tn_find_layer(e, "batched"), &li), KILN_OK);
    assert_true(strncmp(li.kernel, "matmul_act_", 11) == 0);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

/* An attention layer's plan loads back, names its kernel and gives the same bytes. */
static kiln_network *attention_net(void)
{
    kiln_network *net = tn_net();
    kiln_dims q = {4, {1, 4, 33, 16}}, k = {4, {1, 4, 16, 40}}, v = {4, {1, 4, 40, 16}};
    kiln_dims m = {4, {1, 1, 1, 40}};
    assert_int_equal(kiln_network_add_input(net, "q", KILN_DTYPE_F32, &q), KILN_OK);
    assert_int_equal(kiln_network_add_input(net, "k", KILN_DTYPE_F32, &k), KILN_OK);
    assert_int_equal(kiln_network_add_input(net, "v", KILN_DTYPE_F32, &v), KILN_OK);
    assert_int_equal(kiln_network_add_input(net, "m", KILN_DTYPE_F32, &m), KILN_OK);
    tn_layer(net, "kiln.Attention", "att", IN("q", "k", "v", "m"), OUT("y"),
             ATTRS(KILN_ATTR_I("k_transposed", 1), KILN_ATTR_F("scale", 4.0f),
                   KILN_ATTR_S("scale_mode", "div")));
    tn_output(net, "y");
    return net;
}

static void test_attention_plan(void **state)
{
    (void)state;
    kiln_network *net = attention_net();
    kiln_engine *e = tn_build(net, NULL);
    kiln_layer_info li;
    assert_int_equal(kiln_engine_layer_info(e, 0, &li), KILN_OK);
    assert_true(strncmp(li.kernel, "attention_", 10) == 0);
    void *p;
    size_t np;
    assert_int_equal(kiln_engine_serialize(e, &p, &np), KILN_OK);
    kiln_engine *back = NULL;
    assert_int_equal(kiln_engine_load_memory(p, np, &back), KILN_OK);
    kiln_layer_info lb;
    assert_int_equal(kiln_engine_layer_info(back, 0, &lb), KILN_OK);
    assert_string_equal(li.kernel, lb.kernel);
    tn_io a, b;
    tn_run(e, &a);
    tn_run(back, &b);
    for (int32_t i = 0; i < a.n; i++) assert_memory_equal(a.data[i], b.data[i], a.bytes[i]);
    tn_io_free(&a);
    tn_io_free(&b);
    kiln_engine_destroy(back);
    kiln_free(p);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
}

static void test_allocation_failures(void **state)
{
    (void)state;
    kiln_network *net = attention_net();
    tu_build_survives_allocation_failures(net);
    kiln_network_destroy(net);
}

static void test_summary(void **state)
{
    (void)state;
    err_summary(&g_att);
    err_summary(&g_mm);
    assert_true(g_att.n > 0 && g_mm.n > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_random),
        cmocka_unit_test(test_attention_mask_forms),
        cmocka_unit_test(test_attention_blocks_and_threads),
        cmocka_unit_test(test_transpose_random),
        cmocka_unit_test(test_transpose_forms),
        cmocka_unit_test(test_matmul_random),
        cmocka_unit_test(test_matmul_fused_and_threads),
        cmocka_unit_test(test_zero_sizes),
        cmocka_unit_test(test_kernel_order),
        cmocka_unit_test(test_attention_plan),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_summary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
