/* build.h - the builder's internal steps: shape inference with build-time folding, and
 * the activation memory planner. */
#ifndef KILN_BUILD_H
#define KILN_BUILD_H

#include "ir/ir.h"

/* Largest output a layer may be folded into at build time. */
#define BUILD_FOLD_CAP_BYTES ((size_t)16 << 20)

/* Infers the dtype and shape of every value in topological order. A layer whose inputs
 * are all constants (or whose op reads only shapes) is evaluated now and becomes a
 * constant; *folded counts them. */
kiln_status build_infer(ir_graph *g, int32_t *folded);

/* Gives each arena value an offset in one arena by liveness over `order`: values whose
 * lifetimes overlap never share bytes. `offsets` gets UINT64_MAX for values not in the
 * arena (inputs, outputs, constants). Sizes are rounded up to 64 bytes. */
kiln_status build_memplan(const ir_graph *g, const int32_t *order, int32_t n_order,
                          uint64_t *offsets, uint64_t *arena_bytes, uint64_t *activation_bytes);

/* Bytes a value occupies (dtype size x elements). */
uint64_t build_value_bytes(const ir_value *v);

#endif
