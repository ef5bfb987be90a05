/* caffe_mnist.c - kiln's take on TensorRT's sampleMNIST: import a trained Caffe LeNet, build
 * it, serialize the engine to memory and load it back, then classify real handwritten digits
 * read from PGM files, binding the tensors "data" and "prob" by name.
 * Usage: example_caffe_mnist [PROTOTXT CAFFEMODEL [DIGIT.pgm ...]]
 *   defaults: models/lenet/lenet_deploy.prototxt, models/lenet/lenet.caffemodel and every
 *   digit_<label>_<i>.pgm in the prototxt's folder (made by scripts/train_lenet_caffe.py) */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

#define CLASSES    10
#define MAX_IMAGES 1000
#define MAX_PGM    (1L << 20)  /* the largest PGM file this example reads */
#define SCALE      0.00390625f /* 1/256: how Caffe's MNIST example scales pixel bytes */

/* ---- a small defensive reader of binary (P5) 8-bit PGM files ---- */

/* Skips whitespace and '#' comments in a PGM header; returns the new position. */
static long skip_space(const unsigned char *b, long n, long pos)
{
    while (pos < n) {
        if (b[pos] == '#') {
            while (pos < n && b[pos] != '\n') pos++;
        } else if (b[pos] == ' ' || b[pos] == '\t' || b[pos] == '\r' || b[pos] == '\n') {
            pos++;
        } else {
            break;
        }
    }
    return pos;
}

/* Reads a decimal header number in 1..limit; -1 when there is none. */
static long header_number(const unsigned char *b, long n, long *pos, long limit)
{
    long v = 0, p = skip_space(b, n, *pos), start = p;
    while (p < n && b[p] >= '0' && b[p] <= '9' && v <= limit) v = v * 10 + (b[p++] - '0');
    if (p == start || v < 1 || v > limit) return -1;
    *pos = p;
    return v;
}

/* Loads a `rows` x `cols` P5 PGM into `pixels` as 0..255 values; 0 on success. */
static int read_pgm(const char *path, int rows, int cols, unsigned char *pixels)
{
    FILE *f = fopen(path, "rb");
    unsigned char *b = NULL;
    long n = 0, pos = 2;
    int ok = 0;
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n <= MAX_PGM &&
        fseek(f, 0, SEEK_SET) == 0 && (b = malloc((size_t)n)) != NULL &&
        fread(b, 1, (size_t)n, f) == (size_t)n && n > 2 && b[0] == 'P' && b[1] == '5') {
        long w = header_number(b, n, &pos, 1L << 15);
        long h = w > 0 ? header_number(b, n, &pos, 1L << 15) : -1;
        long maxval = h > 0 ? header_number(b, n, &pos, 255) : -1;
        /* exactly one whitespace byte separates the header from the pixels */
        if (maxval > 0 && w == cols && h == rows && pos < n && skip_space(b, pos + 1, pos) > pos &&
            n - (pos + 1) >= w * h) {
            for (long i = 0; i < w * h; i++)
                pixels[i] = (unsigned char)((b[pos + 1 + i] * 255L + maxval / 2) / maxval);
            ok = 1;
        } else if (maxval > 0 && (w != cols || h != rows)) {
            fprintf(stderr, "%s: %ldx%ld pixels, the network takes %dx%d\n", path, w, h, cols,
                    rows);
        }
    }
    if (!ok && b && n > 2 && !(b[0] == 'P' && b[1] == '5'))
        fprintf(stderr, "%s: not a binary (P5) PGM file\n", path);
    else if (!ok)
        fprintf(stderr, "%s: not a readable 8-bit PGM file\n", path);
    free(b);
    fclose(f);
    return ok ? 0 : -1;
}

/* The label in a name like ".../digit_7_42.pgm", or -1. */
static int label_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "digit_", 6) != 0 || base[6] < '0' || base[6] > '9' || base[7] != '_')
        return -1;
    return base[6] - '0';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every digit_*.pgm in `dir`, sorted; the count, or -1 on failure. */
static int list_digits(const char *dir, char **paths, int max)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) {
        fprintf(stderr, "%s: cannot list the folder\n", dir);
        return -1;
    }
    for (struct dirent *e; (e = readdir(d)) != NULL && n < max;) {
        size_t len = strlen(e->d_name);
        if (label_of(e->d_name) < 0 || len < 4 || strcmp(e->d_name + len - 4, ".pgm") != 0)
            continue;
        size_t size = strlen(dir) + len + 2;
        if (!(paths[n] = malloc(size))) break;
        snprintf(paths[n++], size, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(paths, (size_t)n, sizeof *paths, cmp_str);
    return n;
}

/* An image as ASCII art, darker characters for darker strokes, as TensorRT's sample does. */
static void print_digit(const unsigned char *px, int rows, int cols)
{
    static const char shades[] = " .:-=+*#%@";
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) putchar(shades[px[r * cols + c] / 26]);
        putchar('\n');
    }
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
    const char *prototxt = argc > 1 ? argv[1] : "models/lenet/lenet_deploy.prototxt";
    const char *caffemodel = argc > 2 ? argv[2] : "models/lenet/lenet.caffemodel";
    char *paths[MAX_IMAGES] = {0}, dir[4096];
    int n_images = 0, rc = 1, correct = 0, labelled = 0;
    kiln_network *net = NULL;
    kiln_engine *engine = NULL;
    kiln_context *ctx = NULL;
    void *plan = NULL;
    size_t plan_size = 0;
    float *input = NULL, *prob = NULL;
    unsigned char *pixels = NULL;
    kiln_set_logger(log_warnings, NULL, KILN_LOG_WARNING);

    if (argc == 2) {
        fprintf(stderr, "usage: %s [PROTOTXT CAFFEMODEL [DIGIT.pgm ...]]\n", argv[0]);
        return 2;
    }
    if (argc > 3) {
        for (int i = 3; i < argc && n_images < MAX_IMAGES; i++)
            if (!(paths[n_images++] = strdup(argv[i]))) goto done;
    } else {
        const char *slash = strrchr(prototxt, '/');
        int len = !slash ? 1 : slash == prototxt ? 1 : (int)(slash - prototxt); /* "/x" -> "/" */
        if (len >= (int)sizeof dir) goto done;
        snprintf(dir, sizeof dir, "%.*s", len, slash ? prototxt : ".");
        if ((n_images = list_digits(dir, paths, MAX_IMAGES)) < 0) goto done;
    }
    if (n_images == 0) {
        fprintf(stderr, "no digit_<label>_<i>.pgm images to classify\n");
        goto done;
    }

    /* Import the Caffe model and mark "prob" as the output, as sampleMNIST does. */
    const char *outputs[] = {"prob"};
    CHECK(kiln_network_create(&net));
    CHECK(kiln_caffe_parse_files(net, prototxt, caffemodel, outputs, 1));
    printf("parsed %s and %s: %d layers\n", prototxt, caffemodel,
           (int)kiln_network_num_layers(net));

    /* Build, serialize to memory, and load the plan back: what a deployment would ship. */
    CHECK(kiln_build(net, NULL, &engine));
    kiln_network_destroy(net);
    net = NULL;
    CHECK(kiln_engine_serialize(engine, &plan, &plan_size));
    kiln_engine_destroy(engine);
    engine = NULL;
    CHECK(kiln_engine_load_memory(plan, plan_size, &engine));
    printf("engine: %zu-byte plan, %d layers after optimization, %zu bytes of activations\n",
           plan_size, (int)kiln_engine_num_layers(engine), kiln_engine_arena_bytes(engine));

    /* The input is [batch, 1, rows, cols] and the output [batch, 10], batch fixed by the
     * deploy file. */
    kiln_dtype in_type, out_type;
    kiln_dims in, out;
    CHECK(kiln_engine_tensor_info(engine, "data", &in_type, &in));
    CHECK(kiln_engine_tensor_info(engine, "prob", &out_type, &out));
    if (in_type != KILN_DTYPE_F32 || in.rank != 4 || in.d[1] != 1 || in.d[2] < 1 ||
        in.d[2] > 1024 || in.d[3] < 1 || in.d[3] > 1024 || in.d[0] < 1 || in.d[0] > MAX_IMAGES ||
        out_type != KILN_DTYPE_F32 || out.rank < 2 || out.d[0] != in.d[0] || out.d[1] != CLASSES) {
        fprintf(stderr, "expected data f32 [N, 1, H, W] and prob f32 [N, %d]\n", CLASSES);
        goto done;
    }
    const int batch = (int)in.d[0], rows = (int)in.d[2], cols = (int)in.d[3];
    const size_t image = (size_t)rows * (size_t)cols;
    input = calloc((size_t)batch * image, sizeof *input);
    prob = calloc((size_t)batch * CLASSES, sizeof *prob);
    pixels = malloc((size_t)batch * image);
    if (!input || !prob || !pixels) goto done;
    CHECK(kiln_context_create(engine, &ctx));
    CHECK(kiln_context_set_tensor(ctx, "data", input));
    CHECK(kiln_context_set_tensor(ctx, "prob", prob));

    /* Classify the images a batch at a time; a short last batch is padded with blanks. */
    for (int first = 0; first < n_images; first += batch) {
        int count = n_images - first < batch ? n_images - first : batch;
        memset(input, 0, (size_t)batch * image * sizeof *input);
        for (int i = 0; i < count; i++) {
            if (read_pgm(paths[first + i], rows, cols, pixels + i * image)) goto done;
            for (size_t p = 0; p < image; p++)
                input[i * image + p] = (float)pixels[i * image + p] * SCALE;
        }
        CHECK(kiln_context_run(ctx));
        for (int i = 0; i < count; i++) {
            const float *p = prob + i * CLASSES;
            int best = 0, label = label_of(paths[first + i]);
            for (int c = 1; c < CLASSES; c++)
                if (p[c] > p[best]) best = c;
            printf("\n%s\n", paths[first + i]);
            print_digit(pixels + i * image, rows, cols);
            printf("prediction: %d (probability %.4f)", best, (double)p[best]);
            if (label >= 0) {
                printf(", label %d%s", label, best == label ? "" : "  <-- wrong");
                labelled++;
                correct += best == label;
            }
            printf("\n");
        }
    }
    if (labelled > 0)
        printf("\n%d of %d labelled digits classified correctly\n", correct, labelled);
    rc = 0;
done:
    kiln_context_destroy(ctx);
    kiln_engine_destroy(engine);
    kiln_network_destroy(net);
    kiln_free(plan);
    free(input);
    free(prob);
    free(pixels);
    for (int i = 0; i < n_images && i < MAX_IMAGES; i++) free(paths[i]);
    return rc;
}
