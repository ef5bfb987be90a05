/* models.h - networks built into the command line through the public layer API, so that
 * `kiln build` has something to build before the ONNX and Caffe importers exist. */
#ifndef KILN_TOOLS_MODELS_H
#define KILN_TOOLS_MODELS_H

#include <stdint.h>

#include "kiln.h"

/* The seed of the weights: "kiln" in ASCII. Fixed, so that builds are reproducible. */
#define MODELS_SEED 0x6b696c6eu

/* For messages: "lenet, mlp, resblock". */
#define MODELS_LIST "lenet, mlp, resblock"

/* The i-th built-in model's name and description (two lines indented for `kiln build
 * --help`); NULL past the end. */
const char *models_name(int32_t i);
const char *models_summary(int32_t i);
/* Whether `name` is a built-in model. */
int models_exists(const char *name);

/* Defines the model layer by layer with deterministic pseudo-random weights. `batch` is
 * the leading dimension of the input: >= 1, or -1 to leave it dynamic (to be fixed by
 * kiln_config_set_input_shape). On failure returns the status, kiln_last_error() says why. */
kiln_status models_create(const char *name, int64_t batch, kiln_network **out);

#endif /* KILN_TOOLS_MODELS_H */
