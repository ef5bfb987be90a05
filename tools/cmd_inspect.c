/* cmd_inspect.c - `kiln inspect`: what a plan holds (I/O tensors, the layers with their
 * kernels and precisions, memory) in a form meant for people. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void print_help(void)
{
    printf("usage: kiln inspect PLAN\n"
           "\n"
           "Prints what the plan file PLAN holds: its build record (the kiln version that built\n"
           "it, plan format, layer counts), the kiln reading it, the device and thread count\n"
           "it was built for, its input and output tensors with dtype and shape, a table of\n"
           "its layers (index, name, op, chosen kernel, precision, inputs -> outputs with\n"
           "shapes), the activation arena against the sum of all activations, and the\n"
           "weight bytes. PLAN may also name a built-in model (e.g. lenet), which is then\n"
           "built in memory with default settings; so may an ONNX model (PLAN ending in .onnx)\n"
           "or a Caffe deploy file (PLAN ending in .prototxt, with --weights).\n"
           "\n"
           "options:\n"
           "  --weights F  the caffemodel of a Caffe deploy file given as PLAN\n"
           "  -h, --help   show this help\n");
}

/* "name[1x3x224x224]"; weights and activations alike. */
static void print_tensor(const kiln_engine *e, const char *name)
{
    kiln_dtype dtype;
    kiln_dims shape;
    char buf[160];
    if (!name || !*name) {
        fputs("-", stdout); /* an absent optional input */
        return;
    }
    if (kiln_engine_tensor_info(e, name, &dtype, &shape) == KILN_OK)
        printf("%s[%s]", name, cli_dims_str(&shape, buf, sizeof buf));
    else
        printf("%s[?]", name);
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
        printf("  %-*s  %-4s  %s\n", width, name, kiln_dtype_name(dtype),
               cli_dims_str(&shape, buf, sizeof buf));
    }
}

static int max_int(int a, int b) { return a > b ? a : b; }

static int print_layers(const kiln_engine *e)
{
    int32_t n = kiln_engine_num_layers(e);
    int wi = max_int(1, snprintf(NULL, 0, "%d", (int)n - 1)), wn = 4, wo = 2, wk = 6, wp = 9;
    kiln_layer_info info;
    for (int32_t i = 0; i < n; i++) {
        kiln_status st = kiln_engine_layer_info(e, i, &info);
        if (st != KILN_OK) return cli_kiln_error(st, "layer %d", (int)i);
        wn = max_int(wn, (int)strlen(info.name));
        wo = max_int(wo, (int)strlen(info.op));
        wk = max_int(wk, (int)strlen(info.kernel));
        wp = max_int(wp, (int)strlen(info.precision));
    }
    printf("layers (%d)\n", (int)n);
    printf("  %*s  %-*s  %-*s  %-*s  %-*s  %s\n", wi, "#", wn, "name", wo, "op", wk, "kernel", wp,
           "precision", "inputs -> outputs");
    for (int32_t i = 0; i < n; i++) {
        kiln_engine_layer_info(e, i, &info);
        printf("  %*d  %-*s  %-*s  %-*s  %-*s  ", wi, (int)i, wn, info.name, wo, info.op, wk,
               info.kernel, wp, info.precision);
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

static int inspect(const char *plan, const char *weights)
{
    kiln_engine *e = NULL;
    int rc = cli_open_engine_weights(plan, weights, &e);
    if (rc != CLI_OK) return rc;
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
    fputc('\n', stdout);
    rc = print_layers(e);
    if (rc == CLI_OK) {
        fputc('\n', stdout);
        print_memory(e);
    }
    kiln_engine_destroy(e);
    return rc;
}

int cmd_inspect(int argc, char **argv)
{
    const char *plan = NULL, *weights = NULL, *a;
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
        } else {
            return cli_unknown_option(&p);
        }
    }
    if (!plan) return cli_usage_error("missing PLAN");
    return inspect(plan, weights);
}
