/* cmd_bench.c - `kiln bench`: latency and throughput of a plan on seeded random inputs,
 * as a table for people or one JSON object for scripts. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Seed of the random inputs, fixed so that runs are comparable. */
#define BENCH_SEED 42u

static void print_help(void)
{
    printf("usage: kiln bench PLAN [options]\n"
           "\n"
           "Measures the engine in PLAN: fills every input with pseudo-random values (seed\n"
           "%u; floats uniform in [-1, 1), integers 0, booleans 0 or 1), runs the warm-up,\n"
           "then times each of the timed runs alone with the monotonic clock and prints\n"
           "latency (min, median, mean, p90, p99, max in milliseconds) and throughput (runs\n"
           "per second; one run infers the plan's whole batch). PLAN may also name a\n"
           "built-in model (e.g. lenet), which is then built in memory with default settings.\n"
           "\n"
           "options:\n"
           "  --warmup N           untimed runs first (default 10)\n"
           "  -n, --iterations N   timed runs (default 100)\n"
           "  --threads N          threads to run with (default 0: the plan's setting)\n"
           "  --json               print one JSON object instead of the table; its keys:\n"
           "                       plan, device, threads, warmup, iterations, min_ms,\n"
           "                       median_ms, mean_ms, p90_ms, p99_ms, max_ms,\n"
           "                       throughput_per_s\n"
           "  -h, --help           show this help\n",
           BENCH_SEED);
}

typedef struct bench_opts {
    const char *plan;
    long warmup, iterations, threads;
    int json;
} bench_opts;

typedef struct bench_stats {
    double min, median, mean, p90, p99, max, throughput;
} bench_stats;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void fill_random(cli_rng *rng, kiln_dtype dtype, void *data, size_t count)
{
    /* Integer inputs are usually indices or sizes: 0 is valid for nearly every model. */
    memset(data, 0, count * kiln_dtype_size(dtype));
    for (size_t i = 0; i < count; i++) {
        float f = cli_rng_uniform(rng, -1.0f, 1.0f);
        switch (dtype) {
        case KILN_DTYPE_F32: ((float *)data)[i] = f; break;
        case KILN_DTYPE_F16: ((uint16_t *)data)[i] = cli_f32_to_f16(f); break;
        case KILN_DTYPE_BF16: ((uint16_t *)data)[i] = cli_f32_to_bf16(f); break;
        case KILN_DTYPE_BOOL: ((uint8_t *)data)[i] = f >= 0.0f; break;
        default: break;
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static double percentile(const double *sorted, long n, double p)
{
    long rank = (long)ceil(p * (double)n);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static void summarize(double *ms, long n, bench_stats *s)
{
    double sum = 0;
    for (long i = 0; i < n; i++) sum += ms[i];
    qsort(ms, (size_t)n, sizeof *ms, cmp_double);
    s->min = ms[0];
    s->max = ms[n - 1];
    s->median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    s->mean = sum / (double)n;
    s->p90 = percentile(ms, n, 0.90);
    s->p99 = percentile(ms, n, 0.99);
    s->throughput = sum > 0 ? 1000.0 * (double)n / sum : 0.0;
}

static void report(const bench_opts *o, const kiln_engine *e, int32_t threads, const bench_stats *s)
{
    if (o->json) {
        printf("{\"plan\": ");
        cli_json_string(stdout, o->plan);
        printf(", \"device\": ");
        cli_json_string(stdout, kiln_engine_device(e));
        printf(", \"threads\": %d, \"warmup\": %ld, \"iterations\": %ld, \"min_ms\": %.6f, "
               "\"median_ms\": %.6f, \"mean_ms\": %.6f, \"p90_ms\": %.6f, \"p99_ms\": %.6f, "
               "\"max_ms\": %.6f, \"throughput_per_s\": %.3f}\n",
               (int)threads, o->warmup, o->iterations, s->min, s->median, s->mean, s->p90, s->p99,
               s->max, s->throughput);
        return;
    }
    printf("plan        %s (%s, %d thread%s%s)\n", o->plan, kiln_engine_device(e), (int)threads,
           threads == 1 ? "" : "s", threads == 0 ? ": one per hardware thread" : "");
    printf("runs        %ld timed after %ld warm-up\n", o->iterations, o->warmup);
    printf("latency ms  min %.3f  median %.3f  mean %.3f  p90 %.3f  p99 %.3f  max %.3f\n", s->min,
           s->median, s->mean, s->p90, s->p99, s->max);
    printf("throughput  %.1f inferences/s\n", s->throughput);
}

/* Allocates, fills (inputs) and binds every I/O tensor; buffers go to bufs[i]. */
static int bind_all(kiln_engine *e, kiln_context *ctx, void **bufs)
{
    cli_rng rng;
    cli_rng_seed(&rng, BENCH_SEED);
    for (int32_t i = 0; i < kiln_engine_num_io(e); i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dtype dtype;
        kiln_dims shape;
        size_t count, es;
        char buf[160];
        kiln_status st = kiln_engine_tensor_info(e, name, &dtype, &shape);
        if (st != KILN_OK) return cli_kiln_error(st, "tensor '%s'", name);
        es = kiln_dtype_size(dtype);
        if (!cli_dims_count(&shape, &count))
            return cli_error("tensor '%s' has the dynamic shape %s; benchmarking needs fixed "
                             "shapes (build with --shapes)",
                             name, cli_dims_str(&shape, buf, sizeof buf));
        if (es == 0 || (count && es > SIZE_MAX / count))
            return cli_error("tensor '%s' has an unusable dtype or size", name);
        bufs[i] = malloc(count > 0 ? count * es : 1);
        if (!bufs[i]) return cli_error("out of memory for tensor '%s'", name);
        if (kiln_engine_io_mode(e, name) == KILN_IO_INPUT) fill_random(&rng, dtype, bufs[i], count);
        if ((st = kiln_context_set_tensor(ctx, name, bufs[i])) != KILN_OK)
            return cli_kiln_error(st, "cannot bind '%s'", name);
    }
    return CLI_OK;
}

static int bench(const bench_opts *o)
{
    kiln_engine *e = NULL;
    kiln_context *ctx = NULL;
    void **bufs = NULL;
    double *ms = NULL;
    int32_t n_io = 0;
    int rc = CLI_OK;
    kiln_status st;
    if ((rc = cli_open_engine(o->plan, &e)) != CLI_OK) return rc;
    n_io = kiln_engine_num_io(e);
    bufs = calloc((size_t)n_io + 1, sizeof *bufs);
    ms = malloc((size_t)o->iterations * sizeof *ms);
    if (!bufs || !ms) {
        rc = cli_error("out of memory");
        goto done;
    }
    if ((st = kiln_context_create(e, &ctx)) != KILN_OK) {
        rc = cli_kiln_error(st, "cannot create an execution context");
        goto done;
    }
    if (o->threads > 0 && (st = kiln_context_set_threads(ctx, (int32_t)o->threads)) != KILN_OK) {
        rc = cli_kiln_error(st, "--threads %ld", o->threads);
        goto done;
    }
    if ((rc = bind_all(e, ctx, bufs)) != CLI_OK) goto done;
    for (long i = 0; i < o->warmup + o->iterations; i++) {
        double t0 = now_ms();
        if ((st = kiln_context_run(ctx)) != KILN_OK) {
            rc = cli_kiln_error(st, "run %ld failed", i + 1);
            goto done;
        }
        if (i >= o->warmup) ms[i - o->warmup] = now_ms() - t0;
    }
    bench_stats s;
    summarize(ms, o->iterations, &s);
    report(o, e, o->threads > 0 ? (int32_t)o->threads : kiln_engine_threads(e), &s);
done:
    for (int32_t i = 0; bufs && i < n_io; i++) free(bufs[i]);
    free(bufs);
    free(ms);
    kiln_context_destroy(ctx);
    kiln_engine_destroy(e);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o = {.warmup = 10, .iterations = 100};
    const char *a, *v;
    cli_parser p;
    cli_parser_init(&p, argc, argv);
    while ((a = cli_next(&p)) != NULL) {
        if (!cli_is_option(&p)) {
            if (o.plan) return cli_usage_error("more than one PLAN ('%s' and '%s')", o.plan, a);
            o.plan = a;
        } else if (cli_match(&p, "--help", "-h")) {
            print_help();
            return CLI_OK;
        } else if (cli_match(&p, "--warmup", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--warmup", v, 0, 100000000, &o.warmup))
                return CLI_USAGE;
        } else if (cli_match(&p, "--iterations", "-n")) {
            if (!(v = cli_value(&p)) ||
                !cli_parse_int("--iterations", v, 1, 100000000, &o.iterations))
                return CLI_USAGE;
        } else if (cli_match(&p, "--threads", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--threads", v, 0, 4096, &o.threads))
                return CLI_USAGE;
        } else if (cli_match(&p, "--json", NULL)) {
            if (!cli_no_value(&p)) return CLI_USAGE;
            o.json = 1;
        } else {
            return cli_unknown_option(&p);
        }
    }
    if (!o.plan) return cli_usage_error("missing PLAN");
    return bench(&o);
}
