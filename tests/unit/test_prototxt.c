/* test_prototxt.c - the text format parser on its own schema: every type, label and syntax
 * form, defaults, round trips through protobuf-c, a LeNet file, exact error positions,
 * truncation, garbage, limits and failing allocations (counted, so leaks show in any build). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parsers/caffe/prototxt.h"
#include "prototxt_test.pb-c.h"
#include "testutil.h"

/* ---- an allocator through kiln_malloc (so failures can be injected) that counts ---- */

static long g_live; /* blocks allocated and not yet freed */

static void *t_alloc(void *data, size_t size)
{
    void *p = kiln_malloc(size);
    if (p) g_live++;
    return p;
}

static void t_free(void *data, void *p)
{
    if (p) g_live--;
    kiln_free(p);
}

static ProtobufCAllocator g_alloc = {t_alloc, t_free, NULL};

/* Parses from an exact-size heap copy (no NUL after it), so reading past the end shows
 * under ASan. */
static kiln_status parse_n(const char *text, size_t len, const ProtobufCMessageDescriptor *d,
                           ProtobufCMessage **out)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, text, len);
    *out = (ProtobufCMessage *)&g_alloc; /* must come back NULL on failure */
    kiln_status st = prototxt_parse(copy, len, "t.prototxt", d, &g_alloc, out);
    free(copy);
    return st;
}

static void *parse_ok(const char *text, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m;
    kiln_status st = parse_n(text, strlen(text), d, &m);
    if (st) print_error("%s\n", kiln_last_error());
    assert_int_equal(st, KILN_OK);
    assert_non_null(m);
    assert_ptr_equal(m->descriptor, d);
    return m;
}

static void release(void *m)
{
    protobuf_c_message_free_unpacked(m, &g_alloc);
    assert_int_equal(g_live, 0);
}

static void expect_error_n(const char *text, size_t len, const ProtobufCMessageDescriptor *d,
                           const char *want)
{
    ProtobufCMessage *m;
    kiln_status st = parse_n(text, len, d, &m);
    if (st != KILN_ERR_PARSE || strcmp(kiln_last_error(), want) != 0)
        print_error("text: %.*s\ngot:  %s %s\nwant: %s\n", (int)len, text, kiln_status_name(st),
                    st ? kiln_last_error() : "", want);
    assert_int_equal(st, KILN_ERR_PARSE);
    assert_null(m);
    assert_int_equal(g_live, 0);
    assert_string_equal(kiln_last_error(), want);
}

static void expect_error(const char *text, const ProtobufCMessageDescriptor *d, const char *want)
{
    expect_error_n(text, strlen(text), d, want);
}

#define ALL   (&ptxtest__all__descriptor)
#define REQ   (&ptxtest__req__descriptor)
#define NET   (&ptxtest__net_parameter__descriptor)
#define HUGE_ (&ptxtest__huge__descriptor)
#define BIG   (&ptxtest__big__descriptor)

/* Packs a message into a malloc'd buffer. */
static uint8_t *pack(const void *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void assert_same_packing(const void *a, const void *b)
{
    size_t na, nb;
    uint8_t *pa = pack(a, &na), *pb = pack(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
}

/* ---- documents ---- */

/* Sets every field of ptxtest.All once; test_round_trip builds the same message by hand. */
static const char ALL_DOC[] = "# every field of ptxtest.All\n"
                              "i32: -2147483648\n"
                              "i64: -9223372036854775808\n"
                              "u32: 4294967295\n"
                              "u64: 18446744073709551615\n"
                              "s32: -5\n"
                              "s64: 0x7fffffffffffffff\n"
                              "f32: 0xFFFFFFFF\n"
                              "f64: 0\n"
                              "sf32: -1\n"
                              "sf64: 0777\n"
                              "fl: 1.5\n"
                              "db: -2.25e-3\n"
                              "b: true\n"
                              "color: GREEN\n"
                              "str: \"hi\\n\"\n"
                              "byt: \"\\000\\001\"\n"
                              "inner { a: 3 s: 'x' child { a: 4 } }\n"
                              "r_i32: [1, -2] r_i32: 3\n"
                              "r_i64: -1\n"
                              "r_u32: [0, 1]\n"
                              "r_u64: 0xffffffffffffffff\n"
                              "r_s32: -3\n"
                              "r_s64: -4\n"
                              "r_f32: 5\n"
                              "r_f64: 6\n"
                              "r_sf32: -7\n"
                              "r_sf64: -8\n"
                              "r_fl: [0.25, -1]\n"
                              "r_db: [1e10]\n"
                              "r_b: [true, false, t, 0]\n"
                              "r_color: [BLUE, 0, NEGATIVE]\n"
                              "r_str: [\"a\", 'b' \"c\"]\n"
                              "r_byt: [\"\\xff\", \"\"]\n"
                              "r_inner: [{a: 1}, <s: \"y\">]\n"
                              "r_inner { }\n"
                              "r_packed: [7, 8, 9]\n"
                              "d_str: \"over\"\n"
                              "o_msg { a: 9 }\n"
                              "nested { x: 1 kind: K0 }\n"
                              "r_nested: [{kind: K1}]\n";

/* Caffe's LeNet in deploy form, written the way Caffe's own files are. */
static const char LENET[] = "name: \"LeNet\"\n"
                            "layer {\n"
                            "  name: \"data\"\n"
                            "  type: \"Input\"\n"
                            "  top: \"data\"\n"
                            "  input_param { shape: { dim: 64 dim: 1 dim: 28 dim: 28 } }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"conv1\"\n"
                            "  type: \"Convolution\"\n"
                            "  bottom: \"data\"\n"
                            "  top: \"conv1\"\n"
                            "  param {\n"
                            "    lr_mult: 1\n"
                            "  }\n"
                            "  param {\n"
                            "    lr_mult: 2\n"
                            "  }\n"
                            "  convolution_param {\n"
                            "    num_output: 20\n"
                            "    kernel_size: 5\n"
                            "    stride: 1\n"
                            "    weight_filler {\n"
                            "      type: \"xavier\"\n"
                            "    }\n"
                            "    bias_filler {\n"
                            "      type: \"constant\"\n"
                            "    }\n"
                            "  }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"pool1\"\n"
                            "  type: \"Pooling\"\n"
                            "  bottom: \"conv1\"\n"
                            "  top: \"pool1\"\n"
                            "  pooling_param {\n"
                            "    pool: MAX\n"
                            "    kernel_size: 2\n"
                            "    stride: 2\n"
                            "  }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"conv2\"\n"
                            "  type: \"Convolution\"\n"
                            "  bottom: \"pool1\"\n"
                            "  top: \"conv2\"\n"
                            "  param { lr_mult: 1 }\n"
                            "  param { lr_mult: 2 }\n"
                            "  convolution_param {\n"
                            "    num_output: 50\n"
                            "    kernel_size: 5\n"
                            "    stride: 1\n"
                            "    weight_filler { type: \"xavier\" }\n"
                            "    bias_filler { type: \"constant\" }\n"
                            "  }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"pool2\"\n"
                            "  type: \"Pooling\"\n"
                            "  bottom: \"conv2\"\n"
                            "  top: \"pool2\"\n"
                            "  pooling_param { pool: MAX kernel_size: 2 stride: 2 }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"ip1\"\n"
                            "  type: \"InnerProduct\"\n"
                            "  bottom: \"pool2\"\n"
                            "  top: \"ip1\"\n"
                            "  param { lr_mult: 1 }\n"
                            "  param { lr_mult: 2 }\n"
                            "  inner_product_param {\n"
                            "    num_output: 500\n"
                            "    weight_filler { type: \"xavier\" }\n"
                            "    bias_filler { type: \"constant\" }\n"
                            "  }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"relu1\"\n"
                            "  type: \"ReLU\"\n"
                            "  bottom: \"ip1\"\n"
                            "  top: \"ip1\"\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"drop1\"\n"
                            "  type: \"Dropout\"\n"
                            "  bottom: \"ip1\"\n"
                            "  top: \"ip1\"\n"
                            "  dropout_param { dropout_ratio: 0.25 }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"ip2\"\n"
                            "  type: \"InnerProduct\"\n"
                            "  bottom: \"ip1\"\n"
                            "  top: \"ip2\"\n"
                            "  param { lr_mult: 1 }\n"
                            "  param { lr_mult: 2 }\n"
                            "  inner_product_param {\n"
                            "    num_output: 10\n"
                            "    weight_filler { type: \"xavier\" }\n"
                            "    bias_filler { type: \"constant\" }\n"
                            "  }\n"
                            "}\n"
                            "layer {\n"
                            "  name: \"prob\"\n"
                            "  type: \"Softmax\"\n"
                            "  bottom: \"ip2\"\n"
                            "  top: \"prob\"\n"
                            "  include { phase: TEST }\n"
                            "}\n";

/* ---- values of every type ---- */

static void test_every_singular_field(void **state)
{
    Ptxtest__All *m = parse_ok(ALL_DOC, ALL);
    assert_true(m->has_i32 && m->i32 == INT32_MIN);
    assert_true(m->has_i64 && m->i64 == INT64_MIN);
    assert_true(m->has_u32 && m->u32 == UINT32_MAX);
    assert_true(m->has_u64 && m->u64 == UINT64_MAX);
    assert_true(m->has_s32 && m->s32 == -5);
    assert_true(m->has_s64 && m->s64 == INT64_MAX);
    assert_true(m->has_f32 && m->f32 == UINT32_MAX);
    assert_true(m->has_f64 && m->f64 == 0);
    assert_true(m->has_sf32 && m->sf32 == -1);
    assert_true(m->has_sf64 && m->sf64 == 0777);
    assert_true(m->has_fl && m->fl == 1.5f);
    assert_true(m->has_db && m->db == -2.25e-3);
    assert_true(m->has_b && m->b == 1);
    assert_true(m->has_color && m->color == PTXTEST__COLOR__GREEN);
    assert_string_equal(m->str, "hi\n");
    assert_true(m->has_byt && m->byt.len == 2 && m->byt.data[0] == 0 && m->byt.data[1] == 1);
    assert_non_null(m->inner);
    assert_true(m->inner->has_a && m->inner->a == 3);
    assert_string_equal(m->inner->s, "x");
    assert_int_equal(m->inner->n_child, 1);
    assert_int_equal(m->inner->child[0]->a, 4);
    assert_string_equal(m->d_str, "over");
    assert_int_equal(m->choice_case, PTXTEST__ALL__CHOICE_O_MSG);
    assert_int_equal(m->o_msg->a, 9);
    assert_true(m->nested->has_x && m->nested->x == 1);
    assert_true(m->nested->has_kind && m->nested->kind == PTXTEST__ALL__NESTED__KIND__K0);
    assert_int_equal(m->n_r_nested, 1);
    assert_int_equal(m->r_nested[0]->kind, PTXTEST__ALL__NESTED__KIND__K1);
    release(m);
}

static void test_defaults_of_unset_fields(void **state)
{
    Ptxtest__All *m = parse_ok("", ALL);
    assert_false(m->has_i32 || m->has_i64 || m->has_u32 || m->has_u64 || m->has_s32 || m->has_s64 ||
                 m->has_f32 || m->has_f64 || m->has_sf32 || m->has_sf64 || m->has_fl || m->has_db ||
                 m->has_b || m->has_color || m->has_byt);
    assert_int_equal(m->i32, 0);
    assert_int_equal(m->color, PTXTEST__COLOR__RED);
    assert_null(m->str);
    assert_null(m->byt.data);
    assert_null(m->inner);
    assert_int_equal(m->n_r_i32 + m->n_r_str + m->n_r_inner + m->n_r_byt, 0);
    assert_null(m->r_i32);
    assert_null(m->r_inner);
    assert_false(m->has_d_i32 || m->has_d_u64 || m->has_d_fl || m->has_d_db || m->has_d_b ||
                 m->has_d_color || m->has_d_byt);
    assert_int_equal(m->d_i32, -7);
    assert_true(m->d_u64 == UINT64_MAX);
    assert_true(m->d_fl == 0.5f);
    assert_true(m->d_db == -2.5e10);
    assert_int_equal(m->d_b, 1);
    assert_int_equal(m->d_color, PTXTEST__COLOR__BLUE);
    assert_string_equal(m->d_str, "dflt");
    assert_ptr_equal(m->d_str, ptxtest__all__d_str__default_value);
    assert_int_equal(m->d_byt.len, 2);
    assert_ptr_equal(m->d_byt.data, ptxtest__all__d_byt__default_value_data);
    assert_int_equal(m->choice_case, PTXTEST__ALL__CHOICE__NOT_SET);
    assert_null(m->nested);
    release(m);

    /* Whitespace and comments only are an empty message too; a nested message gets its
     * own defaults. */
    m = parse_ok("  # nothing\n\t\r\n", ALL);
    release(m);
    m = parse_ok("nested {} d_str: '' d_byt: \"\" d_b: false", ALL);
    assert_false(m->nested->has_x || m->nested->has_kind);
    assert_int_equal(m->nested->kind, PTXTEST__ALL__NESTED__KIND__K1);
    assert_string_equal(m->d_str, "");
    assert_true(m->has_d_byt && m->d_byt.len == 0 && m->d_byt.data == NULL);
    assert_true(m->has_d_b && m->d_b == 0);
    release(m);
}

static void test_repeated_fields(void **state)
{
    Ptxtest__All *m = parse_ok("r_i32: 1 r_i32: [2, 3] r_i32: [] r_i32: -4\n"
                               "r_str: [\"a\", 'b'] r_str: \"c\"\n"
                               "r_inner { a: 1 } r_inner: [{a: 2}, <a: 3>] r_inner < a: 4 >\n"
                               "r_inner [] r_inner: [ { } ]\n"
                               "r_b: [true, f, 1, 0, True, False, t]\n"
                               "r_color: [RED, 2, NEGATIVE, -5]\n"
                               "r_byt: [\"\\x01\", \"\"]\n",
                               ALL);
    int32_t want_i[] = {1, 2, 3, -4};
    assert_int_equal(m->n_r_i32, 4);
    assert_memory_equal(m->r_i32, want_i, sizeof want_i);
    assert_int_equal(m->n_r_str, 3);
    assert_string_equal(m->r_str[0], "a");
    assert_string_equal(m->r_str[1], "b");
    assert_string_equal(m->r_str[2], "c");
    assert_int_equal(m->n_r_inner, 5);
    for (int i = 0; i < 4; i++) assert_int_equal(m->r_inner[i]->a, i + 1);
    assert_false(m->r_inner[4]->has_a);
    protobuf_c_boolean want_b[] = {1, 0, 1, 0, 1, 0, 1};
    assert_int_equal(m->n_r_b, 7);
    assert_memory_equal(m->r_b, want_b, sizeof want_b);
    assert_int_equal(m->n_r_color, 4);
    assert_int_equal(m->r_color[1], PTXTEST__COLOR__BLUE);
    assert_int_equal(m->r_color[2], PTXTEST__COLOR__NEGATIVE);
    assert_int_equal(m->r_color[3], PTXTEST__COLOR__NEGATIVE);
    assert_int_equal(m->n_r_byt, 2);
    assert_int_equal(m->r_byt[0].len, 1);
    assert_int_equal(m->r_byt[0].data[0], 1);
    assert_int_equal(m->r_byt[1].len, 0);
    release(m);

    /* Arrays grow past many doublings, single values and lists interleaved with other
     * fields; messages nest inside repeated messages. */
    char *doc = malloc(200000);
    assert_non_null(doc);
    size_t k = 0;
    for (int i = 0; i < 3000; i++) {
        if (i % 3 == 0)
            k += (size_t)sprintf(doc + k, "r_i32: %d r_str: 's%d'\n", i, i);
        else
            k += (size_t)sprintf(doc + k, "r_i32: [%d] r_inner { a: %d child { a: %d } }\n", i, i,
                                 -i);
    }
    m = parse_ok(doc, ALL);
    assert_int_equal(m->n_r_i32, 3000);
    assert_int_equal(m->n_r_str, 1000);
    assert_int_equal(m->n_r_inner, 2000);
    for (int i = 0; i < 3000; i++) assert_int_equal(m->r_i32[i], i);
    for (int i = 0; i < 1000; i++) {
        char want[16];
        sprintf(want, "s%d", 3 * i);
        assert_string_equal(m->r_str[i], want);
    }
    for (int i = 0, j = 0; i < 3000; i++) {
        if (i % 3 == 0) continue;
        assert_int_equal(m->r_inner[j]->a, i);
        assert_int_equal(m->r_inner[j]->child[0]->a, -i);
        j++;
    }
    release(m);
    free(doc);
}

static void test_syntax_forms(void **state)
{
    /* Each document means the same as the first. */
    static const char *const same[] = {
        "inner { a: 1 } i32: 2",
        "inner: { a: 1 } i32: 2",
        "inner < a: 1 > i32: 2",
        "inner: <a:1>i32:2",
        "inner{a:1}i32:2",
        "  inner\n{\n  a\n:\n1\n}\ni32\n:\n2\n",
        "inner { a: 1; }; i32: 2;",
        "inner { a: 1, }, i32: 2,",
        "# leading\ninner { # after brace\n a: 1 # after value\n}#no space\ni32: 2 # end",
        "inner {\r\n  a: 1\r\n}\r\ni32: 2\r\n",
        "\xef\xbb\xbfinner { a: 1 } i32: 2",
        "\tinner\t{\ta:\t1\t}\ti32:\t2",
        "inner { a: 0x1 } i32: 02",
        "inner{a:1;}i32:2;",
    };
    Ptxtest__All *first = parse_ok(same[0], ALL);
    assert_int_equal(first->inner->a, 1);
    assert_int_equal(first->i32, 2);
    for (size_t i = 1; i < sizeof same / sizeof same[0]; i++) {
        Ptxtest__All *m = parse_ok(same[i], ALL);
        assert_same_packing(first, m);
        protobuf_c_message_free_unpacked(&m->base, &g_alloc);
    }
    release(first);
    /* A sign may stand apart from its number, as TextFormat's tokenizer allows. */
    Ptxtest__All *m = parse_ok("i32: - 5 fl: -\n inf", ALL);
    assert_int_equal(m->i32, -5);
    assert_true(isinf(m->fl) && m->fl < 0);
    release(m);
}

static void test_integer_forms(void **state)
{
    static const struct {
        const char *text;
        int64_t i32, i64;
        uint64_t u64;
    } cases[] = {
        {"i32: 0 i64: 0 u64: 0", 0, 0, 0},
        {"i32: -0 i64: -0 u64: 00", 0, 0, 0},
        {"i32: 0x10 i64: -0x10 u64: 0X1f", 16, -16, 31},
        {"i32: 010 i64: -0777 u64: 01777777777777777777777", 8, -511, UINT64_MAX},
        {"i32: 2147483647 i64: 9223372036854775807 u64: 18446744073709551615", INT32_MAX, INT64_MAX,
         UINT64_MAX},
        {"i32: -2147483648 i64: -9223372036854775808 u64: 0xffffffffffffffff", INT32_MIN, INT64_MIN,
         UINT64_MAX},
        {"i32: -0x80000000 i64: -0x8000000000000000 u64: 0x0000000000000000001", INT32_MIN,
         INT64_MIN, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Ptxtest__All *m = parse_ok(cases[i].text, ALL);
        assert_int_equal(m->i32, cases[i].i32);
        assert_true(m->i64 == cases[i].i64);
        assert_true(m->u64 == cases[i].u64);
        release(m);
    }
    /* Every integer type at both ends of its range. */
    Ptxtest__All *m = parse_ok("u32: 4294967295 s32: -2147483648 s64: -9223372036854775808 "
                               "f32: 4294967295 f64: 18446744073709551615 sf32: 2147483647 "
                               "sf64: 9223372036854775807 r_u32: 0 r_f32: 0 r_s32: 2147483647",
                               ALL);
    assert_true(m->u32 == UINT32_MAX && m->s32 == INT32_MIN && m->s64 == INT64_MIN);
    assert_true(m->f32 == UINT32_MAX && m->f64 == UINT64_MAX && m->sf32 == INT32_MAX);
    assert_true(m->sf64 == INT64_MAX && m->r_u32[0] == 0 && m->r_f32[0] == 0);
    assert_true(m->r_s32[0] == INT32_MAX);
    release(m);
}

static void test_float_forms(void **state)
{
    static const struct {
        const char *v;
        double want; /* 99 stands for nan */
    } cases[] = {
        {"1", 1},
        {"0", 0},
        {"1.5", 1.5},
        {"-2.5e-3", -2.5e-3},
        {".5", 0.5},
        {"5.", 5},
        {"1e3", 1e3},
        {"1E+3", 1e3},
        {"1.5f", 1.5},
        {"2F", 2},
        {"-.25", -0.25},
        {"3.e1", 30},
        {"inf", INFINITY},
        {"-inf", -INFINITY},
        {"Infinity", INFINITY},
        {"-INF", -INFINITY},
        {"nan", 99},
        {"NaN", 99},
        {"-nan", 99},
        {"1e400", INFINITY},
        {"-1e400", -INFINITY},
        {"1e-400", 0},
        {"123456789012345678901234567890", 123456789012345678901234567890.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char doc[256];
        snprintf(doc, sizeof doc, "db: %s fl: %s r_fl: [%s, %s]", cases[i].v, cases[i].v,
                 cases[i].v, cases[i].v);
        Ptxtest__All *m = parse_ok(doc, ALL);
        double w = cases[i].want;
        if (w == 99) {
            assert_true(isnan(m->db) && isnan(m->fl) && isnan(m->r_fl[1]));
        } else {
            if (m->db != w) print_error("%s -> %g\n", cases[i].v, m->db);
            assert_true(m->db == w);
            assert_true(m->fl == (float)w);
            assert_true(m->r_fl[0] == (float)w);
        }
        release(m);
    }
    /* Beyond float's range the float field becomes infinite (TextFormat's rule), the double
     * field keeps it. */
    Ptxtest__All *m = parse_ok("fl: 1e39 db: 1e39 r_fl: -3.5e38", ALL);
    assert_true(isinf(m->fl) && m->fl > 0);
    assert_true(m->db == 1e39);
    assert_true(isinf(m->r_fl[0]) && m->r_fl[0] < 0);
    release(m);
}

static void test_bool_and_enum_forms(void **state)
{
    static const struct {
        const char *v;
        int want;
    } bools[] = {{"true", 1},  {"True", 1},  {"t", 1}, {"1", 1}, {"0x1", 1},
                 {"false", 0}, {"False", 0}, {"f", 0}, {"0", 0}, {"00", 0}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        char doc[64];
        snprintf(doc, sizeof doc, "b: %s", bools[i].v);
        Ptxtest__All *m = parse_ok(doc, ALL);
        assert_true(m->has_b);
        assert_int_equal(m->b, bools[i].want);
        release(m);
    }
    Ptxtest__All *m = parse_ok("color: NEGATIVE d_color: 1 r_color: [-5, BLUE, 0x2] "
                               "nested { kind: K0 } r_nested { kind: 1 }",
                               ALL);
    assert_int_equal(m->color, PTXTEST__COLOR__NEGATIVE);
    assert_true(m->has_d_color && m->d_color == PTXTEST__COLOR__GREEN);
    assert_int_equal(m->r_color[0], PTXTEST__COLOR__NEGATIVE);
    assert_int_equal(m->r_color[1], PTXTEST__COLOR__BLUE);
    assert_int_equal(m->r_color[2], PTXTEST__COLOR__BLUE);
    assert_int_equal(m->nested->kind, PTXTEST__ALL__NESTED__KIND__K0);
    assert_int_equal(m->r_nested[0]->kind, PTXTEST__ALL__NESTED__KIND__K1);
    release(m);
}

static void test_strings_and_bytes(void **state)
{
    Ptxtest__All *m = parse_ok("str: \"\\n\\t\\\\\\'\\\"\\r\\a\\b\\f\\v\\?\"", ALL);
    assert_string_equal(m->str, "\n\t\\'\"\r\a\b\f\v?");
    release(m);
    m = parse_ok("str: \"\\101\\0601\\7\\x41\\x4a\\x4\\x414\"", ALL);
    assert_string_equal(m->str, "A01\a"
                                "AJ\x04"
                                "A4");
    release(m);
    /* Adjacent literals join, across lines and comments, in either quote. */
    m = parse_ok("str: \"ab\" 'cd' \"\" # comment\n  \"e'\" '\"f' r_str: 'x' \"y\" r_str: ''", ALL);
    assert_string_equal(m->str, "abcde'\"f");
    assert_int_equal(m->n_r_str, 2);
    assert_string_equal(m->r_str[0], "xy");
    assert_string_equal(m->r_str[1], "");
    release(m);
    /* Bytes hold zeros; raw UTF-8 and other bytes pass through. */
    m = parse_ok("byt: \"a\\0b\" '\\000' str: \"h\xc3\xa9llo \x01\x7f\xff\"", ALL);
    assert_int_equal(m->byt.len, 4);
    assert_memory_equal(m->byt.data, "a\0b\0", 4);
    assert_string_equal(m->str, "h\xc3\xa9llo \x01\x7f\xff");
    release(m);
    m = parse_ok("byt: '' r_byt: '\\xff\\x00' r_byt: \"\" \"\"", ALL);
    assert_true(m->has_byt && m->byt.len == 0 && m->byt.data == NULL);
    assert_int_equal(m->n_r_byt, 2);
    assert_int_equal(m->r_byt[0].len, 2);
    assert_memory_equal(m->r_byt[0].data, "\xff\x00", 2);
    assert_int_equal(m->r_byt[1].len, 0);
    release(m);
}

static void test_oneof_and_required(void **state)
{
    Ptxtest__All *m = parse_ok("o_int: 5", ALL);
    assert_int_equal(m->choice_case, PTXTEST__ALL__CHOICE_O_INT);
    assert_int_equal(m->o_int, 5);
    release(m);
    m = parse_ok("o_str: 'hello'", ALL);
    assert_int_equal(m->choice_case, PTXTEST__ALL__CHOICE_O_STR);
    assert_string_equal(m->o_str, "hello");
    release(m);
    m = parse_ok("o_msg < a: 2 s: 'q' >", ALL);
    assert_int_equal(m->choice_case, PTXTEST__ALL__CHOICE_O_MSG);
    assert_string_equal(m->o_msg->s, "q");
    release(m);

    Ptxtest__Req *r =
        parse_ok("name: 'a' id: 1 next { id: 2 name: 'b' next { name: 'c' id: 3 } }", REQ);
    assert_int_equal(r->id, 1);
    assert_string_equal(r->next->next->name, "c");
    release(r);
}

/* A message with more fields than parse_body tracks on the stack. */
static void test_huge_message(void **state)
{
    Ptxtest__Huge *h = parse_ok("h000: 1 h599: 2 h511: 3 h512: 4 h598: 5", HUGE_);
    assert_true(h->h000 == 1 && h->h599 == 2 && h->h511 == 3 && h->h512 == 4 && h->h598 == 5);
    assert_true(h->has_h512 && !h->has_h513);
    release(h);
    expect_error("h599: 1 h598: 1 h599: 2", HUGE_,
                 "t.prototxt:1:17: expected field 'h599' of ptxtest.Huge at most once (it is not "
                 "repeated), found it again");
    expect_error(
        "h000: 1", HUGE_,
        "t.prototxt:1:8: expected required field 'h599' of ptxtest.Huge, found end of input");
}

/* ---- round trips through protobuf-c's packer ---- */

static void test_round_trip(void **state)
{
    /* ALL_DOC built by hand. */
    Ptxtest__All a = PTXTEST__ALL__INIT;
    Ptxtest__Inner inner = PTXTEST__INNER__INIT, child = PTXTEST__INNER__INIT;
    Ptxtest__Inner ri[3] = {PTXTEST__INNER__INIT, PTXTEST__INNER__INIT, PTXTEST__INNER__INIT};
    Ptxtest__Inner *ri_p[3] = {&ri[0], &ri[1], &ri[2]}, *child_p = &child,
                   om = PTXTEST__INNER__INIT;
    Ptxtest__All__Nested nested = PTXTEST__ALL__NESTED__INIT, rn = PTXTEST__ALL__NESTED__INIT;
    Ptxtest__All__Nested *rn_p = &rn;
    a.has_i32 = 1, a.i32 = INT32_MIN;
    a.has_i64 = 1, a.i64 = INT64_MIN;
    a.has_u32 = 1, a.u32 = UINT32_MAX;
    a.has_u64 = 1, a.u64 = UINT64_MAX;
    a.has_s32 = 1, a.s32 = -5;
    a.has_s64 = 1, a.s64 = INT64_MAX;
    a.has_f32 = 1, a.f32 = UINT32_MAX;
    a.has_f64 = 1, a.f64 = 0;
    a.has_sf32 = 1, a.sf32 = -1;
    a.has_sf64 = 1, a.sf64 = 511;
    a.has_fl = 1, a.fl = 1.5f;
    a.has_db = 1, a.db = -2.25e-3;
    a.has_b = 1, a.b = 1;
    a.has_color = 1, a.color = PTXTEST__COLOR__GREEN;
    a.str = "hi\n";
    a.has_byt = 1, a.byt.len = 2, a.byt.data = (uint8_t *)"\0\1";
    inner.has_a = 1, inner.a = 3, inner.s = "x";
    child.has_a = 1, child.a = 4;
    inner.n_child = 1, inner.child = &child_p;
    a.inner = &inner;
    int32_t r_i32[] = {1, -2, 3};
    int64_t r_i64[] = {-1}, r_s64[] = {-4}, r_sf64[] = {-8};
    uint32_t r_u32[] = {0, 1}, r_f32[] = {5};
    uint64_t r_u64[] = {UINT64_MAX}, r_f64[] = {6};
    int32_t r_s32[] = {-3}, r_sf32[] = {-7}, r_packed[] = {7, 8, 9};
    float r_fl[] = {0.25f, -1};
    double r_db[] = {1e10};
    protobuf_c_boolean r_b[] = {1, 0, 1, 0};
    Ptxtest__Color r_color[] = {PTXTEST__COLOR__BLUE, PTXTEST__COLOR__RED,
                                PTXTEST__COLOR__NEGATIVE};
    char *r_str[] = {"a", "bc"};
    ProtobufCBinaryData r_byt[] = {{1, (uint8_t *)"\xff"}, {0, NULL}};
#define SET_REP(f) (a.n_##f = sizeof f / sizeof f[0], a.f = f)
    SET_REP(r_i32), SET_REP(r_i64), SET_REP(r_u32), SET_REP(r_u64), SET_REP(r_s32);
    SET_REP(r_s64), SET_REP(r_f32), SET_REP(r_f64), SET_REP(r_sf32), SET_REP(r_sf64);
    SET_REP(r_fl), SET_REP(r_db), SET_REP(r_b), SET_REP(r_color), SET_REP(r_str);
    SET_REP(r_byt), SET_REP(r_packed);
#undef SET_REP
    ri[0].has_a = 1, ri[0].a = 1;
    ri[1].s = "y";
    a.n_r_inner = 3, a.r_inner = ri_p;
    a.d_str = "over";
    om.has_a = 1, om.a = 9;
    a.choice_case = PTXTEST__ALL__CHOICE_O_MSG, a.o_msg = &om;
    nested.has_x = 1, nested.x = 1, nested.has_kind = 1,
    nested.kind = PTXTEST__ALL__NESTED__KIND__K0;
    a.nested = &nested;
    rn.has_kind = 1, rn.kind = PTXTEST__ALL__NESTED__KIND__K1;
    a.n_r_nested = 1, a.r_nested = &rn_p;

    Ptxtest__All *m = parse_ok(ALL_DOC, ALL);
    assert_same_packing(&a, m);
    /* And what protobuf-c unpacks from the packing is what the text gave. */
    size_t n;
    uint8_t *buf = pack(m, &n);
    ProtobufCMessage *u = protobuf_c_message_unpack(ALL, &g_alloc, n, buf);
    assert_non_null(u);
    assert_same_packing(m, u);
    protobuf_c_message_free_unpacked(u, &g_alloc);
    free(buf);
    release(m);
}

static void test_caffe_lenet(void **state)
{
    Ptxtest__NetParameter *net = parse_ok(LENET, NET);
    assert_string_equal(net->name, "LeNet");
    assert_int_equal(net->n_layer, 10);
    static const char *const names[] = {"data", "conv1", "pool1", "conv2", "pool2",
                                        "ip1",  "relu1", "drop1", "ip2",   "prob"};
    for (int i = 0; i < 10; i++) assert_string_equal(net->layer[i]->name, names[i]);
    Ptxtest__LayerParameter *data = net->layer[0], *conv1 = net->layer[1], *pool1 = net->layer[2];
    assert_int_equal(data->input_param->n_shape, 1);
    int64_t dims[] = {64, 1, 28, 28};
    assert_int_equal(data->input_param->shape[0]->n_dim, 4);
    assert_memory_equal(data->input_param->shape[0]->dim, dims, sizeof dims);
    assert_string_equal(conv1->type, "Convolution");
    assert_int_equal(conv1->n_bottom, 1);
    assert_string_equal(conv1->bottom[0], "data");
    assert_int_equal(conv1->n_param, 2);
    assert_true(conv1->param[1]->lr_mult == 2.0f && conv1->param[1]->decay_mult == 1.0f);
    Ptxtest__ConvolutionParameter *cp = conv1->convolution_param;
    assert_int_equal(cp->num_output, 20);
    assert_int_equal(cp->n_kernel_size, 1);
    assert_int_equal(cp->kernel_size[0], 5);
    assert_int_equal(cp->n_pad, 0);
    assert_true(cp->bias_term && !cp->has_bias_term && cp->group == 1);
    assert_string_equal(cp->weight_filler->type, "xavier");
    assert_true(cp->weight_filler->std == 1.0f);
    assert_int_equal(pool1->pooling_param->pool, PTXTEST__POOLING_PARAMETER__POOL_METHOD__MAX);
    assert_true(pool1->pooling_param->has_pool);
    assert_int_equal(pool1->pooling_param->stride, 2);
    assert_true(net->layer[7]->dropout_param->dropout_ratio == 0.25f);
    assert_int_equal(net->layer[8]->inner_product_param->num_output, 10);
    assert_int_equal(net->layer[9]->n_include, 1);
    assert_int_equal(net->layer[9]->include[0]->phase, PTXTEST__PHASE__TEST);
    /* Through the binary form and back, as a caffemodel would hold it. */
    size_t n;
    uint8_t *buf = pack(net, &n);
    ProtobufCMessage *u = protobuf_c_message_unpack(NET, &g_alloc, n, buf);
    assert_non_null(u);
    assert_same_packing(net, u);
    protobuf_c_message_free_unpacked(u, &g_alloc);
    free(buf);
    release(net);

    /* The old input form. */
    net = parse_ok("name: 'old'\ninput: \"data\"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 224\n"
                   "input_dim: 224\ninput_shape { dim: [1, 3, 224, 224] }\n",
                   NET);
    assert_int_equal(net->n_input, 1);
    assert_int_equal(net->n_input_dim, 4);
    assert_int_equal(net->input_dim[2], 224);
    assert_int_equal(net->input_shape[0]->dim[3], 224);
    release(net);
}

/* ---- errors ---- */

static void test_malformed_inputs(void **state)
{
    static const struct {
        const ProtobufCMessageDescriptor *d;
        const char *text, *want;
    } cases[] = {
        /* braces and brackets */
        {ALL, "i32: 1\ninner {\n  a: 2\n",
         "t.prototxt:4:1: expected '}' to close the '{' at 2:7, found end of input"},
        {ALL, "inner { a: 1 >", "t.prototxt:1:14: expected '}' to close the '{' at 1:7, found '>'"},
        {ALL, "inner < a: 1 }", "t.prototxt:1:14: expected '>' to close the '<' at 1:7, found '}'"},
        {ALL, "i32: 1 }", "t.prototxt:1:8: expected a field name, found '}' (no '{' is open)"},
        {ALL, "i32: 1 >", "t.prototxt:1:8: expected a field name, found '>' (no '<' is open)"},
        {ALL, "inner { child { a: 1 }\n",
         "t.prototxt:2:1: expected '}' to close the '{' at 1:7, found end of input"},
        {ALL, "r_i32: [1, 2",
         "t.prototxt:1:13: expected ',' or ']' in the list of field 'r_i32' opened at 1:8, found "
         "end of input"},
        {ALL, "r_i32: [1 2]",
         "t.prototxt:1:11: expected ',' or ']' in the list of field 'r_i32' opened at 1:8, found "
         "'2'"},
        {ALL, "r_i32: [1, ]",
         "t.prototxt:1:12: expected an integer for field 'r_i32' (int32) of ptxtest.All, found "
         "']'"},
        {ALL, "r_inner: [{a: 1} {a: 2}]",
         "t.prototxt:1:18: expected ',' or ']' in the list of field 'r_inner' opened at 1:10, "
         "found '{'"},
        {ALL, "r_inner: [{a: 1},]",
         "t.prototxt:1:18: expected '{' or '<' to open field 'r_inner' (ptxtest.Inner) of "
         "ptxtest.All, found ']'"},
        {ALL, "i32: [1]",
         "t.prototxt:1:6: expected a single value for field 'i32' of ptxtest.All, found a list "
         "(the "
         "field is not repeated)"},
        {ALL, "inner: [{}]",
         "t.prototxt:1:8: expected a single value for field 'inner' of ptxtest.All, found a list "
         "(the "
         "field is not repeated)"},
        /* field names */
        {ALL, "nmae: 1", "t.prototxt:1:1: unknown field 'nmae' in ptxtest.All"},
        {ALL, "inner {\n  b: 1\n}", "t.prototxt:2:3: unknown field 'b' in ptxtest.Inner"},
        {NET, "layer {\n  convolution_param {\n    kernel_sise: 3\n  }\n}",
         "t.prototxt:3:5: unknown field 'kernel_sise' in ptxtest.ConvolutionParameter"},
        {ALL, "I32: 1", "t.prototxt:1:1: unknown field 'I32' in ptxtest.All"},
        {ALL, "i3: 1", "t.prototxt:1:1: unknown field 'i3' in ptxtest.All"},
        {ALL, "i320: 1", "t.prototxt:1:1: unknown field 'i320' in ptxtest.All"},
        {ALL, "[ext.field]: 1",
         "t.prototxt:1:1: expected a field name, found '[' (extension and Any fields are not "
         "supported)"},
        {ALL, "i32: 1,, i64: 2", "t.prototxt:1:8: expected a field name, found ','"},
        {ALL, "- 5", "t.prototxt:1:1: expected a field name, found '-'"},
        {ALL, "\"str\": 1", "t.prototxt:1:1: expected a field name, found \"str\""},
        {ALL, "5: 1", "t.prototxt:1:1: expected a field name, found '5'"},
        {ALL, "i32 1", "t.prototxt:1:5: expected ':' after field 'i32', found '1'"},
        {ALL, "r_i32 [1]", "t.prototxt:1:7: expected ':' after field 'r_i32', found '['"},
        {ALL, "i32 { }", "t.prototxt:1:5: expected ':' after field 'i32', found '{'"},
        {ALL, "inner: 5",
         "t.prototxt:1:8: expected '{' or '<' to open field 'inner' (ptxtest.Inner) of "
         "ptxtest.All, found '5'"},
        {ALL, "inner",
         "t.prototxt:1:6: expected '{' or '<' to open field 'inner' (ptxtest.Inner) of "
         "ptxtest.All, found end of input"},
        /* repeats, oneofs, required fields */
        {ALL, "i32: 1 i32: 2",
         "t.prototxt:1:8: expected field 'i32' of ptxtest.All at most once (it is not repeated), "
         "found it again"},
        {ALL, "inner {} inner {}",
         "t.prototxt:1:10: expected field 'inner' of ptxtest.All at most once (it is not "
         "repeated), found it again"},
        {ALL, "str: 'a'\nstr: 'b'",
         "t.prototxt:2:1: expected field 'str' of ptxtest.All at most once (it is not repeated), "
         "found it again"},
        {ALL, "o_int: 1 o_str: 'a'",
         "t.prototxt:1:10: expected one field of a oneof in ptxtest.All, found 'o_str' after "
         "'o_int'"},
        {ALL, "o_msg {} o_int: 1",
         "t.prototxt:1:10: expected one field of a oneof in ptxtest.All, found 'o_int' after "
         "'o_msg'"},
        {REQ, "id: 1",
         "t.prototxt:1:6: expected required field 'name' of ptxtest.Req, found end of input"},
        {REQ, "",
         "t.prototxt:1:1: expected required field 'id' of ptxtest.Req, found end of input"},
        {REQ, "id: 1 name: 'a' next { id: 2 }",
         "t.prototxt:1:30: expected required field 'name' of ptxtest.Req (opened at 1:22), found "
         "'}'"},
        /* integers */
        {ALL, "i32: \"5\"",
         "t.prototxt:1:6: expected an integer for field 'i32' (int32) of ptxtest.All, found \"5\""},
        {ALL, "i32: 1.5",
         "t.prototxt:1:6: expected an integer for field 'i32' (int32) of ptxtest.All, found '1.5'"},
        {ALL, "i32: 1e3",
         "t.prototxt:1:6: expected an integer for field 'i32' (int32) of ptxtest.All, found '1e3'"},
        {ALL, "i32: abc",
         "t.prototxt:1:6: expected an integer for field 'i32' (int32) of ptxtest.All, found 'abc'"},
        {ALL, "i32:",
         "t.prototxt:1:5: expected an integer for field 'i32' (int32) of ptxtest.All, found end of "
         "input"},
        {ALL, "i32: -",
         "t.prototxt:1:7: expected an integer for field 'i32' (int32) of ptxtest.All, found end of "
         "input"},
        {ALL, "i32: --1",
         "t.prototxt:1:7: expected an integer for field 'i32' (int32) of ptxtest.All, found '-'"},
        {ALL, "i32: 2147483648",
         "t.prototxt:1:6: expected a value from -2147483648 to 2147483647 for field 'i32' (int32) "
         "of "
         "ptxtest.All, found 2147483648"},
        {ALL, "i32: -2147483649",
         "t.prototxt:1:6: expected a value from -2147483648 to 2147483647 for field 'i32' (int32) "
         "of "
         "ptxtest.All, found -2147483649"},
        {ALL, "sf32: 0x80000000",
         "t.prototxt:1:7: expected a value from -2147483648 to 2147483647 for field 'sf32' "
         "(sfixed32) of "
         "ptxtest.All, found 0x80000000"},
        {ALL, "s32: -0x80000001",
         "t.prototxt:1:6: expected a value from -2147483648 to 2147483647 for field 's32' (sint32) "
         "of "
         "ptxtest.All, found -0x80000001"},
        {ALL, "i64: -9223372036854775809",
         "t.prototxt:1:6: expected a value from -9223372036854775808 to 9223372036854775807 for "
         "field "
         "'i64' (int64) of ptxtest.All, found -9223372036854775809"},
        {ALL, "sf64: 9223372036854775808",
         "t.prototxt:1:7: expected a value from -9223372036854775808 to 9223372036854775807 for "
         "field "
         "'sf64' (sfixed64) of ptxtest.All, found 9223372036854775808"},
        {ALL, "u32: 4294967296",
         "t.prototxt:1:6: expected a value from 0 to 4294967295 for field 'u32' (uint32) of "
         "ptxtest.All, "
         "found 4294967296"},
        {ALL, "f32: 0x100000000",
         "t.prototxt:1:6: expected a value from 0 to 4294967295 for field 'f32' (fixed32) of "
         "ptxtest.All, "
         "found 0x100000000"},
        {ALL, "u64: 18446744073709551616",
         "t.prototxt:1:6: expected a value from 0 to 18446744073709551615 for field 'u64' (uint64) "
         "of "
         "ptxtest.All, found 18446744073709551616"},
        {ALL, "f64: 0x10000000000000000",
         "t.prototxt:1:6: expected a value from 0 to 18446744073709551615 for field 'f64' "
         "(fixed64) of "
         "ptxtest.All, found 0x10000000000000000"},
        {ALL, "r_i64: 99999999999999999999999999",
         "t.prototxt:1:8: expected a value from -9223372036854775808 to 9223372036854775807 for "
         "field "
         "'r_i64' (int64) of ptxtest.All, found 99999999999999999999999999"},
        {ALL, "u32: -1",
         "t.prototxt:1:6: expected a non-negative integer for field 'u32' (uint32) of ptxtest.All, "
         "found '-'"},
        {ALL, "r_u64: [1, -0]",
         "t.prototxt:1:12: expected a non-negative integer for field 'r_u64' (uint64) of "
         "ptxtest.All, found '-'"},
        {ALL, "i32: 12abc", "t.prototxt:1:6: expected a number, found '12abc'"},
        {ALL, "i32: 09",
         "t.prototxt:1:6: expected a number, found '09' (a leading 0 makes it octal)"},
        {ALL, "i32: 0x", "t.prototxt:1:6: expected a number, found '0x'"},
        {ALL, "i32: 0xg", "t.prototxt:1:6: expected a number, found '0xg'"},
        {ALL, "fl: 1e", "t.prototxt:1:5: expected a number, found '1e'"},
        {ALL, "fl: 1.5.2", "t.prototxt:1:5: expected a number, found '1.5.2'"},
        {ALL, "fl: 1e+", "t.prototxt:1:5: expected a number, found '1e+'"},
        {ALL, "fl: 1.5ff", "t.prototxt:1:5: expected a number, found '1.5ff'"},
        {ALL, "i32: 123456789012345678901234567890123456789",
         "t.prototxt:1:6: expected a value from -2147483648 to 2147483647 for field 'i32' (int32) "
         "of "
         "ptxtest.All, found 123456789012345678901234567890123456789"},
        /* floats */
        {ALL, "fl: abc",
         "t.prototxt:1:5: expected a number for field 'fl' (float) of ptxtest.All, found 'abc'"},
        {ALL, "db: 0x10",
         "t.prototxt:1:5: expected a decimal number for field 'db' (double) of ptxtest.All, found "
         "'0x10'"},
        {ALL, "db: 010",
         "t.prototxt:1:5: expected a decimal number for field 'db' (double) of ptxtest.All, found "
         "'010'"},
        {ALL,
         "db: "
         "0."
         "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
         "00000000000000000000000000000000000001",
         "t.prototxt:1:5: expected a number of at most 127 characters for field 'db' (double) of "
         "ptxtest.All, found '0.000000000000000000000000000000...'"},
        {ALL, "db: --1",
         "t.prototxt:1:6: expected a number for field 'db' (double) of ptxtest.All, found '-'"},
        {ALL, "r_db: ['1']",
         "t.prototxt:1:8: expected a number for field 'r_db' (double) of ptxtest.All, found '1'"},
        {ALL, "db: infinite",
         "t.prototxt:1:5: expected a number for field 'db' (double) of ptxtest.All, found "
         "'infinite'"},
        /* bools and enums */
        {ALL, "b: yes",
         "t.prototxt:1:4: expected true, false, 1 or 0 for field 'b' (bool) of ptxtest.All, found "
         "'yes'"},
        {ALL, "b: 99999999999999999999999",
         "t.prototxt:1:4: expected true, false, 1 or 0 for field 'b' (bool) of ptxtest.All, found "
         "'99999999999999999999999'"},
        {ALL, "wordy: A_RATHER_LONG_VALUE_NAME_40",
         "t.prototxt:1:8: expected a value of enum ptxtest.Wordy (A_RATHER_LONG_VALUE_NAME_00, "
         "A_RATHER_LONG_VALUE_NAME_01, A_RATHER_LONG_VALUE_NAME_02, A_RATHER_LONG_VALUE_NAME_03, "
         "A_RATHER_LONG_VALUE_NAME_04, A_RATHER_LONG_VALUE_NAME_05, A_RATHER_LONG_VALUE_NAME_06, "
         "A_RATHER_LONG_VALUE_NAME_07, ...) for field 'wordy' of "
         "ptxtest.All, found 'A_RATHER_LONG_VALUE_NAME_40'"},
        {ALL, "b: 2",
         "t.prototxt:1:4: expected true, false, 1 or 0 for field 'b' (bool) of ptxtest.All, found "
         "'2'"},
        {ALL, "b: TRUE",
         "t.prototxt:1:4: expected true, false, 1 or 0 for field 'b' (bool) of ptxtest.All, found "
         "'TRUE'"},
        {ALL, "r_b: [1, -1]",
         "t.prototxt:1:10: expected true, false, 1 or 0 for field 'r_b' (bool) of ptxtest.All, "
         "found '-'"},
        {ALL, "color: PURPLE",
         "t.prototxt:1:8: expected a value of enum ptxtest.Color (NEGATIVE, RED, GREEN, BLUE) for "
         "field "
         "'color' of ptxtest.All, found 'PURPLE'"},
        {ALL, "color: red",
         "t.prototxt:1:8: expected a value of enum ptxtest.Color (NEGATIVE, RED, GREEN, BLUE) for "
         "field "
         "'color' of ptxtest.All, found 'red'"},
        {ALL, "nested { kind: K2 }",
         "t.prototxt:1:16: expected a value of enum ptxtest.All.Nested.Kind (K0, K1) for field "
         "'kind' "
         "of ptxtest.All.Nested, found 'K2'"},
        {ALL, "color: 7",
         "t.prototxt:1:8: expected a value of enum ptxtest.Color for field 'color' of ptxtest.All, "
         "found "
         "7 (no value has that number)"},
        {ALL, "r_color: [-4]",
         "t.prototxt:1:11: expected a value of enum ptxtest.Color for field 'r_color' of "
         "ptxtest.All, "
         "found -4 (no value has that number)"},
        {ALL, "color: 4294967296",
         "t.prototxt:1:8: expected a value from -2147483648 to 2147483647 for field 'color' (enum) "
         "of "
         "ptxtest.All, found 4294967296"},
        {ALL, "color: \"RED\"",
         "t.prototxt:1:8: expected an enum value name or number for field 'color' (enum) of "
         "ptxtest.All, "
         "found \"RED\""},
        {ALL, "color: 1.0",
         "t.prototxt:1:8: expected an enum value name or number for field 'color' (enum) of "
         "ptxtest.All, "
         "found '1.0'"},
        {ALL, "color: -",
         "t.prototxt:1:9: expected an integer for field 'color' (enum) of ptxtest.All, found end "
         "of input"},
        /* strings */
        {ALL, "str: abc",
         "t.prototxt:1:6: expected a quoted string for field 'str' (string) of ptxtest.All, found "
         "'abc'"},
        {ALL, "byt: 12",
         "t.prototxt:1:6: expected a quoted string for field 'byt' (bytes) of ptxtest.All, found "
         "'12'"},
        {ALL, "str: \"abc",
         "t.prototxt:1:6: expected a closing \" for the string that starts here, found end of "
         "input"},
        {ALL, "str: 'abc\n'",
         "t.prototxt:1:6: expected a closing ' for the string that starts here, found end of line"},
        {ALL, "str: 'a' \"b",
         "t.prototxt:1:10: expected a closing \" for the string that starts here, found end of "
         "input"},
        {ALL, "str: \"\\",
         "t.prototxt:1:6: expected a closing \" for the string that starts here, found end of "
         "input"},
        {ALL, "str: \"a\\\nb\"",
         "t.prototxt:1:6: expected a closing \" for the string that starts here, found end of "
         "line"},
        {ALL, "str: \"a\\\"",
         "t.prototxt:1:6: expected a closing \" for the string that starts here, found end of "
         "input"},
        {ALL, "str: \"a\\qb\"",
         "t.prototxt:1:8: expected an escape such as \\n, \\\\, \\\", \\NNN or \\xHH, found \\q"},
        {ALL, "str: 'ok' \"\\u00e9\"",
         "t.prototxt:1:12: expected an escape such as \\n, \\\\, \\\", \\NNN or \\xHH, found \\u"},
        {ALL, "str: \"\\\xc3\xa9\"",
         "t.prototxt:1:7: expected an escape such as \\n, \\\\, \\\", \\NNN or \\xHH, found \\ and "
         "byte 0xc3"},
        {ALL, "str: \"\\xg\"",
         "t.prototxt:1:7: expected hex digits after \\x, found another character"},
        {ALL, "str: \"\\x\"",
         "t.prototxt:1:7: expected hex digits after \\x, found the end of the string"},
        {ALL, "str: \"\\400\"",
         "t.prototxt:1:7: expected an octal escape up to \\377, found \\400"},
        {ALL, "str: \"a\\0b\"",
         "t.prototxt:1:6: expected a string without zero bytes for field 'str' of ptxtest.All, "
         "found one "
         "with \\0 (a string field is a C string here; bytes fields may hold zeros)"},
        {ALL, "r_str: ['a', \"b\" 'c\\x00']",
         "t.prototxt:1:14: expected a string without zero bytes for field 'r_str' of ptxtest.All, "
         "found one "
         "with \\0 (a string field is a C string here; bytes fields may hold zeros)"},
        {ALL, "i32: 123456789012345678901234567890123456789012345678901234567890.0",
         "t.prototxt:1:6: expected an integer for field 'i32' (int32) of ptxtest.All, found "
         "'12345678901234567890123456789012...'"},
        {ALL, "i32: \"0123456789012345678901234567890123456789\"",
         "t.prototxt:1:6: expected an integer for field 'i32' (int32) of ptxtest.All, found "
         "\"0123456789012345678901234567890...\""},
        /* garbage */
        {ALL, "i32: 1 @", "t.prototxt:1:8: expected a field, a value or a delimiter, found '@'"},
        {ALL, "i32: 1\n\x01",
         "t.prototxt:2:1: expected a field, a value or a delimiter, found byte 0x01"},
        {ALL, "i32:\xff",
         "t.prototxt:1:5: expected a field, a value or a delimiter, found byte 0xff"},
        {ALL, "inner.a: 1", "t.prototxt:1:6: expected a field, a value or a delimiter, found '.'"},
        {ALL, "// comment\ni32: 1",
         "t.prototxt:1:1: expected a field, a value or a delimiter, found '/'"},
        {ALL, "\xef\xbb\xbfi32: x",
         "t.prototxt:1:6: expected an integer for field 'i32' (int32) of ptxtest.All, found 'x'"},
        {ALL, "\ti32:\tx",
         "t.prototxt:1:7: expected an integer for field 'i32' (int32) of ptxtest.All, found 'x'"},
        {ALL, "i32: 1 # ok\r\n\r\n  i64: y",
         "t.prototxt:3:8: expected an integer for field 'i64' (int64) of ptxtest.All, found 'y'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_error(cases[i].text, cases[i].d, cases[i].want);
    /* A zero byte in the text is garbage too. */
    expect_error_n("i32: 1\0", 7, ALL,
                   "t.prototxt:1:7: expected a field, a value or a delimiter, found byte 0x00");
}

static void test_limits(void **state)
{
    /* PROTOTXT_MAX_DEPTH levels are fine, one more is not. */
    char *doc = malloc(8 * 102 + 110);
    assert_non_null(doc);
    for (int levels = 100; levels <= 101; levels++) {
        size_t k = (size_t)sprintf(doc, "inner { ");
        for (int i = 1; i < levels; i++) k += (size_t)sprintf(doc + k, "child { ");
        for (int i = 0; i < levels; i++) doc[k++] = '}';
        doc[k] = '\0';
        if (levels == 100) {
            Ptxtest__All *m = parse_ok(doc, ALL);
            Ptxtest__Inner *in = m->inner;
            for (int i = 1; i < levels; i++) in = in->child[0];
            assert_int_equal(in->n_child, 0);
            release(m);
        } else {
            /* The 101st '{' is child number 100's: 8 + 8 * 99 + 7 = 807. */
            expect_error(
                doc, ALL,
                "t.prototxt:1:807: expected messages nested at most 100 deep, found deeper ones");
        }
    }
    free(doc);

    /* Small documents of big messages stop at PROTOTXT_MAX_BYTES. */
    size_t count = PROTOTXT_MAX_BYTES / sizeof(Ptxtest__Wide) + 1000;
    doc = malloc(count * 3 + 16);
    assert_non_null(doc);
    size_t k = (size_t)sprintf(doc, "w: [");
    for (size_t i = 0; i < count; i++) memcpy(doc + k + 3 * i, "{},", 3);
    k += 3 * count - 1;
    strcpy(doc + k, "]");
    ProtobufCMessage *m;
    assert_int_equal(parse_n(doc, strlen(doc), BIG, &m), KILN_ERR_PARSE);
    assert_null(m);
    assert_int_equal(g_live, 0);
    assert_non_null(strstr(kiln_last_error(),
                           "expected a document that fits in 256 MiB, found one that needs more"));
    assert_true(strncmp(kiln_last_error(), "t.prototxt:1:", 13) == 0);
    free(doc);

    /* A long list of numbers below the limit. */
    count = 1000000;
    doc = malloc(count * 2 + 16);
    assert_non_null(doc);
    k = (size_t)sprintf(doc, "d: [");
    for (size_t i = 0; i < count; i++) memcpy(doc + k + 2 * i, i % 2 ? "1," : "0,", 2);
    k += 2 * count - 1;
    strcpy(doc + k, "]");
    Ptxtest__Big *big = parse_ok(doc, BIG);
    assert_int_equal(big->n_d, count);
    for (size_t i = 0; i < count; i++) assert_true(big->d[i] == (double)(i % 2));
    release(big);
    free(doc);
}

/* Every prefix of a valid document parses or fails with a positioned message. */
static void test_truncation(void **state)
{
    const char *docs[] = {ALL_DOC, LENET};
    for (int d = 0; d < 2; d++) {
        size_t len = strlen(docs[d]);
        int ok = 0;
        for (size_t n = 0; n <= len; n++) {
            ProtobufCMessage *m;
            kiln_status st = parse_n(docs[d], n, d ? NET : ALL, &m);
            if (st == KILN_OK) {
                ok++;
                protobuf_c_message_free_unpacked(m, &g_alloc);
            } else {
                assert_int_equal(st, KILN_ERR_PARSE);
                assert_null(m);
                assert_true(strncmp(kiln_last_error(), "t.prototxt:", 11) == 0);
            }
            assert_int_equal(g_live, 0);
        }
        assert_true(ok > 10);
    }
}

static void check_any(const char *text, size_t len, const ProtobufCMessageDescriptor *d)
{
    ProtobufCMessage *m;
    kiln_status st = parse_n(text, len, d, &m);
    if (st == KILN_OK) {
        protobuf_c_message_free_unpacked(m, &g_alloc);
    } else {
        if (st != KILN_ERR_PARSE) print_error("%s: %s\n", kiln_status_name(st), kiln_last_error());
        assert_int_equal(st, KILN_ERR_PARSE);
        assert_null(m);
        assert_true(strncmp(kiln_last_error(), "t.prototxt:", 11) == 0);
    }
    assert_int_equal(g_live, 0);
}

static void test_random_garbage(void **state)
{
    tu_rng rng = {12345};
    char buf[512];
    /* Random bytes. */
    for (int it = 0; it < 3000; it++) {
        size_t n = (size_t)tu_int(&rng, 0, 200);
        for (size_t i = 0; i < n; i++) buf[i] = (char)tu_next(&rng);
        check_any(buf, n, ALL);
    }
    /* The LeNet file with a few bytes changed to characters that matter to the syntax. */
    static const char alphabet[] = "{}<>[]:;,#\"'\\-.0123456789eExfa_ \n\t\0\xff";
    size_t len = strlen(LENET);
    char *doc = malloc(len);
    assert_non_null(doc);
    for (int it = 0; it < 3000; it++) {
        memcpy(doc, LENET, len);
        int flips = (int)tu_int(&rng, 1, 4);
        for (int f = 0; f < flips; f++)
            doc[tu_int(&rng, 0, (int64_t)len - 1)] = alphabet[tu_int(&rng, 0, sizeof alphabet - 2)];
        check_any(doc, len, NET);
    }
    free(doc);
    /* Soups of real tokens reach deeper than random bytes. */
    static const char *const toks[] = {
        "i32",   "inner",  "r_inner", "r_i32", "str",   "color", "b",   "fl",         "db",
        "u64",   "r_str",  "o_int",   "o_str", "o_msg", "child", "a",   "s",          "nested",
        "kind",  "r_byt",  "{",       "}",     "<",     ">",     "[",   "]",          ":",
        ",",     ";",      "-",       "1",     "0x1f",  "07",    "1.5", "inf",        "nan",
        "\"s\"", "'t\\n'", "RED",     "K1",    "true",  "#c\n",  "\n",  "99999999999"};
    size_t ntok = sizeof toks / sizeof toks[0];
    for (int it = 0; it < 20000; it++) {
        size_t k = 0;
        int n = (int)tu_int(&rng, 1, 40);
        for (int i = 0; i < n; i++) {
            const char *t = toks[tu_int(&rng, 0, (int64_t)ntok - 1)];
            size_t tl = strlen(t);
            memcpy(buf + k, t, tl);
            k += tl;
            if (tu_int(&rng, 0, 3)) buf[k++] = ' ';
        }
        check_any(buf, k, ALL);
    }
}

static void test_allocation_failures(void **state)
{
    static const struct {
        const char *text;
        const ProtobufCMessageDescriptor *d;
    } docs[] = {{ALL_DOC, ALL}, {LENET, NET}, {"h000: 1 h599: 1", HUGE_}, {"fl: 1.5", ALL}};
    for (size_t d = 0; d < sizeof docs / sizeof docs[0]; d++) {
        long k;
        for (k = 0;; k++) {
            ProtobufCMessage *m;
            kiln_alloc_fail_after(k);
            kiln_status st = parse_n(docs[d].text, strlen(docs[d].text), docs[d].d, &m);
            kiln_alloc_fail_after(-1);
            if (st == KILN_OK) {
                protobuf_c_message_free_unpacked(m, &g_alloc);
                assert_int_equal(g_live, 0);
                break;
            }
            if (st != KILN_ERR_OUT_OF_MEMORY) print_error("k=%ld: %s\n", k, kiln_last_error());
            assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
            assert_null(m);
            assert_int_equal(g_live, 0);
            assert_non_null(strstr(kiln_last_error(), "out of memory"));
            assert_true(strncmp(kiln_last_error(), "t.prototxt:", 11) == 0);
        }
        assert_true(k >= 1);
    }
}

static void test_arguments_and_default_allocator(void **state)
{
    ProtobufCMessage *m = (ProtobufCMessage *)&g_alloc;
    assert_int_equal(prototxt_parse("", 0, "x", NULL, NULL, &m), KILN_ERR_INVALID_ARGUMENT);
    assert_null(m);
    assert_int_equal(prototxt_parse(NULL, 3, "x", ALL, NULL, &m), KILN_ERR_INVALID_ARGUMENT);
    assert_int_equal(prototxt_parse("", 0, "x", ALL, NULL, NULL), KILN_ERR_INVALID_ARGUMENT);
    ProtobufCEnumDescriptor not_a_message = {0};
    assert_int_equal(prototxt_parse("", 0, "x", (const void *)&not_a_message, NULL, &m),
                     KILN_ERR_INVALID_ARGUMENT);
    /* No text at all is an empty message. */
    assert_int_equal(prototxt_parse(NULL, 0, "x", ALL, NULL, &m), KILN_OK);
    protobuf_c_message_free_unpacked(m, NULL);
    /* Without an allocator, protobuf-c's own default frees the result; without a source
     * name, messages still say where. */
    const char *text = "str: 'a' r_inner { s: 'b' } r_i32: [1, 2, 3, 4, 5]";
    assert_int_equal(prototxt_parse(text, strlen(text), NULL, ALL, NULL, &m), KILN_OK);
    assert_string_equal(((Ptxtest__All *)m)->r_inner[0]->s, "b");
    protobuf_c_message_free_unpacked(m, NULL);
    assert_int_equal(prototxt_parse("x: 1", 4, NULL, ALL, NULL, &m), KILN_ERR_PARSE);
    assert_string_equal(kiln_last_error(), "<prototxt>:1:1: unknown field 'x' in ptxtest.All");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_singular_field),
        cmocka_unit_test(test_defaults_of_unset_fields),
        cmocka_unit_test(test_repeated_fields),
        cmocka_unit_test(test_syntax_forms),
        cmocka_unit_test(test_integer_forms),
        cmocka_unit_test(test_float_forms),
        cmocka_unit_test(test_bool_and_enum_forms),
        cmocka_unit_test(test_strings_and_bytes),
        cmocka_unit_test(test_oneof_and_required),
        cmocka_unit_test(test_huge_message),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_caffe_lenet),
        cmocka_unit_test(test_malformed_inputs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_allocation_failures),
        cmocka_unit_test(test_arguments_and_default_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
