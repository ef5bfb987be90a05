/* dead_code.c - removes layers none of whose outputs reach a network output. */
#include <string.h>

#include "opt/opt.h"

kiln_status opt_dead_code(ir_graph *g, int32_t *changes)
{
    unsigned char *live = NULL;
    KILN_TRY(kiln_alloc_checked((void **)&live, (size_t)g->n_values + 1, 1, "dead-code pass"));
    for (int32_t i = 0; i < g->n_outputs; i++) live[g->outputs[i]] = 1;
    /* Walk nodes backwards until nothing changes: a node is live if any output is. */
    bool again = true;
    while (again) {
        again = false;
        for (int32_t i = g->n_nodes - 1; i >= 0; i--) {
            ir_node *n = &g->nodes[i];
            if (n->dead) continue;
            bool used = false;
            for (int32_t k = 0; k < n->n_out; k++) used |= live[n->out[k]] != 0;
            if (!used) continue;
            for (int32_t k = 0; k < n->n_in; k++)
                if (n->in[k] >= 0 && !live[n->in[k]]) {
                    live[n->in[k]] = 1;
                    again = true;
                }
        }
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        ir_node *n = &g->nodes[i];
        if (n->dead) continue;
        bool used = false;
        for (int32_t k = 0; k < n->n_out; k++) used |= live[n->out[k]] != 0;
        if (used) continue;
        n->dead = true;
        (*changes)++;
        kiln_log(KILN_LOG_VERBOSE, "dead-code: removed layer '%s' (%s)", n->name, n->op->name);
    }
    kiln_free(live);
    return KILN_OK;
}
