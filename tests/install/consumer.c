/* consumer.c - a program outside the tree that uses an installed kiln. */
#include <kiln.h>
#include <stdio.h>

int main(void)
{
    kiln_network *net = NULL;
    if (kiln_network_create(&net) != KILN_OK) return 1;
    kiln_dims s = {1, {4}};
    const char *in[] = {"x"}, *out[] = {"y"};
    float x[4] = {-1, 2, -3, 4}, y[4];
    kiln_engine *e = NULL;
    kiln_context *c = NULL;
    if (kiln_network_add_input(net, "x", KILN_DTYPE_F32, &s) ||
        kiln_network_add_layer(net, "Relu", "r", in, 1, out, 1, NULL, 0) ||
        kiln_network_mark_output(net, "y") || kiln_build(net, NULL, &e) ||
        kiln_context_create(e, &c) || kiln_context_set_tensor(c, "x", x) ||
        kiln_context_set_tensor(c, "y", y) || kiln_context_run(c)) {
        fprintf(stderr, "error: %s\n", kiln_last_error());
        return 1;
    }
    printf("kiln %s: %g %g %g %g\n", kiln_version(), y[0], y[1], y[2], y[3]);
    kiln_context_destroy(c);
    kiln_engine_destroy(e);
    kiln_network_destroy(net);
    return y[0] == 0 && y[1] == 2 && y[2] == 0 && y[3] == 4 ? 0 : 1;
}
