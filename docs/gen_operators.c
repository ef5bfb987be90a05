/* gen_operators.c - writes the op-table part of docs/operators.md (scripts/gen_operators.py
 * writes the ONNX coverage part above it; a test fails when the committed file is stale). */
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

static void print_default(const ir_attr_def *a)
{
    if (a->required) {
        printf("required");
        return;
    }
    switch (a->type) {
    case KILN_ATTR_INT: printf("%lld", (long long)a->i); break;
    case KILN_ATTR_FLOAT: printf("%g", (double)a->f); break;
    case KILN_ATTR_STRING: printf("\"%s\"", a->s ? a->s : ""); break;
    default: printf("unset"); break;
    }
}

int main(void)
{
    const ir_op *op;
    int n = 0;
    while (ir_op_at(n)) n++;
    printf("## kiln's op table\n\n");
    printf("kiln implements %d operators. Those named like ONNX's have ONNX semantics, in\n", n);
    printf("the form of ONNX's newest opset (where newer opsets turned attributes into inputs,\n");
    printf("kiln takes the inputs); those named caffe.* carry Caffe layer semantics ONNX has\n");
    printf("no op for (SSD's PriorBox and DetectionOutput, Caffe's Crop, ArgMax, Normalize);\n");
    printf("those named kiln.* are what the optimizer fuses layers into (a convolution, Gemm\n");
    printf("or MatMul with bias, residual input and activation in one layer; attention's\n");
    printf("MatMul, scale, mask, Softmax and MatMul in one layer) and the layout conversion\n");
    printf("the builder places between layers (kiln.Reorder, plain <-> NCHWc).\n");
    printf("Each has shape inference and a portable reference kernel, tested by\n");
    printf("tests/unit/test_ops_*.c and against numpy by tests/python.\n\n");
    printf("| op | inputs | outputs | attributes (default) |\n| --- | --- | --- | --- |\n");
    for (int i = 0; (op = ir_op_at(i)) != NULL; i++) {
        printf("| %s | ", op->name);
        if (op->min_in == op->max_in)
            printf("%d", op->min_in);
        else
            printf("%d–%d", op->min_in, op->max_in);
        printf(" | ");
        if (op->min_out == op->max_out)
            printf("%d", op->min_out);
        else
            printf("%d–%d", op->min_out, op->max_out);
        printf(" | ");
        for (int32_t k = 0; k < op->n_attrs; k++) {
            printf("%s%s: %s = ", k ? ", " : "", op->attrs[k].name,
                   ir_attr_type_name(op->attrs[k].type));
            print_default(&op->attrs[k]);
        }
        printf(" |\n");
    }
    return 0;
}
