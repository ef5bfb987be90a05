/* caffe_import.h - what the Caffe importer's files share: the import state (blob names
 * to tensors, shapes inferred while importing, weights by layer name), emission helpers,
 * and the per-layer converters that map Caffe layers onto kiln's ops. */
#ifndef KILN_CAFFE_IMPORT_H
#define KILN_CAFFE_IMPORT_H

#include "caffe.pb-c.h"
#include "ir/network.h"

typedef struct caffe_ctx {
    ir_graph *g;
    const char *source;       /* the prototxt's path (or "prototxt") for messages */
    const char *model_source; /* the caffemodel's path; NULL when none was given */
    kiln_strmap blob;         /* blob name -> value id of its current version */
    kiln_strmap all_blobs;    /* every blob name of the net: generated names avoid them */
    kiln_strmap tmp_names;    /* names caffe_tmp handed out (before their values exist) */
    kiln_strmap weights;      /* layer name -> index into wlayers */
    const Caffe__LayerParameter **wlayers; /* layers of the caffemodel (V1 ones converted) */
    int32_t n_wlayers;
    /* Shapes as inferred while importing, per value id: converters that need the shape
     * of their input (InnerProduct, Flatten, Reshape, Scale, ...) read them here. */
    kiln_dims *shape; /* rank -1: unknown */
    kiln_dtype *dtype;
    int32_t n_shape;
    int32_t fresh;      /* counter for generated names */
    kiln_arena scratch; /* converted V1 layers, weights converted from double */
} caffe_ctx;

/* One layer being converted. */
typedef struct caffe_layer {
    const Caffe__LayerParameter *p; /* V1 layers arrive converted to this form */
    const char *name;               /* unique node name (the layer's name when it is free) */
    const char *type;               /* Caffe type string ("Convolution") */
    int32_t n_in, n_out;
    const char **in;          /* value names of the bottoms (their current versions) */
    const char **out;         /* value names the tops get */
    Caffe__BlobProto **blobs; /* weights from the caffemodel (or the prototxt itself) */
    int32_t n_blobs;
    bool in_model; /* the caffemodel has a layer of this name */
} caffe_layer;

/* "SOURCE: layer 'NAME' (TYPE): " + message; returns `st`. */
kiln_status caffe_layer_error(caffe_ctx *c, const caffe_layer *L, kiln_status st, const char *fmt,
                              ...) KILN_PRINTF(4, 5);

/* A fresh value name "LAYER::HINT[_n]", unused in the graph and by any blob. */
const char *caffe_tmp(caffe_ctx *c, const caffe_layer *L, const char *hint);

/* Adds a node (name NULL: a fresh one from the op) and infers its outputs' shapes. */
kiln_status caffe_emit(caffe_ctx *c, const caffe_layer *L, const char *op, const char *name,
                       const char *const *in, int32_t n_in, const char *const *out, int32_t n_out,
                       const kiln_attr *attrs, int32_t n_attrs);
/* One input, one output. */
kiln_status caffe_emit1(caffe_ctx *c, const caffe_layer *L, const char *op, const char *name,
                        const char *in, const char *out, const kiln_attr *attrs, int32_t n_attrs);
/* Two inputs, one output. */
kiln_status caffe_emit2(caffe_ctx *c, const caffe_layer *L, const char *op, const char *name,
                        const char *a, const char *b, const char *out);

/* Adds an f32 (or i64) constant of this shape (copied) under a fresh name. */
kiln_status caffe_const(caffe_ctx *c, const caffe_layer *L, const char *hint,
                        const kiln_dims *shape, const float *data, const char **name);
kiln_status caffe_const_i64(caffe_ctx *c, const caffe_layer *L, const char *hint, const int64_t *v,
                            int32_t count, const char **name);
kiln_status caffe_const_scalar(caffe_ctx *c, const caffe_layer *L, const char *hint, float v,
                               const char **name);

/* The shape inferred for a value (by name); NULL if unknown. */
const kiln_dims *caffe_shape(const caffe_ctx *c, const char *value);
/* The same, failing with a message naming the layer when unknown or not of `min_rank`. */
kiln_status caffe_input_shape(caffe_ctx *c, const caffe_layer *L, int32_t k, int32_t min_rank,
                              const kiln_dims **out);

/* Blob `i` of the layer as floats after checking it holds exactly as many values as
 * `want` describes; `what` names it in messages ("weights", "bias"). */
kiln_status caffe_blob(caffe_ctx *c, const caffe_layer *L, int32_t i, const char *what,
                       const kiln_dims *want, const float **data);
/* Scratch memory that lives until the import ends (NULL: error set). */
void *caffe_scratch(caffe_ctx *c, size_t bytes);

/* Converts one layer; every top in L->out gets a value. */
kiln_status caffe_convert_layer(caffe_ctx *c, const caffe_layer *L);
/* Whether kiln converts layers of this type (and has the ops they need). */
bool caffe_layer_supported(const char *type);
/* Layers that compute nothing at inference and produce no tops (Silence): skipped. */
bool caffe_layer_is_noop(const char *type);

/* The importer proper, on decoded messages (the file entry point decodes and calls
 * this; tests call it with messages built in C). `model` may be NULL. */
kiln_status caffe_import_nets(kiln_network *net, const Caffe__NetParameter *deploy,
                              const Caffe__NetParameter *model, const char *source,
                              const char *model_source, const char *const *outputs,
                              int32_t n_outputs);

#endif
