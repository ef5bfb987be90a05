/* cli.c - helpers the subcommands share: option parsing, one-line error messages on
 * stderr, the stderr logger, formatting, and a seeded generator. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- option parsing ---- */

void cli_parser_init(cli_parser *p, int argc, char **argv)
{
    memset(p, 0, sizeof *p);
    p->argc = argc;
    p->argv = argv;
    p->next = 1; /* argv[0] is the subcommand */
}

const char *cli_next(cli_parser *p)
{
    for (;;) {
        if (p->next >= p->argc) return NULL;
        const char *a = p->argv[p->next++];
        p->arg = a;
        p->value = NULL;
        p->is_option = false;
        if (!p->options_done && strcmp(a, "--") == 0) {
            p->options_done = true;
            continue;
        }
        /* A lone "-" is a positional argument (it names stdin or stdout by convention). */
        if (!p->options_done && a[0] == '-' && a[1] != '\0') {
            p->is_option = true;
            if (a[1] == '-') {
                const char *eq = strchr(a, '=');
                if (eq) p->value = eq + 1;
            }
        }
        return a;
    }
}

bool cli_is_option(const cli_parser *p) { return p->is_option; }

bool cli_match(const cli_parser *p, const char *long_name, const char *short_name)
{
    if (!p->is_option) return false;
    if (short_name && strcmp(p->arg, short_name) == 0) return true;
    size_t n = p->value ? (size_t)(p->value - 1 - p->arg) : strlen(p->arg);
    return strlen(long_name) == n && strncmp(p->arg, long_name, n) == 0;
}

/* The option's name without "=value", for messages. */
static int option_name_len(const cli_parser *p)
{
    size_t n = p->value ? (size_t)(p->value - 1 - p->arg) : strlen(p->arg);
    return n > INT_MAX ? INT_MAX : (int)n;
}

const char *cli_value(cli_parser *p)
{
    if (p->value) {
        if (*p->value) return p->value;
    } else if (p->next < p->argc && strncmp(p->argv[p->next], "--", 2) != 0) {
        /* A following "--option" is not taken as a value: "-o --threads 4" is a mistake. */
        return p->argv[p->next++];
    }
    cli_usage_error("option '%.*s' needs a value", option_name_len(p), p->arg);
    return NULL;
}

bool cli_no_value(const cli_parser *p)
{
    if (!p->value) return true;
    cli_usage_error("option '%.*s' takes no value", option_name_len(p), p->arg);
    return false;
}

int cli_unknown_option(const cli_parser *p)
{
    if (p->is_option) return cli_usage_error("unknown option '%.*s'", option_name_len(p), p->arg);
    return cli_usage_error("unexpected argument '%s'", p->arg);
}

bool cli_parse_int(const char *what, const char *text, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < lo || v > hi) {
        cli_usage_error("%s expects a whole number from %ld to %ld, got '%s'", what, lo, hi, text);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_dims(const char *text, kiln_dims *out)
{
    memset(out, 0, sizeof *out);
    const char *s = text;
    for (;;) {
        if (out->rank == KILN_MAX_RANK) return false;
        if (*s < '0' || *s > '9') return false; /* strtoll would accept signs and spaces */
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno != 0 || v < 1 || v > INT32_MAX) return false;
        out->d[out->rank++] = v;
        if (*end == '\0') return true;
        if (*end != 'x' && *end != 'X') return false;
        s = end + 1;
    }
}

/* ---- input shapes ---- */

/* Appends one "NAME:DIMS" item of `len` characters. */
static int add_shape_item(cli_shapes *list, const char *flag, const char *item, size_t len)
{
    char text[1024];
    if (len >= sizeof text)
        return cli_usage_error("%s: the item '%.40s...' is too long", flag, item);
    memcpy(text, item, len);
    text[len] = '\0';
    char *colon = strrchr(text, ':');
    kiln_dims dims;
    if (!colon || colon == text || !cli_parse_dims(colon + 1, &dims))
        return cli_usage_error("%s expects NAME:DIMS[,NAME:DIMS...] such as data:1x3x224x224, "
                               "got '%s'",
                               flag, text);
    *colon = '\0';
    if (cli_shapes_find(list, text))
        return cli_usage_error("%s names input '%s' twice", flag, text);
    if (list->n == list->cap) {
        int cap = list->cap ? 2 * list->cap : 4;
        cli_shape *v = realloc(list->v, (size_t)cap * sizeof *v);
        if (!v) return cli_error("out of memory");
        list->v = v;
        list->cap = cap;
    }
    char *name = malloc(strlen(text) + 1);
    if (!name) return cli_error("out of memory");
    strcpy(name, text);
    list->v[list->n++] = (cli_shape){name, dims};
    return CLI_OK;
}

int cli_shapes_parse(cli_shapes *list, const char *flag, const char *text)
{
    const char *s = text;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        int rc = add_shape_item(list, flag, s, len);
        if (rc != CLI_OK) return rc;
        if (!comma) return CLI_OK;
        s = comma + 1;
    }
}

const cli_shape *cli_shapes_find(const cli_shapes *list, const char *name)
{
    for (int i = 0; i < list->n; i++)
        if (strcmp(list->v[i].name, name) == 0) return &list->v[i];
    return NULL;
}

void cli_shapes_free(cli_shapes *list)
{
    for (int i = 0; i < list->n; i++) free(list->v[i].name);
    free(list->v);
    memset(list, 0, sizeof *list);
}

/* ---- optimization profiles ---- */

/* Input `name`'s min, opt and max shapes in `profile` into b[0..2]. */
static bool profile_bounds(const kiln_engine *e, int32_t profile, const char *name, kiln_dims *b)
{
    for (int k = 0; k < 3; k++)
        if (kiln_engine_profile_shape(e, profile, name, (kiln_profile_bound)k, &b[k]) != KILN_OK)
            return false;
    return true;
}

bool cli_engine_is_dynamic(const kiln_engine *e)
{
    int32_t np = kiln_engine_num_profiles(e);
    if (np > 1) return true;
    for (int32_t i = 0; i < kiln_engine_num_io(e); i++) {
        const char *name = kiln_engine_io_name(e, i);
        kiln_dims b[3];
        if (kiln_engine_io_mode(e, name) == KILN_IO_INPUT && profile_bounds(e, 0, name, b) &&
            !cli_dims_equal(&b[KILN_PROFILE_MIN], &b[KILN_PROFILE_MAX]))
            return true;
    }
    return false;
}

void cli_print_profiles(void *file, const kiln_engine *e, const char *indent)
{
    FILE *f = file;
    int32_t np = kiln_engine_num_profiles(e), n_io = kiln_engine_num_io(e);
    int wp = snprintf(NULL, 0, "%d", (int)np - 1), wn = 5, w[3] = {3, 3, 3};
    char s[3][160];
    /* Widths first, so that the columns line up. */
    for (int32_t p = 0; p < np; p++) {
        for (int32_t i = 0; i < n_io; i++) {
            const char *name = kiln_engine_io_name(e, i);
            kiln_dims b[3];
            if (kiln_engine_io_mode(e, name) != KILN_IO_INPUT || !profile_bounds(e, p, name, b))
                continue;
            if ((int)strlen(name) > wn) wn = (int)strlen(name);
            for (int k = 0; k < 3; k++) {
                int len = (int)strlen(cli_dims_str(&b[k], s[k], sizeof s[k]));
                if (len > w[k]) w[k] = len;
            }
        }
    }
    fprintf(f, "%s%*s  %-*s  %-*s  %-*s  %s\n", indent, wp, "#", wn, "input", w[0], "min", w[1],
            "opt", "max");
    for (int32_t p = 0; p < np; p++) {
        for (int32_t i = 0; i < n_io; i++) {
            const char *name = kiln_engine_io_name(e, i);
            kiln_dims b[3];
            if (kiln_engine_io_mode(e, name) != KILN_IO_INPUT || !profile_bounds(e, p, name, b))
                continue;
            for (int k = 0; k < 3; k++) cli_dims_str(&b[k], s[k], sizeof s[k]);
            fprintf(f, "%s%*d  %-*s  %-*s  %-*s  %s\n", indent, wp, (int)p, wn, name, w[0], s[0],
                    w[1], s[1], s[2]);
        }
    }
}

/* ---- messages ---- */

static const char *g_command;

void cli_set_command(const char *name) { g_command = name; }

/* "kiln build: " or "kiln: " */
static void print_prefix(void)
{
    if (g_command)
        fprintf(stderr, "kiln %s: ", g_command);
    else
        fputs("kiln: ", stderr);
}

/* Prints text with line breaks turned into "; " so that every error stays one line. */
static void print_one_line(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n' || *s == '\r') {
            if (s[1] != '\0') fputs("; ", stderr);
        } else {
            fputc(*s, stderr);
        }
    }
}

/* "kiln CMD: " + kind + the formatted message, on one line without its end. */
static void print_message(const char *kind, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    print_prefix();
    fputs(kind, stderr);
    print_one_line(msg);
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_message("", fmt, ap);
    va_end(ap);
    if (g_command)
        fprintf(stderr, " (see 'kiln %s --help')\n", g_command);
    else
        fputs(" (see 'kiln help')\n", stderr);
    return CLI_USAGE;
}

int cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    print_message("error: ", fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAILED;
}

int cli_kiln_error(kiln_status status, const char *fmt, ...)
{
    /* Read before anything else can call into kiln and replace it. */
    const char *why = kiln_last_error();
    va_list ap;
    va_start(ap, fmt);
    print_message("error: ", fmt, ap);
    va_end(ap);
    fputs(": ", stderr);
    print_one_line(why && *why ? why : "(no message)");
    fprintf(stderr, " [%s]\n", kiln_status_name(status));
    return CLI_FAILED;
}

static void log_to_stderr(kiln_log_level level, const char *message, void *user)
{
    static const char *const names[] = {"error", "warning", "info", "verbose"};
    const char *name = (unsigned)level < 4 ? names[level] : "log";
    fprintf(stderr, "kiln: %s: ", name);
    print_one_line(message);
    fputc('\n', stderr);
}

void cli_install_logger(kiln_log_level max_level)
{
    kiln_set_logger(log_to_stderr, NULL, max_level);
}

/* ---- formatting ---- */

const char *cli_dims_str(const kiln_dims *d, char *buf, size_t cap)
{
    if (cap == 0) return buf;
    buf[0] = '\0';
    if (d->rank <= 0) {
        snprintf(buf, cap, "%s", d->rank == 0 ? "scalar" : "?");
        return buf;
    }
    size_t len = 0;
    for (int32_t i = 0; i < d->rank && i < KILN_MAX_RANK && len < cap; i++) {
        int n;
        if (d->d[i] < 0)
            n = snprintf(buf + len, cap - len, "%s?", i ? "x" : "");
        else
            n = snprintf(buf + len, cap - len, "%s%lld", i ? "x" : "", (long long)d->d[i]);
        if (n < 0) break;
        len += (size_t)n;
    }
    return buf;
}

const char *cli_bytes_str(size_t bytes, char *buf, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024) {
        snprintf(buf, cap, "%zu B", bytes);
        return buf;
    }
    double v = (double)bytes / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

bool cli_dims_count(const kiln_dims *d, size_t *out)
{
    if (d->rank < 0 || d->rank > KILN_MAX_RANK) return false;
    size_t n = 1;
    for (int32_t i = 0; i < d->rank; i++) {
        if (d->d[i] < 0) return false;
        size_t k = (size_t)d->d[i];
        if (k != 0 && n > SIZE_MAX / k) return false;
        n *= k;
    }
    *out = n;
    return true;
}

bool cli_dims_equal(const kiln_dims *a, const kiln_dims *b)
{
    if (a->rank != b->rank) return false;
    for (int32_t i = 0; i < a->rank && i < KILN_MAX_RANK; i++)
        if (a->d[i] != b->d[i]) return false;
    return true;
}

void cli_json_string(void *file, const char *s)
{
    FILE *f = file;
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* ---- random numbers ---- */

void cli_rng_seed(cli_rng *r, uint64_t seed) { r->state = seed; }

/* splitmix64 (Steele, Lea, Flood 2014): tiny, and every seed gives a good stream. */
uint64_t cli_rng_next(cli_rng *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float cli_rng_uniform(cli_rng *r, float lo, float hi)
{
    /* 24 random bits fill a float's mantissa exactly, so the result is < 1 before scaling. */
    float u = (float)(cli_rng_next(r) >> 40) * (1.0f / 16777216.0f);
    return lo + (hi - lo) * u;
}

uint16_t cli_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t mant = x & 0x7fffffu;
    if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0u));
    int e = (int)exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign; /* below half the smallest subnormal */
        mant |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1u), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | (uint32_t)e << 10 | mant >> 13;
    uint32_t rem = mant & 0x1fffu;
    /* A carry out of the mantissa correctly bumps the exponent (up to infinity). */
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++;
    return (uint16_t)half;
}

uint16_t cli_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}
