/* cmd_run.c - `kiln run`: loads a plan, binds inputs read from .npy files, runs once and
 * writes every output as DIR/NAME.npy. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "npy.h"

static void print_help(void)
{
    printf("usage: kiln run PLAN --input NAME=FILE.npy ... --output-dir DIR [options]\n"
           "\n"
           "Runs the engine in PLAN once. Every input of the plan must be given as a .npy\n"
           "file of the input's dtype and shape (see `kiln inspect PLAN`); for an engine\n"
           "with dynamic shapes, any shape inside the optimization profile (profile 0, or\n"
           "the one --profile picks), and the outputs take the shapes that follow. Each\n"
           "output is written to DIR/NAME.npy, with characters of NAME other than A-Z a-z\n"
           "0-9 . _ - replaced by '_', and described on stdout in one line: name, shape,\n"
           "dtype, file. PLAN may also name a built-in model (e.g. lenet), which is then\n"
           "built in memory with default settings.\n"
           "\n"
           "options:\n"
           "  -i, --input NAME=FILE  the .npy file for input NAME (one per input)\n"
           "  -d, --output-dir DIR   where to write the outputs (created if missing;\n"
           "                         default: the current directory)\n"
           "  --profile K            the optimization profile the input shapes must fit\n"
           "                         (default 0; `kiln inspect PLAN` lists them)\n"
           "  --threads N            threads to run with (default 0: the plan's setting)\n"
           "  -h, --help             show this help\n");
}

typedef struct run_state {
    kiln_engine *engine;
    kiln_context *ctx;
    int32_t n_io;
    const char **files; /* per I/O index: the .npy path of an input, or NULL */
    npy_array *arrays;  /* per I/O index: input data read, or output data to write */
} run_state;

/* mkdir -p: creates DIR and its missing parents. */
static int make_dirs(const char *dir)
{
    size_t n = strlen(dir);
    char *path = malloc(n + 1);
    if (!path) return cli_error("out of memory");
    memcpy(path, dir, n + 1);
    int rc = CLI_OK;
    for (size_t i = 1; i <= n && rc == CLI_OK; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        struct stat st;
        /* Look before creating: mkdir on an existing read-only parent can fail with
         * EROFS or EACCES rather than EEXIST. */
        if (stat(path, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) rc = cli_error("'%s' exists and is not a directory", path);
        } else if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            rc = cli_error("cannot create the directory '%s': %s", path, strerror(errno));
        }
        path[i] = saved;
    }
    free(path);
    return rc;
}

/* Records NAME=FILE for the plan's input NAME. */
static int add_input_spec(run_state *s, const char *spec)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || eq[1] == '\0')
        return cli_usage_error("--input expects NAME=FILE.npy, got '%s'", spec);
    int name_len = (int)(eq - spec);
    for (int32_t i = 0; i < s->n_io; i++) {
        const char *name = kiln_engine_io_name(s->engine, i);
        if (!name || strlen(name) != (size_t)name_len || strncmp(name, spec, (size_t)name_len))
            continue;
        if (kiln_engine_io_mode(s->engine, name) != KILN_IO_INPUT)
            return cli_usage_error("'%s' is an output of the plan, not an input", name);
        if (s->files[i]) return cli_usage_error("input '%s' is given twice", name);
        s->files[i] = eq + 1;
        return CLI_OK;
    }
    return cli_usage_error("the plan has no input named '%.*s'", name_len, spec);
}

/* Every input must be given; names all the missing ones at once. */
static int check_all_inputs_given(const run_state *s)
{
    char missing[1024] = "";
    size_t len = 0;
    int count = 0;
    for (int32_t i = 0; i < s->n_io; i++) {
        const char *name = kiln_engine_io_name(s->engine, i);
        if (kiln_engine_io_mode(s->engine, name) != KILN_IO_INPUT || s->files[i]) continue;
        int n = snprintf(missing + len, sizeof missing - len, "%s'%s'", count ? ", " : "", name);
        if (n > 0 && (size_t)n < sizeof missing - len) len += (size_t)n;
        count++;
    }
    if (count == 0) return CLI_OK;
    return cli_usage_error("missing input%s %s (give --input NAME=FILE.npy for each)",
                           count > 1 ? "s" : "", missing);
}

static int bind_input(run_state *s, int32_t i)
{
    const char *name = kiln_engine_io_name(s->engine, i), *file = s->files[i];
    npy_array *a = &s->arrays[i];
    kiln_dtype dtype;
    kiln_dims largest;
    char err[512], gs[160];
    kiln_status st = kiln_engine_tensor_info(s->engine, name, &dtype, &largest);
    if (st != KILN_OK) return cli_kiln_error(st, "input '%s'", name);
    if (npy_read(file, a, err, sizeof err) != 0)
        return cli_error("input '%s': cannot read '%s': %s", name, file, err);
    if (a->dtype != dtype)
        return cli_error("input '%s': expected dtype %s, found %s (shape %s) in '%s'", name,
                         kiln_dtype_name(dtype), kiln_dtype_name(a->dtype),
                         cli_dims_str(&a->shape, gs, sizeof gs), file);
    /* The context checks the shape against the profile; its message names the input, the
     * dimension and the range allowed. */
    if ((st = kiln_context_set_input_shape(s->ctx, name, &a->shape)) != KILN_OK)
        return cli_kiln_error(st, "'%s' holds %s %s", file, kiln_dtype_name(a->dtype),
                              cli_dims_str(&a->shape, gs, sizeof gs));
    /* A zero-sized tensor still needs a non-NULL pointer to bind. */
    static char empty;
    if ((st = kiln_context_set_tensor(s->ctx, name, a->data ? a->data : &empty)) != KILN_OK)
        return cli_kiln_error(st, "cannot bind input '%s'", name);
    return CLI_OK;
}

/* Allocates and binds the buffer of output i in the shape the bound inputs give. */
static int bind_output(run_state *s, int32_t i)
{
    const char *name = kiln_engine_io_name(s->engine, i);
    npy_array *a = &s->arrays[i];
    kiln_dims build_shape;
    size_t count;
    kiln_status st = kiln_engine_tensor_info(s->engine, name, &a->dtype, &build_shape);
    if (st == KILN_OK) st = kiln_context_tensor_shape(s->ctx, name, &a->shape);
    if (st != KILN_OK) return cli_kiln_error(st, "output '%s'", name);
    size_t es = kiln_dtype_size(a->dtype);
    if (!cli_dims_count(&a->shape, &count) || es == 0 || (count && es > SIZE_MAX / count))
        return cli_error("output '%s' has an unusable shape or dtype", name);
    a->nbytes = count * es;
    a->data = malloc(a->nbytes ? a->nbytes : 1);
    if (!a->data) return cli_error("out of memory for output '%s' (%zu bytes)", name, a->nbytes);
    if ((st = kiln_context_set_tensor(s->ctx, name, a->data)) != KILN_OK)
        return cli_kiln_error(st, "cannot bind output '%s'", name);
    return CLI_OK;
}

/* Characters kept in output file names; others become '_'. */
static char safe_char(char c)
{
    int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    return ok ? c : '_';
}

/* Whether two names map to the same file name. */
static int same_file_name(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (safe_char(*a) != safe_char(*b)) return 0;
    return *a == *b;
}

/* DIR/NAME.npy with NAME reduced to characters safe in any file system; a name that
 * collides with an earlier output's gets the output's index appended. */
static char *output_path(const run_state *s, const char *dir, int32_t index)
{
    const char *name = kiln_engine_io_name(s->engine, index);
    size_t dl = strlen(dir), nl = strlen(name), cap = dl + nl + 32;
    char *path = malloc(cap);
    if (!path) return NULL;
    size_t len = (size_t)snprintf(path, cap, "%s/", dir);
    for (size_t i = 0; i < nl; i++) path[len++] = safe_char(name[i]);
    if (nl == 0) path[len++] = '_';
    path[len] = '\0';
    for (int32_t j = 0; j < index; j++) {
        const char *other = kiln_engine_io_name(s->engine, j);
        if (kiln_engine_io_mode(s->engine, other) == KILN_IO_OUTPUT &&
            same_file_name(other, name)) {
            len += (size_t)snprintf(path + len, cap - len, "_%d", (int)index);
            break;
        }
    }
    snprintf(path + len, cap - len, ".npy");
    return path;
}

static int write_outputs(const run_state *s, const char *dir)
{
    for (int32_t i = 0; i < s->n_io; i++) {
        const char *name = kiln_engine_io_name(s->engine, i);
        if (kiln_engine_io_mode(s->engine, name) != KILN_IO_OUTPUT) continue;
        const npy_array *a = &s->arrays[i];
        char *path = output_path(s, dir, i);
        char err[512], shape[160];
        if (!path) return cli_error("out of memory");
        if (npy_write(path, a->dtype, &a->shape, a->data, a->nbytes, err, sizeof err) != 0) {
            cli_error("output '%s': cannot write '%s': %s", name, path, err);
            free(path);
            return CLI_FAILED;
        }
        printf("%s  %s  %s  %s\n", name, cli_dims_str(&a->shape, shape, sizeof shape),
               kiln_dtype_name(a->dtype), path);
        free(path);
    }
    return CLI_OK;
}

static int run(const char *plan, const char **specs, int n_specs, const char *dir, long threads,
               long profile)
{
    run_state s = {0};
    kiln_status st;
    int rc = cli_open_engine(plan, &s.engine);
    if (rc != CLI_OK) return rc;
    s.n_io = kiln_engine_num_io(s.engine);
    s.files = calloc((size_t)s.n_io + 1, sizeof *s.files);
    s.arrays = calloc((size_t)s.n_io + 1, sizeof *s.arrays);
    if (!s.files || !s.arrays) {
        rc = cli_error("out of memory");
        goto done;
    }
    for (int i = 0; i < n_specs && rc == CLI_OK; i++) rc = add_input_spec(&s, specs[i]);
    if (rc == CLI_OK) rc = check_all_inputs_given(&s);
    if (rc != CLI_OK) goto done;
    if ((st = kiln_context_create(s.engine, &s.ctx)) != KILN_OK) {
        rc = cli_kiln_error(st, "cannot create an execution context");
        goto done;
    }
    if (threads > 0 && (st = kiln_context_set_threads(s.ctx, (int32_t)threads)) != KILN_OK) {
        rc = cli_kiln_error(st, "--threads %ld", threads);
        goto done;
    }
    int32_t np = kiln_engine_num_profiles(s.engine);
    if (profile >= np) {
        rc = cli_usage_error("--profile %ld: the plan has %d profile%s (0 to %d)", profile, (int)np,
                             np == 1 ? "" : "s", (int)np - 1);
        goto done;
    }
    if ((st = kiln_context_set_profile(s.ctx, (int32_t)profile)) != KILN_OK) {
        rc = cli_kiln_error(st, "--profile %ld", profile);
        goto done;
    }
    /* Inputs first: their shapes decide the outputs' shapes. */
    for (int32_t i = 0; i < s.n_io && rc == CLI_OK; i++)
        if (s.files[i]) rc = bind_input(&s, i);
    for (int32_t i = 0; i < s.n_io && rc == CLI_OK; i++)
        if (kiln_engine_io_mode(s.engine, kiln_engine_io_name(s.engine, i)) == KILN_IO_OUTPUT)
            rc = bind_output(&s, i);
    if (rc != CLI_OK) goto done;
    if ((st = kiln_context_run(s.ctx)) != KILN_OK) {
        rc = cli_kiln_error(st, "running '%s' failed", plan);
        goto done;
    }
    rc = make_dirs(dir);
    if (rc == CLI_OK) rc = write_outputs(&s, dir);
done:
    for (int32_t i = 0; s.arrays && i < s.n_io; i++) npy_free(&s.arrays[i]);
    free(s.arrays);
    free(s.files);
    kiln_context_destroy(s.ctx);
    kiln_engine_destroy(s.engine);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    const char *plan = NULL, *dir = ".", *v;
    long threads = 0, profile = 0;
    int n_specs = 0, rc = CLI_OK;
    const char **specs = calloc((size_t)argc, sizeof *specs); /* one per argument at most */
    if (!specs) return cli_error("out of memory");
    cli_parser p;
    cli_parser_init(&p, argc, argv);
    const char *a;
    while (rc == CLI_OK && (a = cli_next(&p)) != NULL) {
        if (!cli_is_option(&p)) {
            if (plan) rc = cli_usage_error("more than one PLAN ('%s' and '%s')", plan, a);
            plan = a;
        } else if (cli_match(&p, "--help", "-h")) {
            print_help();
            goto done;
        } else if (cli_match(&p, "--input", "-i")) {
            if (!(v = cli_value(&p))) rc = CLI_USAGE;
            specs[n_specs++] = v;
        } else if (cli_match(&p, "--output-dir", "-d")) {
            if (!(dir = cli_value(&p))) rc = CLI_USAGE;
        } else if (cli_match(&p, "--threads", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--threads", v, 0, 4096, &threads))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--profile", NULL)) {
            if (!(v = cli_value(&p)) ||
                !cli_parse_int("--profile", v, 0, KILN_MAX_PROFILES - 1, &profile))
                rc = CLI_USAGE;
        } else {
            rc = cli_unknown_option(&p);
        }
    }
    if (rc == CLI_OK && !plan) rc = cli_usage_error("missing PLAN");
    if (rc == CLI_OK) rc = run(plan, specs, n_specs, dir, threads, profile);
done:
    free(specs);
    return rc;
}
