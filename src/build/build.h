/* build.h - the builder's internal steps: shape inference with build-time folding, and
 * the activation memory planner (liveness, aliases, in-place reuse). */
#ifndef KILN_BUILD_H
#define KILN_BUILD_H

#include "backends/backend.h"
#include "ir/ir.h"

/* Largest output a layer whose op reads only shapes (Shape) is folded into at build time. */
#define BUILD_FOLD_CAP_BYTES ((size_t)16 << 20)
/* Largest output of an all-constant layer folded during inference: shape arithmetic.
 * Larger constant work is left to the constant-folding pass. */
#define BUILD_SHAPE_FOLD_BYTES ((size_t)4 << 10)

struct kiln_config;

/* The config's optimization profiles resolved against the network's inputs: per profile
 * and input (in g->inputs order, profile-major) the min, opt and max shapes. */
typedef struct build_profiles {
    int32_t n; /* at least 1: a network with static inputs has one profile of one shape */
    int32_t n_inputs;
    kiln_dims *min, *opt, *max;
    kiln_dims *plan; /* per input: the largest of every profile's max, dimension by dimension */
    bool dynamic;    /* some input dimension changes within a profile */
} build_profiles;

/* Checks the config's shapes against the inputs (each profile must cover every dynamic
 * dimension; declared dimensions cannot change) and sets every input to its planning
 * shape. Arrays live in `a`. */
kiln_status build_profiles_resolve(ir_graph *g, const struct kiln_config *cfg, kiln_arena *a,
                                   build_profiles *p);
/* For a dynamic build, before inference: infers copies of the graph at every profile's
 * min, opt and max shapes and records in each value which dimensions change (dyn_dims)
 * and a signature of its shapes (shape_sig); marks the graph dynamic. */
kiln_status build_profiles_probe(ir_graph *g, const build_profiles *p);
/* After the passes: the optimized graph must still infer at every probe shape (a check
 * that no pass rewrote it for the planning shapes alone). */
kiln_status build_profiles_check(const ir_graph *g, const build_profiles *p);

/* Infers the dtype and shape of every value in topological order. A layer whose op reads
 * only shapes, or whose inputs are all constants and whose outputs are small (shape
 * arithmetic), is evaluated now and becomes a constant; *folded counts them. In a dynamic
 * graph, a value computed from a changing shape is not folded: it keeps its layer (which
 * runs again for each input shape) and, when it is small shape arithmetic, its value at
 * the planning shapes in probe_data, for the inference of the layers reading it. */
kiln_status build_infer(ir_graph *g, int32_t *folded);

/* What the memory planner decided: the arena's size, the plain sum of the activations
 * it holds, and how many values share a buffer with their input. */
typedef struct build_memplan_result {
    uint64_t arena_bytes, activation_bytes;
    uint64_t peak_bytes; /* most bytes alive at one step: no arena can be smaller */
    int32_t buffers;     /* distinct buffers placed in the arena */
    int32_t aliased;     /* outputs of IR_OP_ALIAS ops given their input's bytes (no copy) */
    int32_t in_place;    /* outputs of IR_OP_INPLACE ops written over their input */
} build_memplan_result;

/* Gives each arena value (an activation that is not a network output) an offset in one
 * arena by liveness over `order`. Output 0 of an IR_OP_ALIAS op shares input 0's bytes,
 * and output 0 of an IR_OP_INPLACE op overwrites input 0 when this op is the buffer's
 * last reader (both arena values of one size, no other input in that buffer); the
 * buffer then lives until the last reader of any value in it. Otherwise values whose
 * lifetimes overlap never share bytes. `offsets` gets UINT64_MAX for values not in the
 * arena (inputs, outputs, constants). Sizes are rounded up to 64 bytes. */
kiln_status build_memplan(const ir_graph *g, const int32_t *order, int32_t n_order,
                          uint64_t *offsets, build_memplan_result *result);

struct kiln_backend;
struct backend_kernel;
struct tactic_cache;

/* How the kernel step chooses among candidates. */
typedef struct build_tactics {
    bool timing;                /* time the candidates of layers that have several */
    int32_t threads;            /* the engine's thread count, as runs will use */
    struct tactic_cache *cache; /* NULL: none */
} build_tactics;
/* The kernel of each live layer (chosen[node]) among the backend's candidates, and the value
 * holding the data it keeps in the plan (data[node], a u8 constant added to the graph; -1
 * for none). Both arrays are indexed by node id. */
kiln_status build_choose_kernels(ir_graph *g, const struct kiln_backend *be, const int32_t *order,
                                 int32_t n_order, const build_tactics *tactics,
                                 const struct backend_kernel **chosen, int32_t *data);

/* Bytes a value occupies: dtype size x the elements of its storage (a blocked layout pads
 * the channels up to its block). */
uint64_t build_value_bytes(const ir_value *v);

/* What the layout step did. */
typedef struct build_layout_result {
    int32_t inserted;  /* kiln.Reorder layers placed */
    int32_t cancelled; /* of those (or of the network's own), removed again: pairs that undo
                          each other, and reorders left without readers */
    int32_t reorders;  /* kiln.Reorder layers the graph ends with */
    int32_t constants; /* constants stored in a blocked layout at build time */
    int32_t blocked;   /* layers, reorders aside, with a blocked input or output */
} build_layout_result;

/* The layout step (layout.c; docs/ARCHITECTURE.md, "Layouts"), after the pass pipeline:
 * asks `be` which layouts each layer wants, in execution order; sets values' layouts;
 * places one kiln.Reorder per value and layout that a reader wants and the value lacks;
 * stores blocked copies of constants; keeps network inputs and outputs plain (a layer
 * writing an output blocked writes a twin that a reorder makes plain); then removes
 * reorder pairs that cancel (A: x -> x', B: x' -> x back: B's readers read x) and
 * reorders nobody reads. Logs each change at VERBOSE and the counts at INFO. */
kiln_status build_layout(ir_graph *g, const kiln_backend *be, build_layout_result *r);

#endif
