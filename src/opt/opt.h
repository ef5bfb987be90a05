/* opt.h - graph optimization passes and the listed pipeline that runs them. */
#ifndef KILN_OPT_H
#define KILN_OPT_H

#include "ir/ir.h"

/* A pass rewrites the graph in place (shapes are known when passes run) and adds the
 * number of changes it made to *changes, logging each at VERBOSE. */
typedef kiln_status (*opt_pass_fn)(ir_graph *g, int32_t *changes);

typedef struct opt_pass {
    const char *name; /* what `--disable-pass` takes */
    const char *summary;
    opt_pass_fn run;
} opt_pass;

/* The pipeline in order; NULL past the end. */
const opt_pass *opt_pass_at(int32_t index);

/* Runs every pass not disabled, in order, until a round changes nothing (at most a
 * few rounds). `disabled(name, user)` says whether to skip a pass. */
kiln_status opt_run_pipeline(ir_graph *g, bool (*disabled)(const char *name, const void *user),
                             const void *user);

/* Passes (one file each). */
kiln_status opt_dead_code(ir_graph *g, int32_t *changes);

#endif
