/* ops_table.c - the one op table: every op group of src/ir/ops, looked up by name. */
#include <string.h>

#include "ir/ir.h"

typedef struct group {
    const ir_op *ops;
    const int32_t *count;
} group;

static const group g_groups[] = {
    {ir_ops_elementwise, &ir_ops_elementwise_count},
    {ir_ops_nn, &ir_ops_nn_count},
    {ir_ops_linalg, &ir_ops_linalg_count},
    {ir_ops_shape, &ir_ops_shape_count},
    {ir_ops_extra, &ir_ops_extra_count},
    {ir_ops_caffe, &ir_ops_caffe_count},
    {ir_ops_fused, &ir_ops_fused_count},
    {ir_ops_layout, &ir_ops_layout_count},
};

const ir_op *ir_op_at(int32_t i)
{
    if (i < 0) return NULL;
    for (size_t g = 0; g < sizeof g_groups / sizeof *g_groups; g++) {
        if (i < *g_groups[g].count) return &g_groups[g].ops[i];
        i -= *g_groups[g].count;
    }
    return NULL;
}

const ir_op *ir_op_find(const char *name)
{
    if (!name) return NULL;
    const ir_op *op;
    for (int32_t i = 0; (op = ir_op_at(i)) != NULL; i++)
        if (strcmp(op->name, name) == 0) return op;
    return NULL;
}

int kiln_op_supported(const char *op) { return ir_op_find(op) != NULL; }
