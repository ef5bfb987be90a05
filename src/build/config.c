/* config.c - the public build configuration object. */
#include <stdlib.h>
#include <string.h>

#include "build/config.h"

void config_defaults(kiln_config *c)
{
    memset(c, 0, sizeof *c);
    strcpy(c->device, "cpu");
    c->threads = 0;
    c->precisions = KILN_PRECISION_FP32;
    c->log_level = KILN_LOG_INFO;
}

kiln_status kiln_config_create(kiln_config **out)
{
    if (!out) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_config_create: out is NULL");
    *out = kiln_malloc(sizeof **out);
    if (!*out) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating a config");
    config_defaults(*out);
    return KILN_OK;
}

void kiln_config_destroy(kiln_config *c)
{
    if (!c) return;
    for (int32_t i = 0; i < c->n_disabled; i++) kiln_free(c->disabled_passes[i]);
    kiln_free(c->disabled_passes);
    for (int32_t p = 0; p < c->n_profiles; p++) {
        for (int32_t i = 0; i < c->profiles[p].n_ranges; i++)
            kiln_free(c->profiles[p].ranges[i].input);
        kiln_free(c->profiles[p].ranges);
    }
    kiln_free(c->profiles);
    kiln_free(c->timing_cache);
    kiln_free(c);
}

#define NEED_CFG(c)                                                                                \
    do {                                                                                           \
        if (!(c)) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "%s: config is NULL", __func__);    \
    } while (0)

kiln_status kiln_config_set_device(kiln_config *c, const char *device)
{
    NEED_CFG(c);
    if (!device) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "device is NULL");
    if (strcmp(device, "cpu") == 0) {
        strcpy(c->device, "cpu");
        return KILN_OK;
    }
    if (strncmp(device, "cuda", 4) == 0)
        return kiln_error(KILN_ERR_DEVICE,
                          "device '%s': this kiln was built without the CUDA backend", device);
    return kiln_error(KILN_ERR_INVALID_ARGUMENT, "unknown device '%s' (expected cpu or cuda:N)",
                      device);
}

kiln_status kiln_config_set_threads(kiln_config *c, int32_t threads)
{
    NEED_CFG(c);
    if (threads < 0 || threads > 1024)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "thread count %d is outside 0..1024", threads);
    c->threads = threads;
    return KILN_OK;
}

kiln_status kiln_config_set_precisions(kiln_config *c, uint32_t mask)
{
    NEED_CFG(c);
    uint32_t known =
        KILN_PRECISION_FP32 | KILN_PRECISION_FP16 | KILN_PRECISION_BF16 | KILN_PRECISION_INT8;
    if (mask & ~known)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "unknown precision bits 0x%x", mask & ~known);
    c->precisions = mask | KILN_PRECISION_FP32;
    return KILN_OK;
}

kiln_status kiln_config_set_log_level(kiln_config *c, kiln_log_level level)
{
    NEED_CFG(c);
    if (level < KILN_LOG_ERROR || level > KILN_LOG_VERBOSE)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "unknown log level %d", (int)level);
    c->log_level = level;
    return KILN_OK;
}

kiln_status kiln_config_disable_pass(kiln_config *c, const char *pass)
{
    NEED_CFG(c);
    bool known = false;
    const char *p;
    for (int32_t i = 0; pass && (p = kiln_pass_name(i)) != NULL; i++)
        if (strcmp(p, pass) == 0) known = true;
    if (!known)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "unknown optimization pass '%s'",
                          pass ? pass : "(null)");
    if (config_pass_disabled(c, pass)) return KILN_OK;
    char **arr = kiln_realloc(c->disabled_passes, sizeof(char *) * (size_t)(c->n_disabled + 1));
    if (!arr) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    c->disabled_passes = arr;
    arr[c->n_disabled] = kiln_strdup(pass);
    if (!arr[c->n_disabled]) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    c->n_disabled++;
    return KILN_OK;
}

static kiln_status check_dims(const char *input, const char *what, const kiln_dims *d)
{
    if (d->rank < 0 || d->rank > KILN_MAX_RANK)
        return kiln_error(KILN_ERR_SHAPE, "input '%s': %s shape has rank %d, outside 0..%d", input,
                          what, d->rank, KILN_MAX_RANK);
    for (int32_t i = 0; i < d->rank; i++)
        if (d->d[i] < 0)
            return kiln_error(KILN_ERR_SHAPE, "input '%s': %s dimension %d is %lld", input, what, i,
                              (long long)d->d[i]);
    return KILN_OK;
}

kiln_status kiln_config_set_shape_range(kiln_config *c, int32_t profile, const char *input,
                                        const kiln_dims *min, const kiln_dims *opt,
                                        const kiln_dims *max)
{
    NEED_CFG(c);
    if (!input || !min || !opt || !max)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT, "input or a shape is NULL");
    if (profile < 0 || profile > c->n_profiles || profile >= KILN_MAX_PROFILES)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "profile %d: the config has %d profile%s (a new one takes index %d, at "
                          "most %d in all)",
                          profile, c->n_profiles, c->n_profiles == 1 ? "" : "s", c->n_profiles,
                          KILN_MAX_PROFILES);
    KILN_TRY(check_dims(input, "min", min));
    KILN_TRY(check_dims(input, "opt", opt));
    KILN_TRY(check_dims(input, "max", max));
    if (min->rank != opt->rank || opt->rank != max->rank)
        return kiln_error(KILN_ERR_SHAPE, "input '%s': min, opt and max have ranks %d, %d and %d",
                          input, min->rank, opt->rank, max->rank);
    for (int32_t i = 0; i < min->rank; i++)
        if (!(min->d[i] <= opt->d[i] && opt->d[i] <= max->d[i]))
            return kiln_error(KILN_ERR_SHAPE,
                              "input '%s': dimension %d needs min <= opt <= max, got %lld, %lld, "
                              "%lld",
                              input, i, (long long)min->d[i], (long long)opt->d[i],
                              (long long)max->d[i]);
    if (profile == c->n_profiles) {
        config_profile *arr = kiln_realloc(c->profiles, sizeof *arr * (size_t)(c->n_profiles + 1));
        if (!arr) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
        c->profiles = arr;
        memset(&arr[c->n_profiles++], 0, sizeof *arr);
    }
    config_profile *p = &c->profiles[profile];
    config_range *r = NULL;
    for (int32_t i = 0; i < p->n_ranges; i++)
        if (strcmp(p->ranges[i].input, input) == 0) r = &p->ranges[i];
    if (!r) {
        config_range *arr = kiln_realloc(p->ranges, sizeof *arr * (size_t)(p->n_ranges + 1));
        if (!arr) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
        p->ranges = arr;
        char *name = kiln_strdup(input);
        if (!name) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
        r = &arr[p->n_ranges++];
        r->input = name;
    }
    r->min = *min;
    r->opt = *opt;
    r->max = *max;
    return KILN_OK;
}

kiln_status kiln_config_set_input_shape(kiln_config *c, const char *input, const kiln_dims *shape)
{
    NEED_CFG(c);
    return kiln_config_set_shape_range(c, 0, input, shape, shape, shape);
}

int32_t kiln_config_num_profiles(const kiln_config *c) { return c ? c->n_profiles : 0; }

kiln_status kiln_config_set_timing_cache(kiln_config *c, const char *path)
{
    NEED_CFG(c);
    char *p = NULL;
    if (path && !(p = kiln_strdup(path)))
        return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    kiln_free(c->timing_cache);
    c->timing_cache = p;
    return KILN_OK;
}

kiln_status kiln_config_set_tactic_timing(kiln_config *c, int on)
{
    NEED_CFG(c);
    c->no_timing = !on;
    return KILN_OK;
}

bool config_pass_disabled(const kiln_config *c, const char *pass)
{
    for (int32_t i = 0; i < c->n_disabled; i++)
        if (strcmp(c->disabled_passes[i], pass) == 0) return true;
    return false;
}

const config_range *config_range_of(const kiln_config *c, int32_t p, const char *input)
{
    if (p < 0 || p >= c->n_profiles) return NULL;
    for (int32_t i = 0; i < c->profiles[p].n_ranges; i++)
        if (strcmp(c->profiles[p].ranges[i].input, input) == 0) return &c->profiles[p].ranges[i];
    return NULL;
}
