/* onnx_import.c - (being written) */
#include "core/core.h"

kiln_status kiln_onnx_parse_file(kiln_network *net, const char *path)
{
    return kiln_error(KILN_ERR_UNSUPPORTED, "ONNX import is not built yet");
}

kiln_status kiln_onnx_parse_memory(kiln_network *net, const void *data, size_t size,
                                   const char *base_dir)
{
    return kiln_error(KILN_ERR_UNSUPPORTED, "ONNX import is not built yet");
}

int kiln_onnx_op_supported(const char *domain, const char *op_type, int64_t opset) { return 0; }
