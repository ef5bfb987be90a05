/* caffe_import.c - (being written) */
#include "core/core.h"

kiln_status kiln_caffe_parse_files(kiln_network *net, const char *prototxt,
                                   const char *caffemodel, const char *const *outputs,
                                   int32_t n_outputs)
{
    return kiln_error(KILN_ERR_UNSUPPORTED, "Caffe import is not built yet");
}
