/* kiln.h - the whole public API of kiln, an inference optimizer and runtime.
 *
 * Lifecycle (one object per step, as in TensorRT):
 *   kiln_network  -> kiln_build(network, config) -> kiln_engine -> kiln_context -> run
 * Every fallible call returns kiln_status; kiln_last_error() then says what, where and why.
 */
#ifndef KILN_H
#define KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define KILN_API
#elif defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#define KILN_VERSION_MAJOR 0
#define KILN_VERSION_MINOR 1
#define KILN_VERSION_PATCH 0

/* Most dimensions a tensor may have. */
#define KILN_MAX_RANK 8

/* ---- status and errors ---------------------------------------------------------- */

typedef enum kiln_status {
    KILN_OK = 0,
    KILN_ERR_INVALID_ARGUMENT, /* a caller passed something unusable (NULL, bad value) */
    KILN_ERR_OUT_OF_MEMORY,    /* an allocation failed */
    KILN_ERR_IO,               /* a file could not be opened, read or written */
    KILN_ERR_PARSE,            /* a model or data file is malformed */
    KILN_ERR_UNSUPPORTED,      /* valid input that kiln cannot handle (an op, a dtype) */
    KILN_ERR_INVALID_GRAPH,    /* the network breaks a rule (dangling name, cycle, bad arity) */
    KILN_ERR_SHAPE,            /* shapes do not agree */
    KILN_ERR_NOT_FOUND,        /* a tensor or layer name is unknown */
    KILN_ERR_CORRUPT_PLAN,     /* a plan file fails validation */
    KILN_ERR_VERSION,          /* a plan from another format version */
    KILN_ERR_DEVICE,           /* the plan needs a device or CPU feature this machine lacks */
    KILN_ERR_STATE,            /* a call out of order (e.g. run before binding every tensor) */
    KILN_ERR_INTERNAL          /* a bug in kiln */
} kiln_status;

/* The message of the last failed call on this thread ("" if none). Valid until the
 * next failing kiln call on the same thread. */
KILN_API const char *kiln_last_error(void);
/* A short constant name for a status ("KILN_ERR_SHAPE"). */
KILN_API const char *kiln_status_name(kiln_status status);
/* Clears this thread's last error. */
KILN_API void kiln_clear_error(void);

/* ---- version --------------------------------------------------------------------- */

/* "0.1.0" */
KILN_API const char *kiln_version(void);
/* major * 10000 + minor * 100 + patch */
KILN_API int kiln_version_number(void);

/* ---- logging ---------------------------------------------------------------------- */

typedef enum kiln_log_level {
    KILN_LOG_ERROR = 0,
    KILN_LOG_WARNING = 1,
    KILN_LOG_INFO = 2,
    KILN_LOG_VERBOSE = 3
} kiln_log_level;

typedef void (*kiln_log_fn)(kiln_log_level level, const char *message, void *user);

/* Installs a process-wide logger for build and runtime messages at or below `max_level`
 * (fn NULL silences kiln, the default). Not to be changed while other threads use kiln. */
KILN_API void kiln_set_logger(kiln_log_fn fn, void *user, kiln_log_level max_level);

/* ---- data types and shapes ---------------------------------------------------------- */

/* Values equal ONNX TensorProto.DataType, so plans and parsers share one numbering. */
typedef enum kiln_dtype {
    KILN_DTYPE_UNDEFINED = 0,
    KILN_DTYPE_F32 = 1,
    KILN_DTYPE_U8 = 2,
    KILN_DTYPE_I8 = 3,
    KILN_DTYPE_I32 = 6,
    KILN_DTYPE_I64 = 7,
    KILN_DTYPE_BOOL = 9,
    KILN_DTYPE_F16 = 10,
    KILN_DTYPE_BF16 = 16
} kiln_dtype;

/* Bytes per element (0 for an unknown dtype). */
KILN_API size_t kiln_dtype_size(kiln_dtype dtype);
/* "f32", "i64", ... ("?" for an unknown dtype). */
KILN_API const char *kiln_dtype_name(kiln_dtype dtype);

/* A shape. A value type, like TensorRT's Dims. */
typedef struct kiln_dims {
    int32_t rank;
    int64_t d[KILN_MAX_RANK];
} kiln_dims;

/* ---- attributes -------------------------------------------------------------------- */

typedef enum kiln_attr_type {
    KILN_ATTR_INT = 1,
    KILN_ATTR_FLOAT = 2,
    KILN_ATTR_STRING = 3,
    KILN_ATTR_INTS = 4,
    KILN_ATTR_FLOATS = 5
} kiln_attr_type;

/* One named layer attribute; the arrays are copied by kiln_network_add_layer. */
typedef struct kiln_attr {
    const char *name;
    kiln_attr_type type;
    int64_t i;
    float f;
    const char *s;
    const int64_t *ints;
    const float *floats;
    int32_t count; /* length of ints or floats */
} kiln_attr;

/* Attribute builders: KILN_ATTR_I("group", 2), KILN_ATTR_IS("pads", pads, 4). */
#define KILN_ATTR_I(n, v) ((kiln_attr){.name = (n), .type = KILN_ATTR_INT, .i = (v)})
#define KILN_ATTR_F(n, v) ((kiln_attr){.name = (n), .type = KILN_ATTR_FLOAT, .f = (v)})
#define KILN_ATTR_S(n, v) ((kiln_attr){.name = (n), .type = KILN_ATTR_STRING, .s = (v)})
#define KILN_ATTR_IS(n, p, c)                                                                      \
    ((kiln_attr){.name = (n), .type = KILN_ATTR_INTS, .ints = (p), .count = (c)})
#define KILN_ATTR_FS(n, p, c)                                                                      \
    ((kiln_attr){.name = (n), .type = KILN_ATTR_FLOATS, .floats = (p), .count = (c)})

/* ---- network: an editable graph ------------------------------------------------------ */

typedef struct kiln_network kiln_network;

/* Creates an empty network. */
KILN_API kiln_status kiln_network_create(kiln_network **out);
/* Frees a network (NULL is fine). */
KILN_API void kiln_network_destroy(kiln_network *net);

/* Declares a network input tensor. A dimension of -1 is dynamic (resolved by the
 * builder from the config's shapes). */
KILN_API kiln_status kiln_network_add_input(kiln_network *net, const char *name, kiln_dtype dtype,
                                            const kiln_dims *shape);

/* Adds a constant tensor (weights); `data` is copied, `nbytes` must match the shape. */
KILN_API kiln_status kiln_network_add_constant(kiln_network *net, const char *name,
                                               kiln_dtype dtype, const kiln_dims *shape,
                                               const void *data, size_t nbytes);

/* Adds a layer running `op` (an ONNX operator name such as "Conv", "Relu", "Gemm").
 * Inputs and outputs are tensor names; an empty input name "" leaves an optional input
 * out. Attributes follow the ONNX operator's definition. The op's arity and attributes
 * are checked here; shapes are checked by the builder. `name` may be NULL (one is made). */
KILN_API kiln_status kiln_network_add_layer(kiln_network *net, const char *op, const char *name,
                                            const char *const *inputs, int32_t n_inputs,
                                            const char *const *outputs, int32_t n_outputs,
                                            const kiln_attr *attrs, int32_t n_attrs);

/* Marks a tensor as a network output. */
KILN_API kiln_status kiln_network_mark_output(kiln_network *net, const char *name);

/* Counts of what the network holds (for tools and tests). */
KILN_API int32_t kiln_network_num_layers(const kiln_network *net);
KILN_API int32_t kiln_network_num_inputs(const kiln_network *net);
KILN_API int32_t kiln_network_num_outputs(const kiln_network *net);

/* ---- importers ------------------------------------------------------------------------ */

/* Adds the graph of an ONNX model file to `net` (normally empty): inputs, initializers as
 * constants, layers, outputs. External data files are read from the model's directory
 * only. A model using ops kiln lacks fails with one message listing all of them. */
KILN_API kiln_status kiln_onnx_parse_file(kiln_network *net, const char *path);
/* The same from memory; `base_dir` is where external data files live (NULL: the model
 * may not use external data). */
KILN_API kiln_status kiln_onnx_parse_memory(kiln_network *net, const void *data, size_t size,
                                            const char *base_dir);
/* Whether the ONNX importer handles op `op_type` of `domain` ("" or "ai.onnx" is the
 * default domain) at opset `opset`: 1 yes, 0 no. */
KILN_API int kiln_onnx_op_supported(const char *domain, const char *op_type, int64_t opset);

/* Adds a Caffe network to `net` (normally empty): the deploy `prototxt` (text format,
 * `layer` or legacy `layers` form) and the trained `caffemodel` (binary; NULL to define
 * the structure only, which fails for layers that need weights). `outputs` names the
 * blobs to mark as network outputs; none (n_outputs 0) marks every top no layer reads. */
KILN_API kiln_status kiln_caffe_parse_files(kiln_network *net, const char *prototxt,
                                            const char *caffemodel, const char *const *outputs,
                                            int32_t n_outputs);

/* Name and op of layer `index` of the network, in the order added (NULL when out of
 * range): what a model holds before optimization. */
KILN_API const char *kiln_network_layer_name(const kiln_network *net, int32_t index);
KILN_API const char *kiln_network_layer_op(const kiln_network *net, int32_t index);

/* Whether kiln knows an op by this name (1) or not (0). */
KILN_API int kiln_op_supported(const char *op);

/* ---- config: how to build ----------------------------------------------------------- */

typedef struct kiln_config kiln_config;

enum {
    KILN_PRECISION_FP32 = 1u << 0, /* always allowed */
    KILN_PRECISION_FP16 = 1u << 1,
    KILN_PRECISION_BF16 = 1u << 2,
    KILN_PRECISION_INT8 = 1u << 3
};

/* Creates a config with defaults: device "cpu", all hardware threads, FP32, log INFO. */
KILN_API kiln_status kiln_config_create(kiln_config **out);
KILN_API void kiln_config_destroy(kiln_config *cfg);
/* "cpu" or "cuda:N". */
KILN_API kiln_status kiln_config_set_device(kiln_config *cfg, const char *device);
/* Threads the engine's contexts use; 0 means one per hardware thread. */
KILN_API kiln_status kiln_config_set_threads(kiln_config *cfg, int32_t threads);
/* A mask of KILN_PRECISION_*; FP32 is always added. */
KILN_API kiln_status kiln_config_set_precisions(kiln_config *cfg, uint32_t mask);
/* Most detailed level of messages the builder sends to the logger. */
KILN_API kiln_status kiln_config_set_log_level(kiln_config *cfg, kiln_log_level level);
/* Switches an optimization pass off by name (see `kiln build --list-passes`). */
KILN_API kiln_status kiln_config_disable_pass(kiln_config *cfg, const char *pass);
/* Fixes the shape of a dynamic input for this build: a range of one shape in profile 0
 * (kiln_config_set_shape_range with min = opt = max). */
KILN_API kiln_status kiln_config_set_input_shape(kiln_config *cfg, const char *input,
                                                 const kiln_dims *shape);

/* Optimization profiles, as in TensorRT: for each dynamic input the smallest, the usual
 * and the largest shape a context may give it. The engine runs any shape inside a
 * profile without rebuilding; kernels are chosen for `opt`, memory is sized for `max`.
 * `profile` is 0, 1, ...; the index one past the last adds a profile. Every profile must
 * give a range to every input with a dynamic dimension; inputs it does not name keep
 * their declared shapes. */
#define KILN_MAX_PROFILES 8
KILN_API kiln_status kiln_config_set_shape_range(kiln_config *cfg, int32_t profile,
                                                 const char *input, const kiln_dims *min,
                                                 const kiln_dims *opt, const kiln_dims *max);
KILN_API int32_t kiln_config_num_profiles(const kiln_config *cfg);

/* Tactic selection. Where several kernels can run a layer, the builder times each on the
 * build machine (at the layer's shapes; a dynamic engine's largest) and keeps the fastest;
 * with timing off it takes the backend's first choice, so two builds give the same plan.
 * A timing cache file (`kiln build --timing-cache F`) records the choices, keyed by the
 * CPU model and the kiln version: a build with it times only layers it has not seen, and
 * the same network, config and cache give a byte-identical plan. The file is read when
 * the build starts and written (through a temporary file) when it ends; a cache from
 * another CPU or kiln is ignored with a warning and then replaced. */
KILN_API kiln_status kiln_config_set_timing_cache(kiln_config *cfg, const char *path);
/* 1 (the default): time candidates; 0: take each layer's first candidate. */
KILN_API kiln_status kiln_config_set_tactic_timing(kiln_config *cfg, int on);

/* ---- builder --------------------------------------------------------------------------- */

typedef struct kiln_engine kiln_engine;

/* Verifies, optimizes and plans `net` for `cfg` (NULL means defaults) and returns an
 * engine. The network is not changed and may be destroyed afterwards. */
KILN_API kiln_status kiln_build(const kiln_network *net, const kiln_config *cfg, kiln_engine **out);

/* Names of the optimization passes in pipeline order; NULL past the end. */
KILN_API const char *kiln_pass_name(int32_t index);

/* ---- engine: immutable, shareable between threads ---------------------------------------- */

typedef enum kiln_io_mode { KILN_IO_NONE = 0, KILN_IO_INPUT = 1, KILN_IO_OUTPUT = 2 } kiln_io_mode;

KILN_API void kiln_engine_destroy(kiln_engine *engine);
/* Writes the plan to `path` (through a temporary file and a rename). */
KILN_API kiln_status kiln_engine_save(const kiln_engine *engine, const char *path);
/* Serializes the plan into a new buffer the caller releases with kiln_free. */
KILN_API kiln_status kiln_engine_serialize(const kiln_engine *engine, void **data, size_t *size);
/* Loads and validates a plan file (memory-mapped; weights are not copied). */
KILN_API kiln_status kiln_engine_load(const char *path, kiln_engine **out);
/* Loads and validates a plan held in memory (copied; the caller keeps `data`). */
KILN_API kiln_status kiln_engine_load_memory(const void *data, size_t size, kiln_engine **out);

/* The I/O tensors: inputs first, then outputs, in the network's order. */
KILN_API int32_t kiln_engine_num_io(const kiln_engine *engine);
/* Name of I/O tensor `index`, NULL when out of range. */
KILN_API const char *kiln_engine_io_name(const kiln_engine *engine, int32_t index);
/* KILN_IO_INPUT, KILN_IO_OUTPUT, or KILN_IO_NONE for a name that is not I/O. */
KILN_API kiln_io_mode kiln_engine_io_mode(const kiln_engine *engine, const char *name);
/* Dtype and build-time shape of any tensor of the engine, I/O or not. For an engine with
 * dynamic shapes this is the largest shape (what memory is planned for); a context tells
 * the shape for its inputs (kiln_context_tensor_shape). */
KILN_API kiln_status kiln_engine_tensor_info(const kiln_engine *engine, const char *name,
                                             kiln_dtype *dtype, kiln_dims *shape);
/* How a tensor of the engine lies in memory: "plain" (row-major in its shape; every I/O
 * tensor is) or a blocked layout the builder chose for the backend, such as "nchw8c"
 * (N x ceil(C/8) x H x W x 8, channels padded with zeros). NULL for an unknown name. */
KILN_API const char *kiln_engine_tensor_layout(const kiln_engine *engine, const char *name);

/* Optimization profiles of the engine: 1 for an engine with static shapes. */
KILN_API int32_t kiln_engine_num_profiles(const kiln_engine *engine);
typedef enum kiln_profile_bound {
    KILN_PROFILE_MIN = 0,
    KILN_PROFILE_OPT = 1,
    KILN_PROFILE_MAX = 2
} kiln_profile_bound;
/* The min, opt or max shape of input `name` in `profile`. */
KILN_API kiln_status kiln_engine_profile_shape(const kiln_engine *engine, int32_t profile,
                                               const char *name, kiln_profile_bound bound,
                                               kiln_dims *shape);

/* One layer of a built engine, for inspection. Strings live as long as the engine. */
typedef struct kiln_layer_info {
    const char *name;
    const char *op;
    const char *kernel;    /* the tactic chosen, e.g. "ref" */
    const char *precision; /* "fp32", ... */
    int32_t n_inputs;
    int32_t n_outputs;
} kiln_layer_info;

KILN_API int32_t kiln_engine_num_layers(const kiln_engine *engine);
KILN_API kiln_status kiln_engine_layer_info(const kiln_engine *engine, int32_t index,
                                            kiln_layer_info *info);
/* Name of input or output `k` of layer `index` ("" for an absent optional input). */
KILN_API const char *kiln_engine_layer_input(const kiln_engine *engine, int32_t index, int32_t k);
KILN_API const char *kiln_engine_layer_output(const kiln_engine *engine, int32_t index, int32_t k);
/* The network layers engine layer `index` computes after fusion: k = 0, 1, ... until
 * NULL. An unfused layer lists just its own name. */
KILN_API const char *kiln_engine_layer_fused_from(const kiln_engine *engine, int32_t index,
                                                  int32_t k);
/* Bytes of activation memory one context needs, and the sum of all activation sizes
 * (what it would take without reuse). */
KILN_API size_t kiln_engine_arena_bytes(const kiln_engine *engine);
KILN_API size_t kiln_engine_activation_bytes(const kiln_engine *engine);
/* Bytes of weights the engine holds. */
KILN_API size_t kiln_engine_weight_bytes(const kiln_engine *engine);
/* Threads contexts of this engine use by default. */
KILN_API int32_t kiln_engine_threads(const kiln_engine *engine);
/* The plan's build record, "key=value" lines: the kiln version that built it, the plan
 * format, layer counts before and after optimization. */
KILN_API const char *kiln_engine_build_info(const kiln_engine *engine);
/* Device the plan targets ("cpu"). */
KILN_API const char *kiln_engine_device(const kiln_engine *engine);

/* ---- context: one per thread; owns activation memory and bindings ------------------------- */

typedef struct kiln_context kiln_context;

/* Creates an execution context with activation memory of its own
 * (kiln_engine_arena_bytes); the engine must outlive it. Contexts of one engine share its
 * weights and may run at the same time on different threads. A new context uses profile 0
 * with every input at that profile's max shape. */
KILN_API kiln_status kiln_context_create(kiln_engine *engine, kiln_context **out);
/* A context without activation memory: give it with kiln_context_set_memory before a run
 * (TensorRT's createExecutionContextWithoutDeviceMemory). */
KILN_API kiln_status kiln_context_create_without_memory(kiln_engine *engine, kiln_context **out);
/* Activation memory for a context made without it: at least kiln_engine_arena_bytes
 * bytes, 64-byte aligned, owned by the caller, used by one running context at a time. */
KILN_API kiln_status kiln_context_set_memory(kiln_context *ctx, void *memory, size_t bytes);
KILN_API void kiln_context_destroy(kiln_context *ctx);
/* Selects the optimization profile later shapes must fit; inputs go to its max shapes. */
KILN_API kiln_status kiln_context_set_profile(kiln_context *ctx, int32_t profile);
KILN_API int32_t kiln_context_profile(const kiln_context *ctx);
/* Sets the shape of an input for the next runs: any shape inside the context's profile
 * (the error names the dimension and the range allowed otherwise). */
KILN_API kiln_status kiln_context_set_input_shape(kiln_context *ctx, const char *name,
                                                  const kiln_dims *shape);
/* The current shape of any tensor given the inputs' shapes (outputs: allocate by this). */
KILN_API kiln_status kiln_context_tensor_shape(const kiln_context *ctx, const char *name,
                                               kiln_dims *shape);
/* Binds caller memory to an I/O tensor by name. The buffer holds the tensor densely
 * (row-major) in its dtype and stays owned by the caller. */
KILN_API kiln_status kiln_context_set_tensor(kiln_context *ctx, const char *name, void *data);
/* Threads this context uses (0: the engine's setting). */
KILN_API kiln_status kiln_context_set_threads(kiln_context *ctx, int32_t threads);
/* Runs the engine once, synchronously, on the bound tensors. */
KILN_API kiln_status kiln_context_run(kiln_context *ctx);

/* Releases memory kiln handed to the caller (kiln_engine_serialize). */
KILN_API void kiln_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* KILN_H */
