/* pipeline.c - the listed sequence of optimization passes. A pass joins the pipeline by
 * a row here; each can be switched off by name for debugging. */
#include "opt/opt.h"

static const opt_pass g_passes[] = {
    {"dead-code", "remove layers whose outputs nothing uses", opt_dead_code},
};

#define N_PASSES   ((int32_t)(sizeof g_passes / sizeof *g_passes))
#define MAX_ROUNDS 4

const opt_pass *opt_pass_at(int32_t index)
{
    return index >= 0 && index < N_PASSES ? &g_passes[index] : NULL;
}

const char *kiln_pass_name(int32_t index)
{
    const opt_pass *p = opt_pass_at(index);
    return p ? p->name : NULL;
}

kiln_status opt_run_pipeline(ir_graph *g, bool (*disabled)(const char *, const void *),
                             const void *user)
{
    for (int round = 0; round < MAX_ROUNDS; round++) {
        int32_t total = 0;
        for (int32_t i = 0; i < N_PASSES; i++) {
            if (disabled && disabled(g_passes[i].name, user)) continue;
            int32_t changes = 0;
            KILN_TRY(g_passes[i].run(g, &changes));
            if (changes)
                kiln_log(KILN_LOG_INFO, "pass %s: %d change%s", g_passes[i].name, changes,
                         changes == 1 ? "" : "s");
            total += changes;
        }
        if (total == 0) break;
    }
    return KILN_OK;
}
