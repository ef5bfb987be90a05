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
    for (int32_t i = 0; i < c->n_shapes; i++) kiln_free(c->shapes[i].input);
    kiln_free(c->shapes);
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

kiln_status kiln_config_set_input_shape(kiln_config *c, const char *input, const kiln_dims *shape)
{
    NEED_CFG(c);
    if (!input || !shape) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "input or shape is NULL");
    if (shape->rank < 0 || shape->rank > KILN_MAX_RANK)
        return kiln_error(KILN_ERR_SHAPE, "input '%s': rank %d is outside 0..%d", input,
                          shape->rank, KILN_MAX_RANK);
    for (int32_t i = 0; i < shape->rank; i++)
        if (shape->d[i] < 0)
            return kiln_error(KILN_ERR_SHAPE, "input '%s': dimension %d is %lld", input, i,
                              (long long)shape->d[i]);
    for (int32_t i = 0; i < c->n_shapes; i++)
        if (strcmp(c->shapes[i].input, input) == 0) {
            c->shapes[i].shape = *shape;
            return KILN_OK;
        }
    config_shape *arr = kiln_realloc(c->shapes, sizeof *arr * (size_t)(c->n_shapes + 1));
    if (!arr) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    c->shapes = arr;
    arr[c->n_shapes].input = kiln_strdup(input);
    if (!arr[c->n_shapes].input) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory");
    arr[c->n_shapes].shape = *shape;
    c->n_shapes++;
    return KILN_OK;
}

bool config_pass_disabled(const kiln_config *c, const char *pass)
{
    for (int32_t i = 0; i < c->n_disabled; i++)
        if (strcmp(c->disabled_passes[i], pass) == 0) return true;
    return false;
}

const kiln_dims *config_input_shape(const kiln_config *c, const char *input)
{
    for (int32_t i = 0; i < c->n_shapes; i++)
        if (strcmp(c->shapes[i].input, input) == 0) return &c->shapes[i].shape;
    return NULL;
}
