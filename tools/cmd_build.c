/* cmd_build.c - `kiln build`: turns a model into an optimized plan file and reports what
 * the builder did (its log, layer counts, memory and plan size). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "models.h"

static void print_help(void)
{
    printf("usage: kiln build MODEL -o PLAN [options]\n"
           "\n"
           "Optimizes MODEL for this machine and writes the engine to the plan file PLAN,\n"
           "which `kiln run`, `kiln bench` and `kiln inspect` (and kiln_engine_load) read.\n"
           "\n"
           "MODEL is an ONNX model file (opsets 7 to 28; external data is read from the\n"
           "model's directory), a Caffe deploy file (a MODEL ending in .prototxt, its trained\n"
           "weights from --weights), or one of the built-in networks:\n");
    for (int32_t i = 0; models_name(i); i++)
        printf("  %-9s %s\n", models_name(i), models_summary(i));
    printf("The built-ins' weights are deterministic pseudo-random numbers (splitmix64 with\n"
           "the fixed seed 0x%08x): every build gives the same plan. They exercise the\n"
           "optimizer and measure speed; their predictions mean nothing. An ONNX input with\n"
           "a symbolic dimension (dim_param) is dynamic: give its shape with --shapes, or\n"
           "its range with --min-shapes, --opt-shapes and --max-shapes.\n"
           "\n"
           "options:\n"
           "  -o PLAN               where to write the plan (required)\n"
           "  --batch N             batch size of a built-in network (default 1)\n"
           "  --shapes NAME:DIMS[,NAME:DIMS...]\n"
           "                        fix the shape of input NAME, e.g. data:8x1x28x28\n"
           "                        (repeatable; a range of one shape in profile 0); for a\n"
           "                        built-in network this makes the batch dimension dynamic\n"
           "                        and resolves it from DIMS\n"
           "  --min-shapes NAME:DIMS[,NAME:DIMS...]\n"
           "  --opt-shapes NAME:DIMS[,NAME:DIMS...]\n"
           "  --max-shapes NAME:DIMS[,NAME:DIMS...]\n"
           "                        dynamic shapes, as in trtexec: the smallest, the usual\n"
           "                        and the largest shape of each input in an optimization\n"
           "                        profile (repeatable). An input named in one of the three\n"
           "                        must be named in all three. The engine runs any shape in\n"
           "                        between without rebuilding: kernels are chosen for opt,\n"
           "                        memory is planned for max. For a built-in network they\n"
           "                        make the batch dimension dynamic\n"
           "  --profile             start the next optimization profile: the --min-shapes,\n"
           "                        --opt-shapes and --max-shapes after it describe profile 1,\n"
           "                        after a second --profile profile 2, ... (at most %d;\n"
           "                        every profile gives a range to every dynamic input).\n"
           "                        `kiln run` and `kiln bench` pick one with --profile K\n"
           "  --threads N           threads each context of the engine uses\n"
           "                        (default 0: one per hardware thread)\n"
           "  --device DEVICE       cpu (default) or cuda:N\n"
           "  --fp16, --bf16        also allow FP16 / BF16 kernels where accuracy allows\n"
           "  --timing-cache FILE   reuse and record the kernel timings (keyed by CPU model and\n"
           "                        kiln version): rebuilds skip timing, and the same model,\n"
           "                        options and cache give a byte-identical plan\n"
           "  --no-timing           take the backend's first kernel for every layer instead\n"
           "                        of timing the candidates (reproducible without a cache)\n"
           "  --disable-pass NAME   switch off an optimization pass (repeatable)\n"
           "  --list-passes         print the optimization passes in order and exit\n"
           "  -v, --verbose         log every builder decision (default: the INFO summary)\n"
           "  -h, --help            show this help\n"
           "\n"
           "Caffe models:\n"
           "  --weights FILE        the trained .caffemodel of the .prototxt MODEL\n"
           "  --output BLOB         mark blob BLOB as a network output (repeatable); by\n"
           "                        default every top no layer reads is an output\n"
           "  --max-batch N         build the batch dimension (dim 0) of every input as N\n"
           "                        instead of the prototxt's; the engine runs exactly N at\n"
           "                        a time. (The Caffe importer needs every input's shape,\n"
           "                        so Caffe models take no --min-shapes, --opt-shapes or\n"
           "                        --max-shapes and no batch range.)\n"
           "  --shapes NAME:DIMS    sets input NAME's shape; only its batch dimension may\n"
           "                        differ from the prototxt's\n"
           "\n"
           "The build log and a summary (with the profiles of a dynamic engine) go to\n"
           "stderr; stdout stays empty.\n",
           MODELS_SEED, KILN_MAX_PROFILES);
}

/* The shapes of one optimization profile: --min-shapes, --opt-shapes, --max-shapes. */
typedef struct profile_opts {
    cli_shapes bound[3]; /* indexed by kiln_profile_bound */
} profile_opts;

static const char *const g_bound_flag[3] = {"--min-shapes", "--opt-shapes", "--max-shapes"};

typedef struct build_opts {
    const char *model, *output, *device;
    const char *weights; /* Caffe: the caffemodel */
    const char **blobs;  /* Caffe: --output blob names */
    int n_blobs;
    long batch, threads, max_batch;
    int batch_given;
    uint32_t precisions;
    kiln_log_level log_level;
    cli_shapes shapes;                        /* --shapes: fixed shapes in profile 0 */
    profile_opts profiles[KILN_MAX_PROFILES]; /* --min/opt/max-shapes per profile */
    int n_profiles;                           /* 1 + each --profile after a shape */
    bool any_shapes;                          /* a shape option was seen */
    const char **disabled;                    /* pass names */
    int n_disabled;
    const char *timing_cache;
    bool no_timing;
} build_opts;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int list_passes(void)
{
    for (int32_t i = 0; kiln_pass_name(i); i++) printf("%s\n", kiln_pass_name(i));
    return CLI_OK;
}

/* Whether any --min-shapes, --opt-shapes or --max-shapes was given. */
static bool has_ranges(const build_opts *o)
{
    for (int p = 0; p < o->n_profiles; p++)
        for (int k = 0; k < 3; k++)
            if (o->profiles[p].bound[k].n > 0) return true;
    return false;
}

/* Every input named in one of --min-shapes, --opt-shapes, --max-shapes of a profile is
 * named in all three; no profile after --profile is empty; --shapes and the ranges of
 * profile 0 name different inputs. */
static int check_profiles(const build_opts *o)
{
    for (int p = 0; p < o->n_profiles; p++) {
        const profile_opts *po = &o->profiles[p];
        char where[64] = "";
        if (o->n_profiles > 1) snprintf(where, sizeof where, "profile %d: ", p);
        if (p > 0 && po->bound[0].n + po->bound[1].n + po->bound[2].n == 0)
            return cli_usage_error("--profile number %d is followed by no --min-shapes, "
                                   "--opt-shapes or --max-shapes",
                                   p);
        for (int k = 0; k < 3; k++) {
            for (int i = 0; i < po->bound[k].n; i++) {
                const char *name = po->bound[k].v[i].name;
                for (int j = 0; j < 3; j++)
                    if (!cli_shapes_find(&po->bound[j], name))
                        return cli_usage_error("%sinput '%s' is named in %s but not in %s (give "
                                               "each input's min, opt and max shapes)",
                                               where, name, g_bound_flag[k], g_bound_flag[j]);
                if (p == 0 && cli_shapes_find(&o->shapes, name))
                    return cli_usage_error("input '%s' is given both --shapes and %s; give a "
                                           "fixed shape or a range",
                                           name, g_bound_flag[k]);
            }
        }
    }
    return CLI_OK;
}

static int make_config(const build_opts *o, kiln_config **out)
{
    kiln_config *cfg = NULL;
    kiln_status st = kiln_config_create(&cfg);
    if (st != KILN_OK) return cli_kiln_error(st, "cannot create a build config");
    int rc = CLI_FAILED;
    if ((st = kiln_config_set_log_level(cfg, o->log_level)) != KILN_OK ||
        (st = kiln_config_set_threads(cfg, (int32_t)o->threads)) != KILN_OK) {
        cli_kiln_error(st, "bad build setting");
        goto fail;
    }
    if (o->device && (st = kiln_config_set_device(cfg, o->device)) != KILN_OK) {
        cli_kiln_error(st, "bad --device");
        goto fail;
    }
    if ((st = kiln_config_set_precisions(cfg, o->precisions)) != KILN_OK) {
        cli_kiln_error(st, "cannot allow the requested precisions");
        goto fail;
    }
    if (o->timing_cache && (st = kiln_config_set_timing_cache(cfg, o->timing_cache)) != KILN_OK) {
        cli_kiln_error(st, "--timing-cache %s", o->timing_cache);
        goto fail;
    }
    if (o->no_timing && (st = kiln_config_set_tactic_timing(cfg, 0)) != KILN_OK) {
        cli_kiln_error(st, "--no-timing");
        goto fail;
    }
    for (int i = 0; i < o->n_disabled; i++) {
        if ((st = kiln_config_disable_pass(cfg, o->disabled[i])) != KILN_OK) {
            cli_kiln_error(st, "--disable-pass %s", o->disabled[i]);
            goto fail;
        }
    }
    for (int i = 0; i < o->shapes.n; i++) {
        const cli_shape *s = &o->shapes.v[i];
        if ((st = kiln_config_set_input_shape(cfg, s->name, &s->dims)) != KILN_OK) {
            char buf[160];
            cli_kiln_error(st, "--shapes %s:%s", s->name, cli_dims_str(&s->dims, buf, sizeof buf));
            goto fail;
        }
    }
    /* check_profiles saw that min, opt and max name the same inputs. */
    for (int p = 0; p < o->n_profiles; p++) {
        const profile_opts *po = &o->profiles[p];
        for (int i = 0; i < po->bound[KILN_PROFILE_MIN].n; i++) {
            const char *name = po->bound[KILN_PROFILE_MIN].v[i].name;
            const cli_shape *b[3];
            for (int k = 0; k < 3; k++) b[k] = cli_shapes_find(&po->bound[k], name);
            st = kiln_config_set_shape_range(cfg, p, name, &b[0]->dims, &b[1]->dims, &b[2]->dims);
            if (st != KILN_OK) {
                /* Ranges out of order are a mistake on the command line. */
                rc = cli_usage_error("profile %d: %s", p, kiln_last_error());
                goto fail;
            }
        }
    }
    *out = cfg;
    return CLI_OK;
fail:
    kiln_config_destroy(cfg);
    return rc;
}

bool cli_is_caffe_file(const char *path)
{
    size_t n = strlen(path);
    return n > 9 && strcmp(path + n - 9, ".prototxt") == 0;
}

/* One input of a network: its name and shape. */
typedef struct input_decl {
    char name[512];
    kiln_dims dims;
} input_decl;

/* The inputs of a Caffe net with the prototxt's shapes. The public API tells a network's
 * inputs only once built, so this builds the net once (quietly, default settings). */
static int caffe_inputs(const build_opts *o, input_decl **out, int *count)
{
    kiln_network *net = NULL;
    kiln_config *cfg = NULL;
    kiln_engine *e = NULL;
    kiln_status st = kiln_network_create(&net);
    if (st == KILN_OK) st = kiln_caffe_parse_files(net, o->model, o->weights, o->blobs, o->n_blobs);
    if (st == KILN_OK) st = kiln_config_create(&cfg);
    if (st == KILN_OK) st = kiln_config_set_log_level(cfg, KILN_LOG_ERROR);
    if (st == KILN_OK) st = kiln_build(net, cfg, &e);
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    if (st != KILN_OK) return cli_kiln_error(st, "cannot import '%s'", o->model);
    int32_t n = kiln_engine_num_io(e);
    *out = calloc((size_t)n + 1, sizeof **out);
    *count = 0;
    if (!*out) {
        kiln_engine_destroy(e);
        return cli_error("out of memory");
    }
    for (int32_t i = 0; i < n; i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dtype dt;
        input_decl *d = &(*out)[*count];
        if (kiln_engine_io_mode(e, name) != KILN_IO_INPUT || strlen(name) >= sizeof d->name ||
            kiln_engine_tensor_info(e, name, &dt, &d->dims) != KILN_OK)
            continue;
        strcpy(d->name, name);
        (*count)++;
    }
    kiln_engine_destroy(e);
    return CLI_OK;
}

/* A Caffe net. --max-batch and --shapes work by declaring the inputs before the import
 * (the importer keeps a declared input when only its batch dimension differs). */
static int make_caffe_network(const build_opts *o, kiln_network **out)
{
    input_decl *decl = NULL;
    int n_decl = 0, rc = CLI_OK;
    if (o->max_batch > 0) {
        if ((rc = caffe_inputs(o, &decl, &n_decl)) != CLI_OK) return rc;
        for (int i = 0; i < n_decl; i++)
            if (decl[i].dims.rank > 0) decl[i].dims.d[0] = o->max_batch;
    } else if (o->shapes.n > 0) {
        decl = calloc((size_t)o->shapes.n, sizeof *decl);
        if (!decl) return cli_error("out of memory");
        for (; n_decl < o->shapes.n; n_decl++) {
            const cli_shape *s = &o->shapes.v[n_decl];
            if (strlen(s->name) >= sizeof decl[n_decl].name) {
                free(decl);
                return cli_usage_error("--shapes: the input name '%.40s...' is too long", s->name);
            }
            strcpy(decl[n_decl].name, s->name);
            decl[n_decl].dims = s->dims;
        }
    }
    kiln_status st = kiln_network_create(out);
    for (int i = 0; st == KILN_OK && i < n_decl; i++)
        st = kiln_network_add_input(*out, decl[i].name, KILN_DTYPE_F32, &decl[i].dims);
    if (st == KILN_OK)
        st = kiln_caffe_parse_files(*out, o->model, o->weights, o->blobs, o->n_blobs);
    free(decl);
    if (st != KILN_OK) return cli_kiln_error(st, "cannot import '%s'", o->model);
    return CLI_OK;
}

/* Makes the network of MODEL: an ONNX model file, a Caffe deploy file, or a built-in
 * network's name. */
static int make_network(const build_opts *o, kiln_network **out)
{
    struct stat st_file;
    if (cli_is_caffe_file(o->model)) return make_caffe_network(o, out);
    if (stat(o->model, &st_file) == 0) {
        kiln_status st = kiln_network_create(out);
        if (st == KILN_OK) st = kiln_onnx_parse_file(*out, o->model);
        if (st != KILN_OK) return cli_kiln_error(st, "cannot import '%s'", o->model);
        return CLI_OK;
    }
    if (!models_exists(o->model))
        return cli_error("no model '%s': not a file, and not a built-in model (" MODELS_LIST ")",
                         o->model);
    /* --shapes and the ranges leave the batch dynamic for the builder to fix, as with an
     * ONNX model exported with a symbolic batch dimension. */
    int64_t batch = o->shapes.n > 0 || has_ranges(o) ? -1 : (int64_t)o->batch;
    kiln_status st = models_create(o->model, batch, out);
    if (st != KILN_OK) return cli_kiln_error(st, "cannot define the built-in model '%s'", o->model);
    return CLI_OK;
}

static void print_summary(const build_opts *o, int32_t net_layers, const kiln_engine *e, double ms)
{
    char a[32], b[32], c[32], d[32];
    size_t arena = kiln_engine_arena_bytes(e), acts = kiln_engine_activation_bytes(e);
    struct stat st;
    size_t plan = stat(o->output, &st) == 0 ? (size_t)st.st_size : 0;
    fprintf(stderr, "kiln build: %s -> %s in %.1f ms\n", o->model, o->output, ms);
    fprintf(stderr, "  layers       %d in the network, %d in the engine\n", (int)net_layers,
            (int)kiln_engine_num_layers(e));
    fprintf(stderr, "  activations  arena %s for %s of activations",
            cli_bytes_str(arena, a, sizeof a), cli_bytes_str(acts, b, sizeof b));
    if (acts > 0) fprintf(stderr, " (%.0f%%)", 100.0 * (double)arena / (double)acts);
    fprintf(stderr, "\n  weights      %s\n",
            cli_bytes_str(kiln_engine_weight_bytes(e), c, sizeof c));
    fprintf(stderr, "  plan         %s (%zu bytes)\n", cli_bytes_str(plan, d, sizeof d), plan);
    if (cli_engine_is_dynamic(e)) {
        int32_t np = kiln_engine_num_profiles(e);
        fprintf(stderr, "  profiles     %d (memory planned for the largest shapes)\n", (int)np);
        cli_print_profiles(stderr, e, "    ");
    }
}

/* Defines the network, configures and runs the builder; `net_layers` gets the network's
 * layer count for the summary. */
static int build_engine(const build_opts *o, kiln_engine **out, int32_t *net_layers)
{
    kiln_network *net = NULL;
    kiln_config *cfg = NULL;
    int rc = make_network(o, &net);
    if (rc == CLI_OK) rc = make_config(o, &cfg);
    if (rc == CLI_OK) {
        *net_layers = kiln_network_num_layers(net);
        kiln_status st = kiln_build(net, cfg, out);
        if (st != KILN_OK) rc = cli_kiln_error(st, "building '%s' failed", o->model);
    }
    kiln_config_destroy(cfg);
    kiln_network_destroy(net);
    return rc;
}

static int build(const build_opts *o)
{
    kiln_engine *engine = NULL;
    int32_t net_layers = 0;
    cli_install_logger(o->log_level);
    double t0 = now_ms();
    int rc = build_engine(o, &engine, &net_layers);
    double ms = now_ms() - t0;
    if (rc != CLI_OK) return rc;
    kiln_status st = kiln_engine_save(engine, o->output);
    if (st != KILN_OK)
        rc = cli_kiln_error(st, "cannot write the plan '%s'", o->output);
    else
        print_summary(o, net_layers, engine, ms);
    kiln_engine_destroy(engine);
    return rc;
}

bool cli_is_onnx_file(const char *path)
{
    size_t n = strlen(path);
    struct stat st;
    return n > 5 && strcmp(path + n - 5, ".onnx") == 0 && stat(path, &st) == 0;
}

int cli_open_engine(const char *arg, kiln_engine **out)
{
    return cli_open_engine_weights(arg, NULL, out);
}

int cli_open_network(const char *arg, const char *weights, kiln_network **out)
{
    build_opts o = {.model = arg,
                    .weights = weights,
                    .batch = 1,
                    .precisions = KILN_PRECISION_FP32,
                    .log_level = KILN_LOG_WARNING};
    *out = NULL;
    int rc = make_network(&o, out);
    if (rc != CLI_OK) {
        kiln_network_destroy(*out);
        *out = NULL;
    }
    return rc;
}

bool cli_is_model(const char *arg)
{
    struct stat st;
    return (stat(arg, &st) != 0 && models_exists(arg)) || cli_is_onnx_file(arg) ||
           cli_is_caffe_file(arg);
}

int cli_open_engine_weights(const char *arg, const char *weights, kiln_engine **out)
{
    struct stat st;
    *out = NULL;
    cli_install_logger(KILN_LOG_WARNING);
    if ((stat(arg, &st) != 0 && models_exists(arg)) || cli_is_onnx_file(arg) ||
        cli_is_caffe_file(arg)) {
        build_opts o = {.model = arg,
                        .weights = weights,
                        .batch = 1,
                        .precisions = KILN_PRECISION_FP32,
                        .log_level = KILN_LOG_WARNING};
        int32_t net_layers;
        return build_engine(&o, out, &net_layers);
    }
    kiln_status s = kiln_engine_load(arg, out);
    if (s == KILN_OK) return CLI_OK;
    /* The loader's message usually names the file already. */
    if (strstr(kiln_last_error(), arg)) return cli_kiln_error(s, "cannot load the plan");
    return cli_kiln_error(s, "cannot load the plan '%s'", arg);
}

int cmd_build(int argc, char **argv)
{
    build_opts o = {
        .batch = 1, .precisions = KILN_PRECISION_FP32, .log_level = KILN_LOG_INFO, .n_profiles = 1};
    /* At most one name per argument, so argc bounds both lists. */
    o.disabled = calloc((size_t)argc, sizeof *o.disabled);
    o.blobs = calloc((size_t)argc, sizeof *o.blobs);
    int rc = CLI_OK;
    if (!o.disabled || !o.blobs) {
        rc = cli_error("out of memory");
        goto done;
    }
    cli_parser p;
    cli_parser_init(&p, argc, argv);
    const char *a, *v;
    while (rc == CLI_OK && (a = cli_next(&p)) != NULL) {
        if (!cli_is_option(&p)) {
            if (o.model) rc = cli_usage_error("more than one MODEL ('%s' and '%s')", o.model, a);
            o.model = a;
        } else if (cli_match(&p, "--help", "-h")) {
            print_help();
            goto done;
        } else if (cli_match(&p, "--list-passes", NULL)) {
            rc = cli_no_value(&p) ? list_passes() : CLI_USAGE;
            goto done;
        } else if (cli_match(&p, "-o", NULL)) {
            if (!(v = cli_value(&p))) rc = CLI_USAGE;
            o.output = v;
        } else if (cli_match(&p, "--output", NULL)) {
            if (!(v = cli_value(&p))) rc = CLI_USAGE;
            o.blobs[o.n_blobs++] = v;
        } else if (cli_match(&p, "--weights", NULL)) {
            if (!(o.weights = cli_value(&p))) rc = CLI_USAGE;
        } else if (cli_match(&p, "--max-batch", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--max-batch", v, 1, 1L << 20, &o.max_batch))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--batch", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--batch", v, 1, 1L << 20, &o.batch))
                rc = CLI_USAGE;
            o.batch_given = 1;
        } else if (cli_match(&p, "--shapes", NULL)) {
            rc = (v = cli_value(&p)) ? cli_shapes_parse(&o.shapes, "--shapes", v) : CLI_USAGE;
            o.any_shapes = true;
        } else if (cli_match(&p, "--min-shapes", NULL) || cli_match(&p, "--opt-shapes", NULL) ||
                   cli_match(&p, "--max-shapes", NULL)) {
            int k = cli_match(&p, "--min-shapes", NULL)   ? KILN_PROFILE_MIN
                    : cli_match(&p, "--opt-shapes", NULL) ? KILN_PROFILE_OPT
                                                          : KILN_PROFILE_MAX;
            cli_shapes *list = &o.profiles[o.n_profiles - 1].bound[k];
            rc = (v = cli_value(&p)) ? cli_shapes_parse(list, g_bound_flag[k], v) : CLI_USAGE;
            o.any_shapes = true;
        } else if (cli_match(&p, "--profile", NULL)) {
            /* A --profile before any shape is allowed: it starts profile 0. */
            if (!cli_no_value(&p))
                rc = CLI_USAGE;
            else if (o.any_shapes && o.n_profiles == KILN_MAX_PROFILES)
                rc = cli_usage_error("at most %d profiles", KILN_MAX_PROFILES);
            else if (o.any_shapes)
                o.n_profiles++;
        } else if (cli_match(&p, "--threads", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--threads", v, 0, 4096, &o.threads))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--device", NULL)) {
            if (!(o.device = cli_value(&p))) rc = CLI_USAGE;
        } else if (cli_match(&p, "--timing-cache", NULL)) {
            if (!(o.timing_cache = cli_value(&p))) rc = CLI_USAGE;
        } else if (cli_match(&p, "--no-timing", NULL)) {
            o.no_timing = true;
            if (!cli_no_value(&p)) rc = CLI_USAGE;
        } else if (cli_match(&p, "--disable-pass", NULL)) {
            if (!(v = cli_value(&p))) rc = CLI_USAGE;
            o.disabled[o.n_disabled++] = v;
        } else if (cli_match(&p, "--fp16", NULL)) {
            o.precisions |= KILN_PRECISION_FP16;
            if (!cli_no_value(&p)) rc = CLI_USAGE;
        } else if (cli_match(&p, "--bf16", NULL)) {
            o.precisions |= KILN_PRECISION_BF16;
            if (!cli_no_value(&p)) rc = CLI_USAGE;
        } else if (cli_match(&p, "--verbose", "-v")) {
            o.log_level = KILN_LOG_VERBOSE;
            if (!cli_no_value(&p)) rc = CLI_USAGE;
        } else {
            rc = cli_unknown_option(&p);
        }
    }
    if (rc != CLI_OK) goto done;
    bool caffe = o.model && cli_is_caffe_file(o.model);
    /* Before Caffe import, --output was the long form of -o; it still is for other models. */
    if (o.model && !caffe && !o.output && o.n_blobs == 1) o.output = o.blobs[0], o.n_blobs = 0;
    if (!o.model) {
        rc = cli_usage_error("missing MODEL");
    } else if (!caffe && (o.weights || o.n_blobs || o.max_batch)) {
        rc = cli_usage_error("--weights, --output and --max-batch are for Caffe models (a MODEL "
                             "ending in .prototxt)");
    } else if (caffe && has_ranges(&o)) {
        rc = cli_usage_error("a Caffe model takes fixed input shapes (its importer needs each "
                             "input's shape): give --max-batch N or --shapes, not "
                             "--min-shapes/--opt-shapes/--max-shapes");
    } else if (o.max_batch && o.shapes.n > 0) {
        rc = cli_usage_error("--max-batch and --shapes both set the batch size; give one of them");
    } else if (!o.output) {
        rc = cli_usage_error("missing -o PLAN (where to write the plan)");
    } else if (o.batch_given && (o.shapes.n > 0 || has_ranges(&o))) {
        rc = cli_usage_error("--batch and --%s both set the batch size; give one of them",
                             o.shapes.n > 0 ? "shapes" : "min-shapes/--opt-shapes/--max-shapes");
    } else if ((rc = check_profiles(&o)) == CLI_OK) {
        rc = build(&o);
    }
done:
    cli_shapes_free(&o.shapes);
    for (int i = 0; i < KILN_MAX_PROFILES; i++)
        for (int k = 0; k < 3; k++) cli_shapes_free(&o.profiles[i].bound[k]);
    free(o.disabled);
    free(o.blobs);
    return rc;
}
