/* cpu_backend.c - the CPU backend's kernel registry. The reference kernel runs an op's
 * reference evaluation (src/ir) and serves every op; fast kernels (per ISA) join the
 * list ahead of it and are picked by the builder. */
#include <string.h>

#include "backends/backend.h"

static kiln_status run_reference(const ir_node *n, const ir_tensor *in, int32_t n_in,
                                 ir_tensor *out, int32_t n_out, const backend_exec *x)
{
    return n->op->eval(n, in, n_in, out, n_out);
}

static const backend_kernel g_kernels[] = {
    {"ref", NULL, 0, NULL, run_reference},
};

#define N_KERNELS ((int32_t)(sizeof g_kernels / sizeof *g_kernels))

static bool kernel_serves(const backend_kernel *k, const char *op)
{
    return (k->op == NULL || strcmp(k->op, op) == 0) && (k->features & ~kiln_cpu_features()) == 0;
}

static int32_t cpu_candidates(const ir_node *n, const ir_tensor *in, int32_t n_in,
                              const ir_tensor *out, int32_t n_out, const backend_kernel **list,
                              int32_t max)
{
    int32_t c = 0;
    for (int32_t i = 0; i < N_KERNELS && c < max; i++) {
        const backend_kernel *k = &g_kernels[i];
        if (!kernel_serves(k, n->op->name)) continue;
        if (k->applies && !k->applies(n, in, n_in, out, n_out)) continue;
        list[c++] = k;
    }
    return c;
}

static const backend_kernel *cpu_find(const char *op, const char *kernel)
{
    for (int32_t i = 0; i < N_KERNELS; i++)
        if (strcmp(g_kernels[i].name, kernel) == 0 &&
            (g_kernels[i].op == NULL || strcmp(g_kernels[i].op, op) == 0))
            return &g_kernels[i];
    return NULL;
}

static const kiln_backend g_cpu = {"cpu", cpu_candidates, cpu_find};

const kiln_backend *backend_cpu(void) { return &g_cpu; }
