/* network.h - the public kiln_network is a thin owner of an ir_graph. */
#ifndef KILN_NETWORK_H
#define KILN_NETWORK_H

#include "ir/ir.h"

struct kiln_network {
    ir_graph g;
};

#endif
