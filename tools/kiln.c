/* kiln.c - main of the `kiln` command line: dispatches git-style subcommands (build, run,
 * inspect, bench) and answers --version and help. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

typedef struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} command;

static const command g_commands[] = {
    {"build", cmd_build, "optimize a model into a plan file"},
    {"run", cmd_run, "run a plan on .npy inputs and write .npy outputs"},
    {"inspect", cmd_inspect, "show a plan's tensors, layers, kernels and memory"},
    {"bench", cmd_bench, "measure a plan's latency and throughput"},
};
#define N_COMMANDS (sizeof g_commands / sizeof *g_commands)

static void print_usage(void)
{
    printf("usage: kiln COMMAND [ARGS]\n"
           "\n"
           "kiln bakes a neural network into an optimized inference engine (a plan) and\n"
           "runs it.\n"
           "\n"
           "commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("  %-8s  %s\n", g_commands[i].name, g_commands[i].summary);
    printf("  help      show this help, or a command's with `kiln help COMMAND`\n"
           "\n"
           "options:\n"
           "  --version  print the version of kiln\n"
           "  -h, --help show this help\n"
           "\n"
           "`kiln COMMAND --help` explains each command's options. Exit status: 0 on\n"
           "success, 1 when the work failed, 2 for a bad command line.\n");
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(g_commands[i].name, name) == 0) return &g_commands[i];
    return NULL;
}

/* `kiln help [COMMAND]` */
static int help(int argc, char **argv)
{
    if (argc < 3) {
        print_usage();
        return CLI_OK;
    }
    if (argc > 3) return cli_usage_error("'help' takes at most one COMMAND");
    const command *c = find_command(argv[2]);
    if (!c) return cli_usage_error("unknown command '%s'", argv[2]);
    char name[16], opt[] = "--help";
    snprintf(name, sizeof name, "%s", c->name);
    char *args[] = {name, opt, NULL};
    cli_set_command(c->name);
    return c->fn(2, args);
}

int main(int argc, char **argv)
{
    if (argc < 2) return cli_usage_error("missing COMMAND: build, run, inspect or bench");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        if (argc > 2) return cli_usage_error("'%s' takes no arguments", cmd);
        printf("kiln %s\n", kiln_version());
        return CLI_OK;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return help(argc, argv);
    const command *c = find_command(cmd);
    if (!c) {
        if (cmd[0] == '-') return cli_usage_error("unknown option '%s'", cmd);
        return cli_usage_error("unknown command '%s'", cmd);
    }
    cli_set_command(c->name);
    /* The subcommand sees argv[0] = its own name, like a program of its own. */
    return c->fn(argc - 1, argv + 1);
}
