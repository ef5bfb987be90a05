/* plan.h - the plan: an engine's description in memory (plan_desc) and its file form
 * (docs/plan-format.md). The builder fills a plan_desc and writes it; the loader reads
 * and validates one from bytes. */
#ifndef KILN_PLAN_H
#define KILN_PLAN_H

#include "backends/backend.h"

#define PLAN_MAGIC               "KILNPLAN"
#define PLAN_FORMAT_VERSION      1u
#define PLAN_HEADER_BYTES        64u
#define PLAN_SECTION_ENTRY_BYTES 24u
#define PLAN_ALIGN               64u
#define PLAN_TENSOR_RECORD_BYTES 96u

enum plan_section_id {
    PLAN_SEC_STRINGS = 1,
    PLAN_SEC_TENSORS = 2,
    PLAN_SEC_LAYERS = 3,
    PLAN_SEC_IO = 4,
    PLAN_SEC_MEMORY = 5,
    PLAN_SEC_BUILD = 6,
    PLAN_SEC_WEIGHTS = 7,
    PLAN_SEC_FUSED = 8,     /* optional: per layer, the network layers it was fused from */
    PLAN_SEC_LAYOUTS = 9,   /* optional: per tensor, its layout (absent: all plain) */
    PLAN_SEC_PROFILES = 10, /* optional: optimization profiles of a dynamic engine */
    PLAN_SEC_COUNT_ = 11
};
/* Sections 1..PLAN_SEC_REQUIRED_LAST must be present; later ones may be absent. */
#define PLAN_SEC_REQUIRED_LAST PLAN_SEC_WEIGHTS

/* Tensor flags; none set means an activation living in the context's arena. */
/* PLAN_T_ELIDED (with CONSTANT): a constant whose bytes the plan does not hold, because
 * every layer reading it runs a kernel that reads its prepared data instead (the slot is in
 * the kernel's `prepared_inputs`); its record keeps the shape for inference. */
enum { PLAN_T_INPUT = 1u, PLAN_T_OUTPUT = 2u, PLAN_T_CONSTANT = 4u, PLAN_T_ELIDED = 8u };

/* What an elided constant's data points to at load and run time: 64 zero bytes, never read
 * by the kernels allowed to see it (the loader makes sure). */
extern const uint8_t plan_elided_data[64];

typedef struct plan_tensor {
    const char *name;
    kiln_dtype dtype;
    kiln_dims shape;
    ir_layout layout; /* how its bytes hold the shape; inputs and outputs are plain */
    uint32_t flags;
    uint64_t offset; /* activation: offset in the arena; constant: in the weights section */
    uint64_t nbytes;
    const void *data; /* constant data */
} plan_tensor;

typedef struct plan_layer {
    ir_node node;       /* in/out hold tensor indices (-1: absent optional input) */
    const char *kernel; /* the backend kernel's name */
    const backend_kernel *k;
    int32_t data; /* the constant tensor holding the kernel's prepared data; -1: none */
} plan_layer;

typedef struct plan_desc {
    uint64_t features;   /* CPU features the plan's kernels need */
    const char *device;  /* "cpu" */
    int32_t threads;     /* 0: one per hardware thread */
    uint32_t precisions; /* KILN_PRECISION_* allowed at build */
    int32_t n_tensors;
    plan_tensor *tensors;
    int32_t n_layers;
    plan_layer *layers;
    int32_t n_inputs, n_outputs;
    int32_t *inputs, *outputs;
    uint64_t arena_bytes, activation_bytes;
    /* Optimization profiles; 0: static shapes, the tensors' recorded ones. Otherwise per
     * profile and input (profile-major, inputs in `inputs` order) the min, opt and max
     * shapes; tensors are recorded (and sized) at the largest shapes of all profiles. */
    int32_t n_profiles;
    kiln_dims *prof_min, *prof_opt, *prof_max;
    /* Per layer, derived by the loader: the layer computes shapes (an op reading only
     * shapes, or one whose inputs are constants or such layers' outputs, with small
     * integer outputs: ir_is_shape_value). Later layers' shape inference reads their
     * outputs, so contexts evaluate them whenever input shapes change. */
    uint8_t *shape_layer;
    const char *build_info; /* "key=value" lines */
} plan_desc;

/* CRC-32C of the 64-byte header with its own checksum field (bytes 40..43) as zeros. */
uint32_t plan_header_crc(const uint8_t *header);

/* Serializes `d` into `out` (appended). Deterministic: the same desc gives the same bytes. */
kiln_status plan_write(const plan_desc *d, kiln_buf *out);

/* Parses and validates a plan held in `data` (which must stay alive and, for weights to
 * be aligned, start 64-byte aligned). Arrays are allocated in `arena`; strings and
 * constant data point into `data`. Every index, size and offset is checked, and every
 * layer's shapes are inferred again and compared, so a hostile plan cannot make a
 * kernel read or write outside its tensors. */
kiln_status plan_read(const void *data, size_t size, kiln_arena *arena, plan_desc *d);

#endif
