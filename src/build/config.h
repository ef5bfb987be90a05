/* config.h - what kiln_config holds (build options). */
#ifndef KILN_BUILD_CONFIG_H
#define KILN_BUILD_CONFIG_H

#include "core/core.h"

typedef struct config_shape {
    char *input;
    kiln_dims shape;
} config_shape;

struct kiln_config {
    char device[32];
    int32_t threads;
    uint32_t precisions;
    kiln_log_level log_level;
    char **disabled_passes;
    int32_t n_disabled;
    config_shape *shapes;
    int32_t n_shapes;
};

/* Fills `c` with the defaults of kiln_config_create. */
void config_defaults(struct kiln_config *c);
bool config_pass_disabled(const struct kiln_config *c, const char *pass);
const kiln_dims *config_input_shape(const struct kiln_config *c, const char *input);

#endif
