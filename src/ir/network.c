/* network.c - the public network API: a checked front of the graph functions. */
#include <string.h>

#include "ir/network.h"

kiln_status kiln_network_create(kiln_network **out)
{
    if (!out) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "kiln_network_create: out is NULL");
    *out = kiln_calloc(1, sizeof **out);
    if (!*out) return kiln_error(KILN_ERR_OUT_OF_MEMORY, "out of memory creating a network");
    ir_graph_init(&(*out)->g);
    return KILN_OK;
}

void kiln_network_destroy(kiln_network *net)
{
    if (!net) return;
    ir_graph_free(&net->g);
    kiln_free(net);
}

#define NEED_NET(net)                                                                              \
    do {                                                                                           \
        if (!(net)) return kiln_error(KILN_ERR_INVALID_ARGUMENT, "%s: network is NULL", __func__); \
    } while (0)

kiln_status kiln_network_add_input(kiln_network *net, const char *name, kiln_dtype dtype,
                                   const kiln_dims *shape)
{
    NEED_NET(net);
    return ir_graph_add_input(&net->g, name, dtype, shape);
}

kiln_status kiln_network_add_constant(kiln_network *net, const char *name, kiln_dtype dtype,
                                      const kiln_dims *shape, const void *data, size_t nbytes)
{
    NEED_NET(net);
    return ir_graph_add_constant(&net->g, name, dtype, shape, data, nbytes, true, NULL);
}

kiln_status kiln_network_add_layer(kiln_network *net, const char *op, const char *name,
                                   const char *const *inputs, int32_t n_inputs,
                                   const char *const *outputs, int32_t n_outputs,
                                   const kiln_attr *attrs, int32_t n_attrs)
{
    NEED_NET(net);
    return ir_graph_add_node(&net->g, op, name, inputs, n_inputs, outputs, n_outputs, attrs,
                             n_attrs, NULL);
}

kiln_status kiln_network_mark_output(kiln_network *net, const char *name)
{
    NEED_NET(net);
    return ir_graph_mark_output(&net->g, name);
}

int32_t kiln_network_num_layers(const kiln_network *net) { return net ? net->g.n_nodes : 0; }
int32_t kiln_network_num_inputs(const kiln_network *net) { return net ? net->g.n_inputs : 0; }
int32_t kiln_network_num_outputs(const kiln_network *net) { return net ? net->g.n_outputs : 0; }

const char *kiln_network_layer_name(const kiln_network *net, int32_t i)
{
    return net && i >= 0 && i < net->g.n_nodes ? net->g.nodes[i].name : NULL;
}

const char *kiln_network_layer_op(const kiln_network *net, int32_t i)
{
    return net && i >= 0 && i < net->g.n_nodes ? net->g.nodes[i].op->name : NULL;
}
