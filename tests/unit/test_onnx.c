/* test_onnx.c - the ONNX importer on models made here with protobuf-c: values through
 * a build and a run, opset conversions, and bad input (truncation, garbage, missing or
 * mis-sized tensors, unknown dtypes and ops, cycles, external data escaping the model's
 * directory, huge length fields, failing allocations). */
#define _XOPEN_SOURCE 700 /* mkdtemp, symlink */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"
#include "testutil.h"

/* ---- building models with protobuf-c (everything static or on the test's stack) ---- */

#define MAXN 16

typedef struct model_builder {
    Onnx__ModelProto model;
    Onnx__GraphProto graph;
    Onnx__OperatorSetIdProto opset, ms_opset;
    Onnx__OperatorSetIdProto *opsets[2];
    Onnx__NodeProto nodes[MAXN], *node_ptrs[MAXN];
    Onnx__TensorProto inits[MAXN], *init_ptrs[MAXN];
    Onnx__ValueInfoProto ins[MAXN], outs[MAXN], *in_ptrs[MAXN], *out_ptrs[MAXN];
    Onnx__TypeProto types[MAXN];
    Onnx__TypeProto__Tensor ttypes[MAXN];
    Onnx__TensorShapeProto shapes[MAXN];
    Onnx__TensorShapeProto__Dimension dims[MAXN][4], *dim_ptrs[MAXN][4];
    Onnx__AttributeProto attrs[MAXN][4], *attr_ptrs[MAXN][4];
    int n_types;
} model_builder;

static void mb_init(model_builder *b, int64_t opset)
{
    memset(b, 0, sizeof *b);
    onnx__model_proto__init(&b->model);
    onnx__graph_proto__init(&b->graph);
    onnx__operator_set_id_proto__init(&b->opset);
    b->opset.domain = "";
    b->opset.has_version = 1;
    b->opset.version = opset;
    b->opsets[0] = &b->opset;
    b->model.n_opset_import = 1;
    b->model.opset_import = b->opsets;
    b->model.has_ir_version = 1;
    b->model.ir_version = 8;
    b->model.graph = &b->graph;
    b->graph.name = "g";
    b->graph.node = b->node_ptrs;
    b->graph.initializer = b->init_ptrs;
    b->graph.input = b->in_ptrs;
    b->graph.output = b->out_ptrs;
}

static Onnx__TypeProto *mb_type(model_builder *b, int32_t elem, int rank, const int64_t *d)
{
    int k = b->n_types++;
    Onnx__TypeProto *t = &b->types[k];
    onnx__type_proto__init(t);
    onnx__type_proto__tensor__init(&b->ttypes[k]);
    onnx__tensor_shape_proto__init(&b->shapes[k]);
    b->ttypes[k].has_elem_type = 1;
    b->ttypes[k].elem_type = elem;
    for (int i = 0; i < rank; i++) {
        onnx__tensor_shape_proto__dimension__init(&b->dims[k][i]);
        b->dims[k][i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
        b->dims[k][i].dim_value = d[i];
        b->dim_ptrs[k][i] = &b->dims[k][i];
    }
    b->shapes[k].n_dim = (size_t)rank;
    b->shapes[k].dim = b->dim_ptrs[k];
    b->ttypes[k].shape = &b->shapes[k];
    t->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    t->tensor_type = &b->ttypes[k];
    return t;
}

static void mb_input(model_builder *b, const char *name, int rank, const int64_t *d)
{
    size_t k = b->graph.n_input++;
    onnx__value_info_proto__init(&b->ins[k]);
    b->ins[k].name = (char *)name;
    b->ins[k].type = mb_type(b, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, rank, d);
    b->in_ptrs[k] = &b->ins[k];
}

static void mb_output(model_builder *b, const char *name)
{
    size_t k = b->graph.n_output++;
    onnx__value_info_proto__init(&b->outs[k]);
    b->outs[k].name = (char *)name;
    b->out_ptrs[k] = &b->outs[k];
}

static Onnx__TensorProto *mb_init_f32(model_builder *b, const char *name, int rank,
                                      const int64_t *d, const float *v)
{
    size_t k = b->graph.n_initializer++;
    Onnx__TensorProto *t = &b->inits[k];
    onnx__tensor_proto__init(t);
    t->name = (char *)name;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->n_dims = (size_t)rank;
    t->dims = (int64_t *)d;
    int64_t n = 1;
    for (int i = 0; i < rank; i++) n *= d[i];
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)n * 4;
    t->raw_data.data = (uint8_t *)v;
    b->init_ptrs[k] = t;
    return t;
}

/* A node with string lists of inputs and outputs (NULL-terminated). */
static Onnx__NodeProto *mb_node(model_builder *b, const char *op, const char *name, const char **in,
                                const char **out)
{
    size_t k = b->graph.n_node++;
    Onnx__NodeProto *n = &b->nodes[k];
    onnx__node_proto__init(n);
    n->op_type = (char *)op;
    n->name = (char *)name;
    while (in[n->n_input]) n->n_input++;
    while (out[n->n_output]) n->n_output++;
    n->input = (char **)in;
    n->output = (char **)out;
    n->attribute = b->attr_ptrs[k];
    b->node_ptrs[k] = n;
    return n;
}

static void mb_attr_floats1(model_builder *b, Onnx__NodeProto *n, const char *name, float *v)
{
    size_t k = (size_t)(n - b->nodes), a = n->n_attribute++;
    Onnx__AttributeProto *at = &b->attrs[k][a];
    onnx__attribute_proto__init(at);
    at->name = (char *)name;
    at->has_type = 1;
    at->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    at->has_f = 1;
    at->f = *v;
    b->attr_ptrs[k][a] = at;
}

static uint8_t *mb_pack(model_builder *b, size_t *size)
{
    *size = onnx__model_proto__get_packed_size(&b->model);
    uint8_t *buf = malloc(*size);
    onnx__model_proto__pack(&b->model, buf);
    return buf;
}

/* x[2x3] -> Add(x, w) -> Relu -> y; w an initializer. */
static const int64_t D23[] = {2, 3};
static const float W23[] = {1, -2, 3, -4, 5, -6};

static void simple_model(model_builder *b)
{
    mb_init(b, 17);
    mb_input(b, "x", 2, D23);
    mb_init_f32(b, "w", 2, D23, W23);
    static const char *i1[] = {"x", "w", NULL}, *o1[] = {"s", NULL};
    static const char *i2[] = {"s", NULL}, *o2[] = {"y", NULL};
    mb_node(b, "Add", "add", i1, o1);
    mb_node(b, "Relu", "relu", i2, o2);
    mb_output(b, "y");
}

static void run_simple(kiln_network *net, float *y)
{
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    float x[6] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
    assert_int_equal(kiln_build(net, NULL, &e), KILN_OK);
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "x", x), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "y", y), KILN_OK);
    assert_int_equal(kiln_context_run(c), KILN_OK);
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
}

static kiln_status parse(const uint8_t *data, size_t size, const char *dir)
{
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    kiln_status st = kiln_onnx_parse_memory(net, data, size, dir);
    if (st) assert_int_equal(kiln_network_num_layers(net), 0); /* nothing half imported */
    kiln_network_destroy(net);
    return st;
}

static void test_simple_model_runs(void **state)
{
    model_builder b;
    simple_model(&b);
    size_t n;
    uint8_t *buf = mb_pack(&b, &n);
    kiln_network *net = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    assert_int_equal(kiln_onnx_parse_memory(net, buf, n, NULL), KILN_OK);
    assert_int_equal(kiln_network_num_layers(net), 2);
    assert_int_equal(kiln_network_num_inputs(net), 1);
    float y[6];
    run_simple(net, y);
    for (int i = 0; i < 6; i++) assert_true(y[i] == (W23[i] + 0.5f > 0 ? W23[i] + 0.5f : 0));
    /* a second import into a used network is refused */
    assert_int_equal(kiln_onnx_parse_memory(net, buf, n, NULL), KILN_ERR_INVALID_ARGUMENT);
    kiln_network_destroy(net);
    free(buf);
}

static void test_file_and_external_data(void **state)
{
    char dir[] = "/tmp/kiln_onnx_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256], data[256], outside[256], link[256];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    snprintf(data, sizeof data, "%s/w.bin", dir);
    snprintf(outside, sizeof outside, "%s.secret", dir);
    snprintf(link, sizeof link, "%s/link.bin", dir);
    FILE *f = fopen(data, "wb");
    float pad[4] = {0};
    fwrite(pad, 4, 4, f); /* 16 bytes of padding, then the weights at offset 16 */
    fwrite(W23, 4, 6, f);
    fclose(f);
    f = fopen(outside, "wb");
    fwrite(W23, 4, 6, f);
    fclose(f);
    assert_int_equal(symlink(outside, link), 0);

    const char *cases[][3] = {
        /* location, offset, expected outcome ("ok" or a message fragment) */
        {"w.bin", "16", "ok"},
        {"../x.bin", "0", "not a plain path"},
        {"/etc/passwd", "0", "not a plain path"},
        {"link.bin", "0", "resolves outside"},
        {"missing.bin", "0", "cannot open"},
        {"w.bin", "1000", "holds"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        model_builder b;
        simple_model(&b);
        Onnx__TensorProto *t = &b.inits[0];
        t->has_raw_data = 0;
        t->has_data_location = 1;
        t->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
        Onnx__StringStringEntryProto e1, e2, *ents[2] = {&e1, &e2};
        onnx__string_string_entry_proto__init(&e1);
        onnx__string_string_entry_proto__init(&e2);
        e1.key = "location", e1.value = (char *)cases[k][0];
        e2.key = "offset", e2.value = (char *)cases[k][1];
        t->n_external_data = 2;
        t->external_data = ents;
        size_t n;
        uint8_t *buf = mb_pack(&b, &n);
        f = fopen(path, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
        kiln_network *net = NULL;
        assert_int_equal(kiln_network_create(&net), KILN_OK);
        kiln_status st = kiln_onnx_parse_file(net, path);
        if (strcmp(cases[k][2], "ok") == 0) {
            if (st) print_error("%s\n", kiln_last_error());
            assert_int_equal(st, KILN_OK);
            float y[6];
            run_simple(net, y);
            assert_true(y[2] == 3.5f);
        } else {
            assert_int_not_equal(st, KILN_OK);
            if (!strstr(kiln_last_error(), cases[k][2])) print_error("%s\n", kiln_last_error());
            assert_non_null(strstr(kiln_last_error(), cases[k][2]));
            assert_non_null(strstr(kiln_last_error(), "'w'"));
        }
        kiln_network_destroy(net);
        /* From memory without a base directory, external data is refused. */
        if (k == 0) assert_int_equal(parse(buf, n, NULL), KILN_ERR_PARSE);
        free(buf);
    }
    remove(path);
    remove(data);
    remove(link);
    remove(outside);
    rmdir(dir);
}

static void test_truncated_and_garbage(void **state)
{
    model_builder b;
    simple_model(&b);
    size_t n;
    uint8_t *buf = mb_pack(&b, &n);
    int refused = 0;
    for (size_t cut = 0; cut < n; cut++) {
        kiln_status st = parse(buf, cut, NULL);
        if (st != KILN_OK) {
            refused++;
            assert_true(strlen(kiln_last_error()) > 0);
        }
    }
    assert_true(refused > (int)n / 2);
    tu_rng r = {7};
    uint8_t junk[512];
    for (int k = 0; k < 200; k++) {
        size_t len = (size_t)tu_int(&r, 1, sizeof junk);
        for (size_t i = 0; i < len; i++) junk[i] = (uint8_t)tu_next(&r);
        parse(junk, len, NULL); /* must not crash; any status */
    }
    /* A graph field claiming 2 GiB of bytes. */
    const uint8_t huge[] = {0x3a, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00};
    assert_int_equal(parse(huge, sizeof huge, NULL), KILN_ERR_PARSE);
    assert_non_null(strstr(kiln_last_error(), "not a valid ONNX model"));
    free(buf);
}

static void expect_error(model_builder *b, kiln_status want, const char *frag1, const char *frag2)
{
    size_t n;
    uint8_t *buf = mb_pack(b, &n);
    kiln_status st = parse(buf, n, NULL);
    if (st != want || !strstr(kiln_last_error(), frag1) ||
        (frag2 && !strstr(kiln_last_error(), frag2)))
        print_error("got %s: %s\n", kiln_status_name(st), kiln_last_error());
    assert_int_equal(st, want);
    assert_non_null(strstr(kiln_last_error(), frag1));
    if (frag2) assert_non_null(strstr(kiln_last_error(), frag2));
    free(buf);
}

static void test_bad_models(void **state)
{
    model_builder b;
    /* A node reading a tensor nothing defines. */
    simple_model(&b);
    b.graph.n_initializer = 0;
    expect_error(&b, KILN_ERR_INVALID_GRAPH, "node 'add' (Add)", "'w' is not a known tensor");
    /* raw_data of the wrong size */
    simple_model(&b);
    b.inits[0].raw_data.len = 20;
    expect_error(&b, KILN_ERR_PARSE, "tensor 'w'", "raw_data holds 20 bytes");
    /* a dtype kiln lacks */
    simple_model(&b);
    b.inits[0].data_type = ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    expect_error(&b, KILN_ERR_UNSUPPORTED, "tensor 'w'", "double");
    /* shapes that do not agree: the importer accepts, the builder names the node */
    {
        simple_model(&b);
        static const int64_t d32[] = {3, 2};
        b.inits[0].dims = (int64_t *)d32;
        size_t n;
        uint8_t *buf = mb_pack(&b, &n);
        kiln_network *net = NULL;
        kiln_engine *e = NULL;
        assert_int_equal(kiln_network_create(&net), KILN_OK);
        assert_int_equal(kiln_onnx_parse_memory(net, buf, n, NULL), KILN_OK);
        assert_int_equal(kiln_build(net, NULL, &e), KILN_ERR_SHAPE);
        assert_non_null(strstr(kiln_last_error(), "node 'add' (Add)"));
        kiln_network_destroy(net);
        free(buf);
    }
    /* a cycle: relu reads its own output through add */
    simple_model(&b);
    static const char *cyc[] = {"x", "y", NULL};
    b.nodes[0].input = (char **)cyc;
    expect_error(&b, KILN_ERR_INVALID_GRAPH, "node 'add' (Add)", "'y' is not a known tensor");
    /* no graph, no opset, an opset too old */
    simple_model(&b);
    b.model.graph = NULL;
    expect_error(&b, KILN_ERR_PARSE, "no graph", NULL);
    simple_model(&b);
    b.model.n_opset_import = 0;
    expect_error(&b, KILN_ERR_PARSE, "imports no opset", NULL);
    simple_model(&b);
    b.opset.version = 5;
    expect_error(&b, KILN_ERR_UNSUPPORTED, "opset 5", NULL);
    /* an input with a dtype kiln lacks */
    simple_model(&b);
    b.ttypes[0].elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__STRING;
    expect_error(&b, KILN_ERR_UNSUPPORTED, "input 'x'", "string");
}

static void test_unsupported_ops_listed_once(void **state)
{
    model_builder b;
    simple_model(&b);
    static const char *i[] = {"y", NULL}, *o1[] = {"a", NULL}, *o2[] = {"b2", NULL},
                      *o3[] = {"c", NULL}, *o4[] = {"d", NULL};
    mb_node(&b, "Frobnicate", "f1", i, o1);
    mb_node(&b, "Frobnicate", "f2", i, o2);
    Onnx__NodeProto *ms = mb_node(&b, "FusedThing", "ms1", i, o3);
    ms->domain = "com.microsoft";
    mb_node(&b, "Zap", "z1", i, o4);
    expect_error(&b, KILN_ERR_UNSUPPORTED, "uses 3 ops kiln does not support", NULL);
    const char *m = kiln_last_error();
    assert_non_null(strstr(m, "Frobnicate (domain ai.onnx, opset 17; first at node 'f1')"));
    assert_non_null(strstr(m, "FusedThing (domain com.microsoft"));
    assert_non_null(strstr(m, "Zap (domain ai.onnx, opset 17; first at node 'z1')"));
    assert_null(strstr(m, "'f2'"));
    assert_int_equal(kiln_onnx_op_supported("", "Conv", 17), 1);
    assert_int_equal(kiln_onnx_op_supported("ai.onnx", "Frobnicate", 17), 0);
    assert_int_equal(kiln_onnx_op_supported("com.microsoft", "Conv", 1), 0);
    assert_int_equal(kiln_onnx_op_supported("", "Upsample", 9), 1);
    assert_int_equal(kiln_onnx_op_supported("", "Upsample", 10), 0);
    assert_int_equal(kiln_onnx_op_supported("", "caffe.PriorBox", 17), 0);
}

static void test_old_opset_clip(void **state)
{
    /* Clip at opset 7 keeps min and max in attributes. */
    model_builder b;
    mb_init(&b, 7);
    mb_input(&b, "x", 2, D23);
    static const char *i[] = {"x", NULL}, *o[] = {"y", NULL};
    Onnx__NodeProto *n = mb_node(&b, "Clip", "clip", i, o);
    float lo = -0.25f, hi = 0.5f;
    mb_attr_floats1(&b, n, "min", &lo);
    mb_attr_floats1(&b, n, "max", &hi);
    mb_output(&b, "y");
    size_t sz;
    uint8_t *buf = mb_pack(&b, &sz);
    kiln_network *net = NULL;
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    assert_int_equal(kiln_network_create(&net), KILN_OK);
    assert_int_equal(kiln_onnx_parse_memory(net, buf, sz, NULL), KILN_OK);
    assert_int_equal(kiln_build(net, NULL, &e), KILN_OK);
    float x[6] = {-1, -0.1f, 0, 0.3f, 0.7f, 2}, y[6];
    const float want[6] = {-0.25f, -0.1f, 0, 0.3f, 0.5f, 0.5f};
    assert_int_equal(kiln_context_create(e, &c), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "x", x), KILN_OK);
    assert_int_equal(kiln_context_set_tensor(c, "y", y), KILN_OK);
    assert_int_equal(kiln_context_run(c), KILN_OK);
    assert_memory_equal(y, want, sizeof y);
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
    free(buf);
}

static void test_allocation_failures(void **state)
{
    model_builder b;
    simple_model(&b);
    size_t n;
    uint8_t *buf = mb_pack(&b, &n);
    long k;
    for (k = 0; k < 2000; k++) {
        kiln_network *net = NULL;
        kiln_alloc_fail_after(k);
        kiln_status st = kiln_network_create(&net);
        if (!st) st = kiln_onnx_parse_memory(net, buf, n, NULL);
        kiln_alloc_fail_after(-1);
        kiln_network_destroy(net);
        if (st == KILN_OK) break;
        assert_int_equal(st, KILN_ERR_OUT_OF_MEMORY);
    }
    assert_true(k < 2000);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_model_runs),
        cmocka_unit_test(test_file_and_external_data),
        cmocka_unit_test(test_truncated_and_garbage),
        cmocka_unit_test(test_bad_models),
        cmocka_unit_test(test_unsupported_ops_listed_once),
        cmocka_unit_test(test_old_opset_clip),
        cmocka_unit_test(test_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
