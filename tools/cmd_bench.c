/* cmd_bench.c - `kiln bench`: latency and throughput of a plan on seeded random inputs, at
 * chosen input shapes, with one or several contexts of one engine run by threads at the
 * same time; a table for people or one JSON object for scripts. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Seed of the random inputs, fixed so that runs are comparable. */
#define BENCH_SEED         42u
#define BENCH_MAX_CONTEXTS 256

static void print_help(void)
{
    printf("usage: kiln bench PLAN [options]\n"
           "\n"
           "Measures the engine in PLAN: fills every input with pseudo-random values (seed\n"
           "%u; floats uniform in [-1, 1), integers 0, booleans 0 or 1), runs the warm-up,\n"
           "then times each of the timed runs alone with the monotonic clock and prints\n"
           "latency (min, median, mean, p90, p99, max in milliseconds), throughput (runs\n"
           "per second) and inferences per second (runs x batch per second). PLAN may also\n"
           "name a built-in model (e.g. lenet), which is then built in memory with default\n"
           "settings.\n"
           "\n"
           "An engine with dynamic shapes runs every input at the opt shape of the profile\n"
           "unless --shapes or --batch say otherwise. With --contexts C, C contexts of the\n"
           "one engine (sharing its weights, each with activation memory of its own) run\n"
           "on C threads: each does the warm-up, then all start the timed runs together;\n"
           "latency counts every run of every context, throughput is all runs over the\n"
           "wall time of the timed runs. The memory line sets the weights (held once) and\n"
           "the C arenas against what C separate engines would take.\n"
           "\n"
           "options:\n"
           "  --warmup N           untimed runs first, per context (default 10)\n"
           "  -n, --iterations N   timed runs per context (default 100)\n"
           "  --shapes NAME:DIMS[,NAME:DIMS...]\n"
           "                       run input NAME at shape DIMS (inside the profile;\n"
           "                       repeatable)\n"
           "  --batch N            set dimension 0 of every input to N (the batch that\n"
           "                       inferences per second counts; default: dimension 0 of\n"
           "                       the first input)\n"
           "  --profile K          the optimization profile to run in (default 0)\n"
           "  --contexts C         contexts run at the same time, one thread each\n"
           "                       (default 1, at most %d)\n"
           "  --threads N          threads each context runs with (default 0: the plan's\n"
           "                       setting)\n"
           "  --json               print one JSON object instead of the table; its keys:\n"
           "                       plan, device, threads, contexts, profile, batch, shapes\n"
           "                       ({input: [dims]}), warmup, iterations (per context),\n"
           "                       runs (in all), wall_ms, min_ms, median_ms, mean_ms,\n"
           "                       p90_ms, p99_ms, max_ms, throughput_per_s,\n"
           "                       inferences_per_s, weight_bytes, arena_bytes_per_context,\n"
           "                       memory_bytes (weights + contexts x arena),\n"
           "                       separate_engines_bytes (contexts x (weights + arena))\n"
           "  -h, --help           show this help\n",
           BENCH_SEED, BENCH_MAX_CONTEXTS);
}

typedef struct bench_opts {
    const char *plan;
    long warmup, iterations, threads, contexts, batch, profile;
    cli_shapes shapes;
    int json;
} bench_opts;

typedef struct bench_stats {
    double min, median, mean, p90, p99, max;
    double wall_ms, throughput, inferences;
} bench_stats;

/* What the threads share: a gate that opens once every thread exists, a count of the
 * threads done warming up (the timed runs start when all are), and a stop flag. */
typedef struct bench_sync {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open, started, warmed;
    atomic_int stop;
} bench_sync;

/* One context and its thread. */
typedef struct worker {
    kiln_context *ctx;
    void *arena;
    void **bufs; /* per I/O tensor */
    double *ms;  /* latency of each timed run (its part of one array for all) */
    long warmup, iterations;
    double t_start, t_end; /* the timed runs, monotonic ms */
    bench_sync *sync;
    kiln_status st; /* the first failed run: its number and the library's message */
    long failed_run;
    char err[1024];
} worker;

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
}

/* ---- the shapes to run at ---- */

/* Input shapes in the engine's I/O order (outputs' entries unused). */
typedef struct bench_shapes {
    kiln_dims *dims;
    long batch;
} bench_shapes;

/* Each input at the profile's opt shape, then --batch, then --shapes. */
static int choose_shapes(const bench_opts *o, const kiln_engine *e, bench_shapes *out)
{
    int32_t n_io = kiln_engine_num_io(e), np = kiln_engine_num_profiles(e);
    char buf[160];
    if (o->profile >= np)
        return cli_usage_error("--profile %ld: the plan has %d profile%s (0 to %d)", o->profile,
                               (int)np, np == 1 ? "" : "s", (int)np - 1);
    for (int i = 0; i < o->shapes.n; i++)
        if (kiln_engine_io_mode(e, o->shapes.v[i].name) != KILN_IO_INPUT)
            return cli_usage_error(
                "--shapes %s:%s: the plan has no input named '%s'", o->shapes.v[i].name,
                cli_dims_str(&o->shapes.v[i].dims, buf, sizeof buf), o->shapes.v[i].name);
    out->dims = calloc((size_t)n_io + 1, sizeof *out->dims);
    if (!out->dims) return cli_error("out of memory");
    out->batch = 0;
    for (int32_t i = 0; i < n_io; i++) {
        const char *name = kiln_engine_io_name(e, i);
        if (kiln_engine_io_mode(e, name) != KILN_IO_INPUT) continue;
        kiln_dims *d = &out->dims[i];
        kiln_status st =
            kiln_engine_profile_shape(e, (int32_t)o->profile, name, KILN_PROFILE_OPT, d);
        if (st != KILN_OK) return cli_kiln_error(st, "input '%s'", name);
        if (o->batch > 0) {
            if (d->rank < 1)
                return cli_usage_error("--batch %ld: input '%s' is a scalar, with no batch "
                                       "dimension",
                                       o->batch, name);
            d->d[0] = o->batch;
        }
        const cli_shape *given = cli_shapes_find(&o->shapes, name);
        if (given) *d = given->dims;
        if (out->batch == 0) out->batch = o->batch > 0 ? o->batch : d->rank > 0 ? d->d[0] : 1;
    }
    if (out->batch == 0) out->batch = 1; /* no inputs */
    return CLI_OK;
}

/* ---- one context ---- */

/* Creates context w with caller memory, selects the profile, sets the input shapes and
 * binds seeded inputs and outputs of the shapes that follow. */
static int setup_worker(const bench_opts *o, kiln_engine *e, const bench_shapes *sh, double *ms,
                        worker *w)
{
    int32_t n_io = kiln_engine_num_io(e);
    size_t arena = kiln_engine_arena_bytes(e);
    char buf[160];
    cli_rng rng;
    cli_rng_seed(&rng, BENCH_SEED);
    kiln_status st = kiln_context_create_without_memory(e, &w->ctx);
    if (st != KILN_OK) return cli_kiln_error(st, "cannot create an execution context");
    /* kiln_context_set_memory wants 64-byte aligned memory. */
    if (posix_memalign(&w->arena, 64, arena ? arena : 64) != 0) {
        w->arena = NULL;
        return cli_error("out of memory for a context's %zu bytes of activations", arena);
    }
    if ((st = kiln_context_set_memory(w->ctx, w->arena, arena)) != KILN_OK)
        return cli_kiln_error(st, "cannot give a context its memory");
    if (o->threads > 0 && (st = kiln_context_set_threads(w->ctx, (int32_t)o->threads)) != KILN_OK)
        return cli_kiln_error(st, "--threads %ld", o->threads);
    if ((st = kiln_context_set_profile(w->ctx, (int32_t)o->profile)) != KILN_OK)
        return cli_kiln_error(st, "--profile %ld", o->profile);
    w->bufs = calloc((size_t)n_io + 1, sizeof *w->bufs);
    if (!w->bufs) return cli_error("out of memory");
    w->ms = ms;
    /* Inputs first: their shapes decide the outputs'. */
    for (int pass = 0; pass < 2; pass++) {
        for (int32_t i = 0; i < n_io; i++) {
            const char *name = kiln_engine_io_name(e, i);
            bool input = kiln_engine_io_mode(e, name) == KILN_IO_INPUT;
            kiln_dtype dtype;
            kiln_dims shape;
            size_t count, es;
            if (input != (pass == 0)) continue;
            st = kiln_engine_tensor_info(e, name, &dtype, &shape);
            if (st != KILN_OK) return cli_kiln_error(st, "tensor '%s'", name);
            if (input) {
                shape = sh->dims[i];
                st = kiln_context_set_input_shape(w->ctx, name, &shape);
                if (st != KILN_OK)
                    return cli_kiln_error(st, "cannot run at %s:%s", name,
                                          cli_dims_str(&shape, buf, sizeof buf));
            } else if ((st = kiln_context_tensor_shape(w->ctx, name, &shape)) != KILN_OK) {
                return cli_kiln_error(st, "output '%s'", name);
            }
            es = kiln_dtype_size(dtype);
            if (!cli_dims_count(&shape, &count) || es == 0 || (count && es > SIZE_MAX / count))
                return cli_error("tensor '%s' has an unusable dtype or shape %s", name,
                                 cli_dims_str(&shape, buf, sizeof buf));
            w->bufs[i] = malloc(count > 0 ? count * es : 1);
            if (!w->bufs[i]) return cli_error("out of memory for tensor '%s'", name);
            if (input) fill_random(&rng, dtype, w->bufs[i], count);
            if ((st = kiln_context_set_tensor(w->ctx, name, w->bufs[i])) != KILN_OK)
                return cli_kiln_error(st, "cannot bind '%s'", name);
        }
    }
    w->warmup = o->warmup;
    w->iterations = o->iterations;
    return CLI_OK;
}

static void free_worker(worker *w, int32_t n_io)
{
    for (int32_t i = 0; w->bufs && i < n_io; i++) free(w->bufs[i]);
    free(w->bufs);
    kiln_context_destroy(w->ctx);
    free(w->arena);
}

/* One run; on failure keeps the library's message (it is per thread) and stops all. */
static bool run_once(worker *w, long number)
{
    kiln_status st = kiln_context_run(w->ctx);
    if (st == KILN_OK) return true;
    w->st = st;
    w->failed_run = number;
    snprintf(w->err, sizeof w->err, "%s", kiln_last_error());
    atomic_store(&w->sync->stop, 1);
    return false;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    bench_sync *s = w->sync;
    pthread_mutex_lock(&s->mu);
    while (!s->open) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    for (long i = 0; i < w->warmup && !atomic_load(&s->stop); i++)
        if (!run_once(w, i + 1)) break;
    /* The timed runs of all contexts start together. */
    pthread_mutex_lock(&s->mu);
    if (++s->warmed == s->started) pthread_cond_broadcast(&s->cv);
    while (s->warmed < s->started) pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    w->t_start = now_ms();
    for (long i = 0; i < w->iterations && !atomic_load(&s->stop); i++) {
        double t0 = now_ms();
        if (!run_once(w, w->warmup + i + 1)) break;
        w->ms[i] = now_ms() - t0;
    }
    w->t_end = now_ms();
    return NULL;
}

/* Starts a thread per worker, waits for all; returns CLI_OK when every run succeeded. */
static int run_workers(worker *w, long n, bench_sync *s)
{
    pthread_t *tid = calloc((size_t)n, sizeof *tid);
    if (!tid) return cli_error("out of memory");
    int rc = CLI_OK, err = 0;
    long started = 0;
    for (; started < n; started++) {
        w[started].sync = s;
        if ((err = pthread_create(&tid[started], NULL, worker_main, &w[started])) != 0) break;
    }
    if (started < n) {
        atomic_store(&s->stop, 1);
        rc = cli_error("cannot start thread %ld of %ld: %s", started + 1, n, strerror(err));
    }
    pthread_mutex_lock(&s->mu);
    s->started = (int)started;
    s->open = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (long i = 0; i < started; i++) pthread_join(tid[i], NULL);
    free(tid);
    for (long i = 0; i < started && rc == CLI_OK; i++) {
        if (w[i].st == KILN_OK) continue;
        rc = cli_error("context %ld: run %ld failed: %s [%s]", i, w[i].failed_run, w[i].err,
                       kiln_status_name(w[i].st));
    }
    return rc;
}

/* ---- the report ---- */

typedef struct bench_memory {
    size_t weights, arena, total, separate;
} bench_memory;

static void report(const bench_opts *o, const kiln_engine *e, int32_t threads,
                   const bench_shapes *sh, const bench_memory *m, const bench_stats *s)
{
    int32_t n_io = kiln_engine_num_io(e);
    long runs = o->contexts * o->iterations;
    char buf[160];
    if (o->json) {
        printf("{\"plan\": ");
        cli_json_string(stdout, o->plan);
        printf(", \"device\": ");
        cli_json_string(stdout, kiln_engine_device(e));
        printf(", \"threads\": %d, \"contexts\": %ld, \"profile\": %ld, \"batch\": %ld, "
               "\"shapes\": {",
               (int)threads, o->contexts, o->profile, sh->batch);
        int first = 1;
        for (int32_t i = 0; i < n_io; i++) {
            const char *name = kiln_engine_io_name(e, i);
            if (kiln_engine_io_mode(e, name) != KILN_IO_INPUT) continue;
            if (!first) fputs(", ", stdout);
            first = 0;
            cli_json_string(stdout, name);
            fputs(": [", stdout);
            for (int32_t k = 0; k < sh->dims[i].rank; k++)
                printf("%s%lld", k ? ", " : "", (long long)sh->dims[i].d[k]);
            fputc(']', stdout);
        }
        printf("}, \"warmup\": %ld, \"iterations\": %ld, \"runs\": %ld, \"wall_ms\": %.6f, "
               "\"min_ms\": %.6f, \"median_ms\": %.6f, \"mean_ms\": %.6f, \"p90_ms\": %.6f, "
               "\"p99_ms\": %.6f, \"max_ms\": %.6f, \"throughput_per_s\": %.3f, "
               "\"inferences_per_s\": %.3f, \"weight_bytes\": %zu, "
               "\"arena_bytes_per_context\": %zu, \"memory_bytes\": %zu, "
               "\"separate_engines_bytes\": %zu}\n",
               o->warmup, o->iterations, runs, s->wall_ms, s->min, s->median, s->mean, s->p90,
               s->p99, s->max, s->throughput, s->inferences, m->weights, m->arena, m->total,
               m->separate);
        return;
    }
    char a[32], b[32], c[32], d[32];
    printf("plan        %s (%s, ", o->plan, kiln_engine_device(e));
    if (threads == 0)
        printf("one thread per hardware thread in each context)\n");
    else
        printf("%d thread%s per context)\n", (int)threads, threads == 1 ? "" : "s");
    if (o->contexts > 1)
        printf("contexts    %ld of the one engine, each run by its own thread\n", o->contexts);
    printf("shapes      ");
    int first = 1;
    for (int32_t i = 0; i < n_io; i++) {
        const char *name = kiln_engine_io_name(e, i);
        if (kiln_engine_io_mode(e, name) != KILN_IO_INPUT) continue;
        printf("%s%s %s", first ? "" : ", ", name, cli_dims_str(&sh->dims[i], buf, sizeof buf));
        first = 0;
    }
    printf(" (profile %ld; batch %ld)\n", o->profile, sh->batch);
    printf("runs        %ld timed", o->iterations);
    if (o->contexts > 1) printf(" per context, %ld in all,", runs);
    printf(" after %ld warm-up, in %.1f ms\n", o->warmup, s->wall_ms);
    printf("latency ms  min %.3f  median %.3f  mean %.3f  p90 %.3f  p99 %.3f  max %.3f\n", s->min,
           s->median, s->mean, s->p90, s->p99, s->max);
    printf("throughput  %.1f runs/s, %.1f inferences/s\n", s->throughput, s->inferences);
    if (o->contexts == 1)
        printf("memory      weights %s + arena %s = %s\n", cli_bytes_str(m->weights, a, sizeof a),
               cli_bytes_str(m->arena, b, sizeof b), cli_bytes_str(m->total, c, sizeof c));
    else
        printf("memory      weights %s once + %ld x arena %s = %s (%ld separate engines: %s)\n",
               cli_bytes_str(m->weights, a, sizeof a), o->contexts,
               cli_bytes_str(m->arena, b, sizeof b), cli_bytes_str(m->total, c, sizeof c),
               o->contexts, cli_bytes_str(m->separate, d, sizeof d));
}

static int bench(const bench_opts *o)
{
    kiln_engine *e = NULL;
    worker *w = NULL;
    bench_shapes sh = {0};
    double *all = NULL;
    bench_sync sync = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    atomic_init(&sync.stop, 0);
    int rc = cli_open_engine(o->plan, &e);
    if (rc != CLI_OK) return rc;
    int32_t n_io = kiln_engine_num_io(e);
    if ((rc = choose_shapes(o, e, &sh)) != CLI_OK) goto done;
    w = calloc((size_t)o->contexts, sizeof *w);
    all = malloc((size_t)(o->contexts * o->iterations) * sizeof *all);
    if (!w || !all) {
        rc = cli_error("out of memory");
        goto done;
    }
    for (long i = 0; i < o->contexts && rc == CLI_OK; i++)
        rc = setup_worker(o, e, &sh, all + i * o->iterations, &w[i]);
    if (rc == CLI_OK) rc = run_workers(w, o->contexts, &sync);
    if (rc != CLI_OK) goto done;
    bench_stats s;
    double t0 = w[0].t_start, t1 = w[0].t_end;
    for (long i = 0; i < o->contexts; i++) {
        if (w[i].t_start < t0) t0 = w[i].t_start;
        if (w[i].t_end > t1) t1 = w[i].t_end;
    }
    long runs = o->contexts * o->iterations;
    summarize(all, runs, &s);
    s.wall_ms = t1 - t0;
    s.throughput = s.wall_ms > 0 ? 1000.0 * (double)runs / s.wall_ms : 0.0;
    s.inferences = s.throughput * (double)sh.batch;
    bench_memory m = {.weights = kiln_engine_weight_bytes(e), .arena = kiln_engine_arena_bytes(e)};
    m.total = m.weights + (size_t)o->contexts * m.arena;
    m.separate = (size_t)o->contexts * (m.weights + m.arena);
    report(o, e, o->threads > 0 ? (int32_t)o->threads : kiln_engine_threads(e), &sh, &m, &s);
done:
    for (long i = 0; w && i < o->contexts; i++) free_worker(&w[i], n_io);
    free(w);
    free(all);
    free(sh.dims);
    kiln_engine_destroy(e);
    return rc;
}

int cmd_bench(int argc, char **argv)
{
    bench_opts o = {.warmup = 10, .iterations = 100, .contexts = 1};
    const char *a, *v;
    int rc = CLI_OK;
    cli_parser p;
    cli_parser_init(&p, argc, argv);
    while (rc == CLI_OK && (a = cli_next(&p)) != NULL) {
        if (!cli_is_option(&p)) {
            if (o.plan) rc = cli_usage_error("more than one PLAN ('%s' and '%s')", o.plan, a);
            o.plan = a;
        } else if (cli_match(&p, "--help", "-h")) {
            print_help();
            goto done;
        } else if (cli_match(&p, "--warmup", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--warmup", v, 0, 100000000, &o.warmup))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--iterations", "-n")) {
            if (!(v = cli_value(&p)) ||
                !cli_parse_int("--iterations", v, 1, 100000000, &o.iterations))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--threads", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--threads", v, 0, 4096, &o.threads))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--contexts", NULL)) {
            if (!(v = cli_value(&p)) ||
                !cli_parse_int("--contexts", v, 1, BENCH_MAX_CONTEXTS, &o.contexts))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--batch", NULL)) {
            if (!(v = cli_value(&p)) || !cli_parse_int("--batch", v, 1, 1L << 20, &o.batch))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--profile", NULL)) {
            if (!(v = cli_value(&p)) ||
                !cli_parse_int("--profile", v, 0, KILN_MAX_PROFILES - 1, &o.profile))
                rc = CLI_USAGE;
        } else if (cli_match(&p, "--shapes", NULL)) {
            rc = (v = cli_value(&p)) ? cli_shapes_parse(&o.shapes, "--shapes", v) : CLI_USAGE;
        } else if (cli_match(&p, "--json", NULL)) {
            if (!cli_no_value(&p)) rc = CLI_USAGE;
            o.json = 1;
        } else {
            rc = cli_unknown_option(&p);
        }
    }
    if (rc != CLI_OK) goto done;
    if (!o.plan)
        rc = cli_usage_error("missing PLAN");
    else if (o.batch > 0 && o.shapes.n > 0)
        rc = cli_usage_error("--batch and --shapes both set input shapes; give one of them");
    else
        rc = bench(&o);
done:
    cli_shapes_free(&o.shapes);
    return rc;
}
