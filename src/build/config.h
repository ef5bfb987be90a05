/* config.h - what kiln_config holds (build options). */
#ifndef KILN_BUILD_CONFIG_H
#define KILN_BUILD_CONFIG_H

#include "core/core.h"

/* One input's shape range in an optimization profile. */
typedef struct config_range {
    char *input;
    kiln_dims min, opt, max;
} config_range;

/* An optimization profile: a range for some inputs (the others keep their declared
 * shapes). */
typedef struct config_profile {
    config_range *ranges;
    int32_t n_ranges;
} config_profile;

struct kiln_config {
    char device[32];
    int32_t threads;
    uint32_t precisions;
    kiln_log_level log_level;
    char **disabled_passes;
    int32_t n_disabled;
    config_profile *profiles; /* at least one once any shape is given */
    int32_t n_profiles;
    char *timing_cache; /* path, NULL: none */
    bool no_timing;     /* take each layer's first candidate instead of timing them */
};

/* Fills `c` with the defaults of kiln_config_create. */
void config_defaults(struct kiln_config *c);
bool config_pass_disabled(const struct kiln_config *c, const char *pass);
/* The range profile `p` gives `input`, NULL if none. */
const config_range *config_range_of(const struct kiln_config *c, int32_t p, const char *input);

#endif
