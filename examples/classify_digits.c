/* classify_digits.c - kiln on a real trained model: parse the ONNX digit classifier made by
 * scripts/train_digits.py, build it for the whole held-out split, classify every digit,
 * check the accuracy against the training script's metrics.json, and time the batch.
 * Usage: example_classify_digits [MODEL.onnx]   (default models/digits/digits.onnx; the
 * files test_x.npy, test_y.npy and metrics.json are read from the model's folder) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln.h"

#define PIXELS    64
#define CLASSES   10
#define RUNS      50
#define MAX_BYTES (1L << 30) /* the largest data file this example reads */

/* ---- a minimal .npy reader: little-endian, C order, "<f4" or "<i8", rank 1 or 2 ---- */

typedef struct npy {
    int rank;
    int64_t dims[2];
    void *data;
} npy;

/* Reads all of `path` into a new buffer (NULL on failure or past MAX_BYTES). */
static char *read_file(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (*size = ftell(f)) >= 0 && *size <= MAX_BYTES &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)*size + 1)) != NULL) {
        if (fread(buf, 1, (size_t)*size, f) == (size_t)*size) {
            buf[*size] = '\0';
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

/* Loads a .npy file holding `descr` ("<f4", "<i8") with `rank` dimensions; 0 on success. */
static int npy_load(const char *path, const char *descr, size_t elem, int rank, npy *out)
{
    long size = 0;
    char *buf = read_file(path, &size), *hdr = NULL;
    const char *p;
    int ok = 0;
    if (!buf) {
        fprintf(stderr, "cannot read %s\n", path);
        return -1;
    }
    if (size < 12 || memcmp(buf, "\x93NUMPY", 6) != 0 || buf[6] < 1 || buf[6] > 3) goto done;
    const unsigned char *u = (const unsigned char *)buf;
    /* version 1 has a 2-byte header length, versions 2 and 3 a 4-byte one */
    long start = buf[6] == 1 ? 10 : 12, len = u[8] | (long)u[9] << 8;
    if (buf[6] != 1) len |= (long)u[10] << 16 | (long)u[11] << 24;
    if (len > size - start || !(hdr = malloc((size_t)len + 1))) goto done;
    memcpy(hdr, buf + start, (size_t)len);
    hdr[len] = '\0';
    char want[32];
    snprintf(want, sizeof want, "'descr': '%s'", descr);
    if (!strstr(hdr, want) || !strstr(hdr, "'fortran_order': False")) goto done;
    if (!(p = strstr(hdr, "'shape': ("))) goto done;
    p += strlen("'shape': (");
    int64_t count = 1;
    out->rank = 0;
    while (*p != ')') {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 0 || out->rank == rank || (d > 0 && count > MAX_BYTES / d)) goto done;
        out->dims[out->rank++] = d;
        count *= d;
        p = end;
        while (*p == ',' || *p == ' ') p++;
        if (!*p) goto done;
    }
    long data = start + len;
    if (out->rank != rank || (int64_t)(size - data) != count * (int64_t)elem) goto done;
    if (!(out->data = malloc(count > 0 ? (size_t)count * elem : 1))) goto done;
    memcpy(out->data, buf + data, (size_t)count * elem);
    ok = 1;
done:
    free(hdr);
    free(buf);
    if (!ok) fprintf(stderr, "%s: not a readable %d-D '%s' .npy file\n", path, rank, descr);
    return ok ? 0 : -1;
}

/* The number after "test_accuracy" in metrics.json; 0 on success. */
static int read_accuracy(const char *path, double *acc)
{
    long size = 0;
    char *json = read_file(path, &size), *end = NULL;
    const char *p = json ? strstr(json, "\"test_accuracy\"") : NULL;
    if (p && (p = strchr(p, ':'))) *acc = strtod(p + 1, &end);
    int ok = end && end != p + 1 && isfinite(*acc);
    free(json);
    if (!ok) fprintf(stderr, "%s: no \"test_accuracy\" number\n", path);
    return ok ? 0 : -1;
}

/* ---- timing ---- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void log_warnings(kiln_log_level level, const char *message, void *user)
{
    (void)user;
    fprintf(stderr, "kiln %s: %s\n", level == KILN_LOG_ERROR ? "error" : "warning", message);
}

#define CHECK(call)                                                                                \
    do {                                                                                           \
        kiln_status st_ = (call);                                                                  \
        if (st_ != KILN_OK) {                                                                      \
            fprintf(stderr, "%s failed: %s (%s)\n", #call, kiln_last_error(),                      \
                    kiln_status_name(st_));                                                        \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

int main(int argc, char **argv)
{
    const char *model = argc > 1 ? argv[1] : "models/digits/digits.onnx";
    char dir[4096], x_path[4200], y_path[4200], metrics_path[4200];
    const char *slash = strrchr(model, '/');
    int dir_len = slash ? (int)(slash - model) : 1;
    if (dir_len >= (int)sizeof dir) {
        fprintf(stderr, "%s: path too long\n", model);
        return 2;
    }
    snprintf(dir, sizeof dir, "%.*s", dir_len, slash ? model : ".");
    snprintf(x_path, sizeof x_path, "%s/test_x.npy", dir);
    snprintf(y_path, sizeof y_path, "%s/test_y.npy", dir);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.json", dir);

    npy x = {0}, y = {0};
    float *probs = NULL;
    double expected = 0, times[RUNS];
    kiln_network *net = NULL;
    kiln_config *config = NULL;
    kiln_engine *engine = NULL;
    kiln_context *ctx = NULL;
    int rc = 1;
    kiln_set_logger(log_warnings, NULL, KILN_LOG_WARNING);

    if (npy_load(x_path, "<f4", sizeof(float), 2, &x) || npy_load(y_path, "<i8", 8, 1, &y) ||
        read_accuracy(metrics_path, &expected))
        goto done;
    const int64_t n = x.dims[0];
    if (x.dims[1] != PIXELS || y.dims[0] != n || n == 0) {
        fprintf(stderr, "expected %s [N, %d] and %s [N], got [%lld, %lld] and [%lld]\n", x_path,
                PIXELS, y_path, (long long)x.dims[0], (long long)x.dims[1], (long long)y.dims[0]);
        goto done;
    }

    /* Import and build for the whole test set: the model's batch dimension is symbolic
     * ("N"), so the config fixes it. */
    CHECK(kiln_network_create(&net));
    CHECK(kiln_onnx_parse_file(net, model));
    CHECK(kiln_config_create(&config));
    const kiln_dims batch = {2, {n, PIXELS}};
    CHECK(kiln_config_set_input_shape(config, "pixels", &batch));
    double t0 = now_ms();
    CHECK(kiln_build(net, config, &engine));
    char threads[32] = "one per hardware thread";
    if (kiln_engine_threads(engine) > 0)
        snprintf(threads, sizeof threads, "%d", (int)kiln_engine_threads(engine));
    printf("built %s (%d layers) for %lld images in %.1f ms (threads: %s)\n", model,
           (int)kiln_network_num_layers(net), (long long)n, now_ms() - t0, threads);

    kiln_dtype dtype;
    kiln_dims out_shape;
    CHECK(kiln_engine_tensor_info(engine, "probabilities", &dtype, &out_shape));
    if (dtype != KILN_DTYPE_F32 || out_shape.rank != 2 || out_shape.d[0] != n ||
        out_shape.d[1] != CLASSES) {
        fprintf(stderr, "unexpected output 'probabilities': want f32 [%lld, %d]\n", (long long)n,
                CLASSES);
        goto done;
    }
    if (!(probs = malloc((size_t)n * CLASSES * sizeof *probs))) goto done;
    CHECK(kiln_context_create(engine, &ctx));
    CHECK(kiln_context_set_tensor(ctx, "pixels", x.data));
    CHECK(kiln_context_set_tensor(ctx, "probabilities", probs));
    CHECK(kiln_context_run(ctx));

    /* Classify: the most probable class of each image against its label. */
    const int64_t *labels = y.data;
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *p = probs + i * CLASSES;
        int best = 0;
        for (int c = 1; c < CLASSES; c++)
            if (p[c] > p[best]) best = c;
        correct += best == labels[i];
    }
    double accuracy = (double)correct / (double)n;
    printf("accuracy on the %lld held-out digits: %.6f (%lld correct)\n", (long long)n, accuracy,
           (long long)correct);
    printf("accuracy the training script measured:  %.6f (%s)\n", expected, metrics_path);

    /* Latency: the whole batch, RUNS times. */
    for (int r = 0; r < RUNS; r++) {
        t0 = now_ms();
        CHECK(kiln_context_run(ctx));
        times[r] = now_ms() - t0;
    }
    qsort(times, RUNS, sizeof *times, cmp_double);
    double median = (times[RUNS / 2 - 1] + times[RUNS / 2]) / 2;
    printf("latency: median %.3f ms per batch of %lld over %d runs (min %.3f, max %.3f), "
           "%.2f us per image\n",
           median, (long long)n, RUNS, times[0], times[RUNS - 1], 1e3 * median / (double)n);

    if (fabs(accuracy - expected) > 1e-9) {
        fprintf(stderr, "FAIL: kiln's accuracy %.9f differs from the training script's %.9f\n",
                accuracy, expected);
        goto done;
    }
    printf("kiln matches the trained model's accuracy\n");
    rc = 0;
done:
    kiln_context_destroy(ctx);
    kiln_engine_destroy(engine);
    kiln_config_destroy(config);
    kiln_network_destroy(net);
    free(probs);
    free(x.data);
    free(y.data);
    return rc;
}
