/* cmd_inspect.c - `kiln inspect`: what a plan holds (I/O tensors, the layers with their
 * kernels, precisions and fusions, memory) as a table for people, one JSON object for
 * programs (--json), or a Graphviz graph of the layers (--dot). Public API only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void print_help(void)
{
    printf("usage: kiln inspect PLAN [--json] [--dot FILE]\n"
           "\n"
           "Prints what the plan file PLAN holds: its build record (the kiln version that built\n"
           "it, plan format, layer counts), the kiln reading it, the device and thread count\n"
           "it was built for, its input and output tensors with dtype and shape, a table of\n"
           "its layers (index, name, op, chosen kernel, precision, inputs -> outputs with\n"
           "shapes; a layer the optimizer fused shows the network layers it computes, as in\n"
           "\"conv1 [conv1 + bn1 + relu1]\"; a tensor the builder keeps in a blocked layout\n"
           "shows it, as in \"x[1x16x8x8 nchw8c]\", and kiln.Reorder layers convert between\n"
           "layouts), the activation arena against the sum of all activations, and the weight\n"
           "bytes. An engine with dynamic shapes also shows its optimization profiles: each\n"
           "input's min, opt and max shapes per profile (the shapes shown elsewhere are then\n"
           "the largest, what memory is planned for). PLAN may also name a built-in model\n"
           "(e.g. lenet), which is then built in memory with default settings; so may an ONNX\n"
           "model (PLAN ending in .onnx) or a Caffe deploy file (PLAN ending in .prototxt, with\n"
           "--weights); for a model, its layers before optimization are listed first.\n"
           "\n"
           "options:\n"
           "  --json       print one JSON object instead of the table; its keys: plan, kiln,\n"
           "               device, threads, build_info, inputs and outputs (each a list of\n"
           "               {name, shape, dtype}), dynamic (true or false), profiles (one\n"
           "               {inputs: [{name, min, opt, max}]} per profile; a static engine\n"
           "               has one, with min = opt = max), layers (each {name, op, kernel,\n"
           "               precision, fused_from: [names], inputs: [names, null for an\n"
           "               absent optional input], outputs: [{name, shape, dtype, and layout\n"
           "               when not plain}]}), arena_bytes, activation_bytes, weight_bytes\n"
           "  --dot FILE   also write the layers as a Graphviz graph to FILE: a box per layer\n"
           "               (fused layers list what they absorbed), an edge per tensor\n"
           "               (render with: dot -Tsvg FILE -o graph.svg)\n"
           "  --weights F  the caffemodel of a Caffe deploy file given as PLAN\n"
           "  -h, --help   show this help\n");
}

/* ---- the text form ---- */

/* The layout of a tensor that is not plain (for "x[1x16x8x8 nchw8c]"), else NULL. */
static const char *blocked_layout(const kiln_engine *e, const char *name)
{
    const char *l = kiln_engine_tensor_layout(e, name);
    return l && strcmp(l, "plain") != 0 ? l : NULL;
}

/* "name[1x3x224x224]", "name[1x16x8x8 nchw8c]"; weights and activations alike. */
static void print_tensor(const kiln_engine *e, const char *name)
{
    kiln_dtype dtype;
    kiln_dims shape;
    char buf[160];
    if (!name || !*name) {
        fputs("-", stdout); /* an absent optional input */
        return;
    }
    const char *layout = blocked_layout(e, name);
    if (kiln_engine_tensor_info(e, name, &dtype, &shape) == KILN_OK)
        printf("%s[%s%s%s]", name, cli_dims_str(&shape, buf, sizeof buf), layout ? " " : "",
               layout ? layout : "");
    else
        printf("%s[?]", name);
}

/* Whether input `name` takes more than one shape. */
static bool input_varies(const kiln_engine *e, const char *name)
{
    for (int32_t p = 0; p < kiln_engine_num_profiles(e); p++) {
        kiln_dims lo, hi;
        if (kiln_engine_profile_shape(e, p, name, KILN_PROFILE_MIN, &lo) == KILN_OK &&
            kiln_engine_profile_shape(e, p, name, KILN_PROFILE_MAX, &hi) == KILN_OK &&
            !cli_dims_equal(&lo, &hi))
            return true;
    }
    return false;
}

static void print_io(const kiln_engine *e, kiln_io_mode mode)
{
    int32_t n = kiln_engine_num_io(e);
    int width = 4;
    for (int32_t i = 0; i < n; i++) {
        const char *name = kiln_engine_io_name(e, i);
        int len = (int)strlen(name);
        if (kiln_engine_io_mode(e, name) == mode && len > width) width = len;
    }
    printf("%s\n", mode == KILN_IO_INPUT ? "inputs" : "outputs");
    for (int32_t i = 0; i < n; i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dtype dtype = KILN_DTYPE_UNDEFINED;
        kiln_dims shape = {0};
        char buf[160];
        if (kiln_engine_io_mode(e, name) != mode) continue;
        if (kiln_engine_tensor_info(e, name, &dtype, &shape) != KILN_OK) shape.rank = -1;
        printf("  %-*s  %-4s  %s%s\n", width, name, kiln_dtype_name(dtype),
               cli_dims_str(&shape, buf, sizeof buf),
               mode == KILN_IO_INPUT && input_varies(e, name) ? "  (dynamic; the largest)" : "");
    }
}

static int max_int(int a, int b) { return a > b ? a : b; }

/* Whether layer i stands for more than itself. */
static bool is_fused(const kiln_engine *e, int32_t i)
{
    return kiln_engine_layer_fused_from(e, i, 1) != NULL;
}

/* Writes "name" or, for a fused layer, "name [a + b + c]" to f; returns its length. */
static int put_layer_name(FILE *f, const kiln_engine *e, int32_t i, const char *name)
{
    int len = f ? fprintf(f, "%s", name) : (int)strlen(name);
    if (!is_fused(e, i)) return len;
    len += f ? fprintf(f, " [") : 2;
    const char *part;
    for (int32_t k = 0; (part = kiln_engine_layer_fused_from(e, i, k)) != NULL; k++) {
        if (k) len += f ? fprintf(f, " + ") : 3;
        len += f ? fprintf(f, "%s", part) : (int)strlen(part);
    }
    len += f ? fprintf(f, "]") : 1;
    return len;
}

static int print_layers(const kiln_engine *e)
{
    int32_t n = kiln_engine_num_layers(e);
    int wi = max_int(1, snprintf(NULL, 0, "%d", (int)n - 1)), wn = 4, wo = 2, wk = 6, wp = 9;
    kiln_layer_info info;
    for (int32_t i = 0; i < n; i++) {
        kiln_status st = kiln_engine_layer_info(e, i, &info);
        if (st != KILN_OK) return cli_kiln_error(st, "layer %d", (int)i);
        wn = max_int(wn, put_layer_name(NULL, e, i, info.name));
        wo = max_int(wo, (int)strlen(info.op));
        wk = max_int(wk, (int)strlen(info.kernel));
        wp = max_int(wp, (int)strlen(info.precision));
    }
    printf("layers (%d)\n", (int)n);
    printf("  %*s  %-*s  %-*s  %-*s  %-*s  %s\n", wi, "#", wn, "name", wo, "op", wk, "kernel", wp,
           "precision", "inputs -> outputs");
    for (int32_t i = 0; i < n; i++) {
        kiln_engine_layer_info(e, i, &info);
        printf("  %*d  ", wi, (int)i);
        int len = put_layer_name(stdout, e, i, info.name);
        printf("%*s  %-*s  %-*s  %-*s  ", wn - len, "", wo, info.op, wk, info.kernel, wp,
               info.precision);
        for (int32_t k = 0; k < info.n_inputs; k++) {
            if (k) fputs(", ", stdout);
            print_tensor(e, kiln_engine_layer_input(e, i, k));
        }
        fputs(" -> ", stdout);
        for (int32_t k = 0; k < info.n_outputs; k++) {
            if (k) fputs(", ", stdout);
            print_tensor(e, kiln_engine_layer_output(e, i, k));
        }
        fputc('\n', stdout);
    }
    return CLI_OK;
}

static void print_memory(const kiln_engine *e)
{
    char a[32], b[32], w[32];
    size_t arena = kiln_engine_arena_bytes(e), acts = kiln_engine_activation_bytes(e);
    size_t weights = kiln_engine_weight_bytes(e);
    printf("memory\n");
    printf("  arena        %s (%zu bytes) for %s (%zu bytes) of activations",
           cli_bytes_str(arena, a, sizeof a), arena, cli_bytes_str(acts, b, sizeof b), acts);
    if (acts > 0) printf(", ratio %.2f", (double)arena / (double)acts);
    printf("\n  weights      %s (%zu bytes)\n", cli_bytes_str(weights, w, sizeof w), weights);
}

static int print_text(const char *plan, const kiln_engine *e)
{
    struct stat sb;
    char size[32];
    int32_t threads = kiln_engine_threads(e);
    printf("plan     %s", plan);
    if (stat(plan, &sb) == 0)
        printf(" (%s, %lld bytes)", cli_bytes_str((size_t)sb.st_size, size, sizeof size),
               (long long)sb.st_size);
    else
        printf(" (a built-in model, built in memory)");
    printf("\nreader   kiln %s\ndevice   %s\nthreads  %d%s\n", kiln_version(),
           kiln_engine_device(e), (int)threads, threads == 0 ? " (one per hardware thread)" : "");
    /* The build record: "key=value" lines, shown on one line. */
    const char *info = kiln_engine_build_info(e);
    printf("build   ");
    while (info && *info) {
        const char *nl = strchr(info, '\n');
        int len = nl ? (int)(nl - info) : (int)strlen(info);
        printf(" %.*s", len, info);
        info = nl ? nl + 1 : info + len;
    }
    fputc('\n', stdout);
    fputc('\n', stdout);
    print_io(e, KILN_IO_INPUT);
    print_io(e, KILN_IO_OUTPUT);
    if (cli_engine_is_dynamic(e)) {
        printf("\nprofiles (%d; the shapes elsewhere are the largest)\n",
               (int)kiln_engine_num_profiles(e));
        cli_print_profiles(stdout, e, "  ");
    }
    fputc('\n', stdout);
    int rc = print_layers(e);
    if (rc == CLI_OK) {
        fputc('\n', stdout);
        print_memory(e);
    }
    return rc;
}

/* ---- the JSON form ---- */

static void json_dims(const kiln_dims *d)
{
    fputc('[', stdout);
    for (int32_t k = 0; k < d->rank; k++) printf("%s%lld", k ? ", " : "", (long long)d->d[k]);
    fputc(']', stdout);
}

/* [{"inputs": [{"name": ..., "min": [..], "opt": [..], "max": [..]}, ...]}, ...] */
static void json_profiles(const kiln_engine *e)
{
    static const char *const bound[3] = {"min", "opt", "max"};
    fputc('[', stdout);
    for (int32_t p = 0; p < kiln_engine_num_profiles(e); p++) {
        int first = 1;
        printf("%s{\"inputs\": [", p ? ", " : "");
        for (int32_t i = 0; i < kiln_engine_num_io(e); i++) {
            const char *name = kiln_engine_io_name(e, i);
            if (kiln_engine_io_mode(e, name) != KILN_IO_INPUT) continue;
            printf("%s{\"name\": ", first ? "" : ", ");
            first = 0;
            cli_json_string(stdout, name);
            for (int k = 0; k < 3; k++) {
                kiln_dims d = {0};
                kiln_engine_profile_shape(e, p, name, (kiln_profile_bound)k, &d);
                printf(", \"%s\": ", bound[k]);
                json_dims(&d);
            }
            fputc('}', stdout);
        }
        printf("]}");
    }
    fputc(']', stdout);
}

/* {"name": ..., "shape": [..], "dtype": ...}, with "layout": ... when not plain */
static void json_tensor(const kiln_engine *e, const char *name)
{
    kiln_dtype dtype = KILN_DTYPE_UNDEFINED;
    kiln_dims shape = {0};
    kiln_engine_tensor_info(e, name, &dtype, &shape);
    printf("{\"name\": ");
    cli_json_string(stdout, name);
    printf(", \"shape\": ");
    json_dims(&shape);
    printf(", \"dtype\": ");
    cli_json_string(stdout, kiln_dtype_name(dtype));
    const char *layout = blocked_layout(e, name);
    if (layout) {
        printf(", \"layout\": ");
        cli_json_string(stdout, layout);
    }
    fputc('}', stdout);
}

static void json_io(const kiln_engine *e, kiln_io_mode mode)
{
    int first = 1;
    fputc('[', stdout);
    for (int32_t i = 0; i < kiln_engine_num_io(e); i++) {
        const char *name = kiln_engine_io_name(e, i);
        if (kiln_engine_io_mode(e, name) != mode) continue;
        if (!first) fputs(", ", stdout);
        first = 0;
        json_tensor(e, name);
    }
    fputc(']', stdout);
}

static int json_layer(const kiln_engine *e, int32_t i)
{
    kiln_layer_info info;
    kiln_status st = kiln_engine_layer_info(e, i, &info);
    if (st != KILN_OK) return cli_kiln_error(st, "layer %d", (int)i);
    const char *s;
    printf("{\"name\": ");
    cli_json_string(stdout, info.name);
    printf(", \"op\": ");
    cli_json_string(stdout, info.op);
    printf(", \"kernel\": ");
    cli_json_string(stdout, info.kernel);
    printf(", \"precision\": ");
    cli_json_string(stdout, info.precision);
    printf(", \"fused_from\": [");
    for (int32_t k = 0; (s = kiln_engine_layer_fused_from(e, i, k)) != NULL; k++) {
        if (k) fputs(", ", stdout);
        cli_json_string(stdout, s);
    }
    printf("], \"inputs\": [");
    for (int32_t k = 0; k < info.n_inputs; k++) {
        if (k) fputs(", ", stdout);
        s = kiln_engine_layer_input(e, i, k);
        if (s && *s)
            cli_json_string(stdout, s);
        else
            fputs("null", stdout);
    }
    printf("], \"outputs\": [");
    for (int32_t k = 0; k < info.n_outputs; k++) {
        if (k) fputs(", ", stdout);
        json_tensor(e, kiln_engine_layer_output(e, i, k));
    }
    printf("]}");
    return CLI_OK;
}

static int print_json(const char *plan, const kiln_engine *e)
{
    /* Layers first: a failure must not leave half an object on stdout. */
    kiln_layer_info info;
    for (int32_t i = 0; i < kiln_engine_num_layers(e); i++) {
        kiln_status st = kiln_engine_layer_info(e, i, &info);
        if (st != KILN_OK) return cli_kiln_error(st, "layer %d", (int)i);
    }
    printf("{\"plan\": ");
    cli_json_string(stdout, plan);
    printf(", \"kiln\": ");
    cli_json_string(stdout, kiln_version());
    printf(", \"device\": ");
    cli_json_string(stdout, kiln_engine_device(e));
    printf(", \"threads\": %d, \"build_info\": ", (int)kiln_engine_threads(e));
    cli_json_string(stdout, kiln_engine_build_info(e));
    printf(", \"inputs\": ");
    json_io(e, KILN_IO_INPUT);
    printf(", \"outputs\": ");
    json_io(e, KILN_IO_OUTPUT);
    printf(", \"dynamic\": %s, \"profiles\": ", cli_engine_is_dynamic(e) ? "true" : "false");
    json_profiles(e);
    printf(", \"layers\": [");
    for (int32_t i = 0; i < kiln_engine_num_layers(e); i++) {
        if (i) fputs(", ", stdout);
        json_layer(e, i);
    }
    printf("], \"arena_bytes\": %zu, \"activation_bytes\": %zu, \"weight_bytes\": %zu}\n",
           kiln_engine_arena_bytes(e), kiln_engine_activation_bytes(e),
           kiln_engine_weight_bytes(e));
    return CLI_OK;
}

/* ---- the Graphviz form ---- */

/* Who writes a tensor: network input i is node "i<i>", layer i is "l<i>". */
typedef struct producer {
    const char *name;
    char kind;
    int32_t index;
} producer;

static int by_name(const void *a, const void *b)
{
    return strcmp(((const producer *)a)->name, ((const producer *)b)->name);
}

static const producer *find_producer(const producer *p, size_t n, const char *name)
{
    producer key = {name, 0, 0};
    return bsearch(&key, p, n, sizeof *p, by_name);
}

/* A DOT string's contents: quotes and backslashes escaped. */
static void dot_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
}

/* The label of an edge: the tensor's name and shape. */
static void dot_edge(FILE *f, const kiln_engine *e, const producer *from, const char *to,
                     const char *tensor)
{
    kiln_dims shape = {0};
    char buf[160];
    kiln_engine_tensor_info(e, tensor, NULL, &shape);
    fprintf(f, "  %c%d -> %s [label=\"", from->kind, (int)from->index, to);
    dot_text(f, tensor);
    fprintf(f, "\\n%s\"];\n", cli_dims_str(&shape, buf, sizeof buf));
}

static int write_dot_body(FILE *f, const kiln_engine *e, producer *p, size_t np)
{
    int32_t n_io = kiln_engine_num_io(e), n_layers = kiln_engine_num_layers(e);
    kiln_layer_info info;
    char to[32];
    fprintf(f, "digraph kiln {\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n"
               "  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (int32_t i = 0; i < n_io; i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dims shape = {0};
        kiln_dtype dtype = KILN_DTYPE_UNDEFINED;
        char buf[160];
        kiln_engine_tensor_info(e, name, &dtype, &shape);
        fprintf(f, "  %s%d [shape=ellipse, label=\"",
                kiln_engine_io_mode(e, name) == KILN_IO_INPUT ? "i" : "o", (int)i);
        dot_text(f, name);
        fprintf(f, "\\n%s %s\"];\n", kiln_dtype_name(dtype), cli_dims_str(&shape, buf, sizeof buf));
    }
    for (int32_t i = 0; i < n_layers; i++) {
        kiln_status st = kiln_engine_layer_info(e, i, &info);
        if (st != KILN_OK) return cli_kiln_error(st, "layer %d", (int)i);
        fprintf(f, "  l%d [label=\"", (int)i);
        dot_text(f, info.name);
        fputs("\\n", f);
        dot_text(f, info.op);
        if (is_fused(e, i)) {
            const char *part;
            fputs("\\n[", f);
            for (int32_t k = 0; (part = kiln_engine_layer_fused_from(e, i, k)) != NULL; k++) {
                if (k) fputs(" + ", f);
                dot_text(f, part);
            }
            fputs("]", f);
        }
        fputs("\\n", f);
        dot_text(f, info.kernel);
        fputs(" ", f);
        dot_text(f, info.precision);
        fprintf(f, "\"%s];\n", is_fused(e, i) ? ", style=filled, fillcolor=\"#e8f0fe\"" : "");
    }
    /* Edges: tensors written by an input or a layer; constants (weights) are left out. */
    for (int32_t i = 0; i < n_layers; i++) {
        kiln_engine_layer_info(e, i, &info);
        snprintf(to, sizeof to, "l%d", (int)i);
        for (int32_t k = 0; k < info.n_inputs; k++) {
            const char *t = kiln_engine_layer_input(e, i, k);
            const producer *from = t && *t ? find_producer(p, np, t) : NULL;
            if (from) dot_edge(f, e, from, to, t);
        }
    }
    for (int32_t i = 0; i < n_io; i++) {
        const char *name = kiln_engine_io_name(e, i);
        const producer *from = find_producer(p, np, name);
        snprintf(to, sizeof to, "o%d", (int)i);
        if (kiln_engine_io_mode(e, name) == KILN_IO_OUTPUT && from) dot_edge(f, e, from, to, name);
    }
    fputs("}\n", f);
    return CLI_OK;
}

static int write_dot(const char *path, const kiln_engine *e)
{
    int32_t n_io = kiln_engine_num_io(e), n_layers = kiln_engine_num_layers(e);
    size_t cap = (size_t)n_io + 1, np = 0;
    kiln_layer_info info;
    for (int32_t i = 0; i < n_layers; i++)
        if (kiln_engine_layer_info(e, i, &info) == KILN_OK) cap += (size_t)info.n_outputs;
    producer *p = malloc(cap * sizeof *p);
    if (!p) return cli_error("out of memory writing '%s'", path);
    for (int32_t i = 0; i < n_io; i++) {
        const char *name = kiln_engine_io_name(e, i);
        if (kiln_engine_io_mode(e, name) == KILN_IO_INPUT) p[np++] = (producer){name, 'i', i};
    }
    for (int32_t i = 0; i < n_layers; i++) {
        if (kiln_engine_layer_info(e, i, &info) != KILN_OK) continue;
        for (int32_t k = 0; k < info.n_outputs; k++)
            p[np++] = (producer){kiln_engine_layer_output(e, i, k), 'l', i};
    }
    qsort(p, np, sizeof *p, by_name);
    FILE *f = fopen(path, "w");
    if (!f) {
        free(p);
        return cli_error("cannot write '%s': %s", path, strerror(errno));
    }
    int rc = write_dot_body(f, e, p, np);
    if (fclose(f) != 0 && rc == CLI_OK)
        rc = cli_error("writing '%s' failed: %s", path, strerror(errno));
    free(p);
    return rc;
}

/* A model's layers as written, before the optimizer: what `layers` below came from. */
static int print_network(const char *model, const char *weights)
{
    kiln_network *net = NULL;
    int rc = cli_open_network(model, weights, &net);
    if (rc != CLI_OK) return rc;
    int32_t n = kiln_network_num_layers(net);
    int w = 4;
    for (int32_t i = 0; i < n; i++) {
        int len = (int)strlen(kiln_network_layer_name(net, i));
        if (len > w) w = len;
    }
    printf("network layers before optimization (%d)\n", (int)n);
    printf("  %3s  %-*s  %s\n", "#", w, "name", "op");
    for (int32_t i = 0; i < n; i++)
        printf("  %3d  %-*s  %s\n", (int)i, w, kiln_network_layer_name(net, i),
               kiln_network_layer_op(net, i));
    fputc('\n', stdout);
    kiln_network_destroy(net);
    return CLI_OK;
}

static int inspect(const char *plan, const char *weights, bool json, const char *dot)
{
    kiln_engine *e = NULL;
    int rc = cli_open_engine_weights(plan, weights, &e);
    if (rc != CLI_OK) return rc;
    if (dot) rc = write_dot(dot, e);
    if (rc == CLI_OK && !json && cli_is_model(plan)) rc = print_network(plan, weights);
    if (rc == CLI_OK) rc = json ? print_json(plan, e) : print_text(plan, e);
    kiln_engine_destroy(e);
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    const char *plan = NULL, *weights = NULL, *dot = NULL, *a;
    bool json = false;
    cli_parser p;
    cli_parser_init(&p, argc, argv);
    while ((a = cli_next(&p)) != NULL) {
        if (!cli_is_option(&p)) {
            if (plan) return cli_usage_error("more than one PLAN ('%s' and '%s')", plan, a);
            plan = a;
        } else if (cli_match(&p, "--help", "-h")) {
            print_help();
            return CLI_OK;
        } else if (cli_match(&p, "--weights", NULL)) {
            if (!(weights = cli_value(&p))) return CLI_USAGE;
        } else if (cli_match(&p, "--json", NULL)) {
            if (!cli_no_value(&p)) return CLI_USAGE;
            json = true;
        } else if (cli_match(&p, "--dot", NULL)) {
            if (!(dot = cli_value(&p))) return CLI_USAGE;
        } else {
            return cli_unknown_option(&p);
        }
    }
    if (!plan) return cli_usage_error("missing PLAN");
    return inspect(plan, weights, json, dot);
}
