/* cli.h - what the subcommands of the `kiln` command line share: exit codes, option
 * parsing, error lines, the logger, a seeded generator and formatting of shapes. */
#ifndef KILN_TOOLS_CLI_H
#define KILN_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#if defined(__GNUC__)
#define CLI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CLI_PRINTF(a, b)
#endif

/* Exit codes, as git and most Unix tools use them. */
enum { CLI_OK = 0, CLI_FAILED = 1, CLI_USAGE = 2 };

/* The subcommands: argv[0] is the subcommand's name; each returns an exit code. */
int cmd_build(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Opens ARG as a plan file; when ARG is an ONNX file, a Caffe .prototxt (without weights;
 * see cli_open_engine_weights), or no such file exists and ARG names a built-in model
 * (lenet, ...), builds that model in memory with default settings instead, as `kiln
 * build` would. Prints the error and returns CLI_FAILED on failure. (In
 * cmd_build.c.) */
int cli_open_engine(const char *arg, kiln_engine **out);
/* Whether PATH is an existing file named *.onnx (built in memory by cli_open_engine, so
 * `kiln inspect model.onnx` shows a model before any plan exists). */
bool cli_is_onnx_file(const char *path);
/* Whether PATH names a Caffe deploy file (*.prototxt). (In cmd_build.c.) */
bool cli_is_caffe_file(const char *path);
/* cli_open_engine, with the caffemodel `weights` (may be NULL) for a Caffe ARG. */
int cli_open_engine_weights(const char *arg, const char *weights, kiln_engine **out);
/* Whether ARG names a model (ONNX, Caffe deploy file, built-in) rather than a plan. */
bool cli_is_model(const char *arg);
/* The network of model ARG before any optimization (for `kiln inspect`). */
int cli_open_network(const char *arg, const char *weights, kiln_network **out);

/* ---- option parsing ----------------------------------------------------------------
 * Options are "--name value", "--name=value" or a short "-x value"; "--" ends them.
 * Usage:
 *     cli_parser p; cli_parser_init(&p, argc, argv);
 *     const char *a;
 *     while ((a = cli_next(&p)) != NULL) {
 *         if (!cli_is_option(&p)) positional(a);
 *         else if (cli_match(&p, "--output", "-o")) { v = cli_value(&p); if (!v) return 2; }
 *         else return cli_unknown_option(&p);
 *     }
 */
typedef struct cli_parser {
    int argc;
    char **argv;
    int next;          /* index of the next argument to look at */
    const char *arg;   /* the current argument */
    const char *value; /* the text after '=' in "--name=value", else NULL */
    bool options_done; /* "--" was seen: everything after is positional */
    bool is_option;
} cli_parser;

void cli_parser_init(cli_parser *p, int argc, char **argv);
/* The next argument, or NULL at the end. */
const char *cli_next(cli_parser *p);
bool cli_is_option(const cli_parser *p);
/* Whether the current option is `long_name` (with or without "=value") or `short_name`
 * (may be NULL). */
bool cli_match(const cli_parser *p, const char *long_name, const char *short_name);
/* The current option's value (inline or the next argument); on a missing value prints a
 * usage line and returns NULL. */
const char *cli_value(cli_parser *p);
/* Refuses "--flag=value" for an option that takes no value; prints and returns false. */
bool cli_no_value(const cli_parser *p);
/* Prints "unknown option" for the current argument and returns CLI_USAGE. */
int cli_unknown_option(const cli_parser *p);

/* Parses a whole decimal integer in [lo, hi]; prints a usage line and returns false
 * otherwise. `what` names the option ("--threads"). */
bool cli_parse_int(const char *what, const char *text, long lo, long hi, long *out);
/* Parses "1x3x224x224" (rank 1..KILN_MAX_RANK, every dimension >= 1). */
bool cli_parse_dims(const char *text, kiln_dims *out);

/* ---- input shapes on the command line ------------------------------------------------
 * "--shapes data:1x3x224x224,mask:1x128" as trtexec writes them: a comma-separated list of
 * NAME:DIMS, split at the last ':' of each item (so that names such as "input:0" keep
 * theirs). Repeating the option adds to the same list. */
typedef struct cli_shape {
    char *name;
    kiln_dims dims;
} cli_shape;

typedef struct cli_shapes {
    cli_shape *v;
    int n, cap;
} cli_shapes;

/* Adds the items of TEXT to the list; `flag` ("--min-shapes") names the option in
 * messages. An input named twice in one list is refused. Prints and returns CLI_USAGE on
 * a malformed item, CLI_FAILED when out of memory. */
int cli_shapes_parse(cli_shapes *list, const char *flag, const char *text);
/* The item for input `name`, or NULL. */
const cli_shape *cli_shapes_find(const cli_shapes *list, const char *name);
void cli_shapes_free(cli_shapes *list);

/* ---- optimization profiles of an engine ------------------------------------------------ */

/* Whether the engine takes more than one shape: several profiles, or an input whose min
 * and max differ in a profile. (A static engine reports one profile of its shapes.) */
bool cli_engine_is_dynamic(const kiln_engine *e);
/* Writes a table of the profiles to `file`: a heading, then one line per profile and
 * input ("0  data  1x3x224x224  8x3x224x224  16x3x224x224"), each line after `indent`. */
void cli_print_profiles(void *file, const kiln_engine *e, const char *indent);

/* ---- messages ----------------------------------------------------------------------- */

/* The subcommand named in messages ("build"); set by main before dispatching. */
void cli_set_command(const char *name);
/* One line "kiln CMD: MESSAGE (see 'kiln CMD --help')" on stderr; returns CLI_USAGE. */
int cli_usage_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* One line "kiln CMD: error: MESSAGE" on stderr; returns CLI_FAILED. */
int cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);
/* One line "kiln CMD: error: MESSAGE: <kiln_last_error()>" on stderr for a failed
 * library call; returns CLI_FAILED. */
int cli_kiln_error(kiln_status status, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Sends the library's messages up to `max_level` to stderr, one line each. */
void cli_install_logger(kiln_log_level max_level);

/* ---- formatting ----------------------------------------------------------------------- */

/* "1x3x224x224" ("scalar" for rank 0, "?" for a dynamic dimension) into buf. */
const char *cli_dims_str(const kiln_dims *d, char *buf, size_t cap);
/* "1.5 MiB" into buf. */
const char *cli_bytes_str(size_t bytes, char *buf, size_t cap);
/* Elements of a shape; false on a dynamic dimension or overflow. */
bool cli_dims_count(const kiln_dims *d, size_t *out);
bool cli_dims_equal(const kiln_dims *a, const kiln_dims *b);
/* Writes s as a JSON string literal (with quotes) to the stream. */
void cli_json_string(void *file, const char *s);

/* ---- deterministic pseudo-random numbers (splitmix64) -------------------------------------- */

typedef struct cli_rng {
    uint64_t state;
} cli_rng;

void cli_rng_seed(cli_rng *r, uint64_t seed);
uint64_t cli_rng_next(cli_rng *r);
/* Uniform in [lo, hi). */
float cli_rng_uniform(cli_rng *r, float lo, float hi);

/* IEEE half and bfloat16 from float (round to nearest even), for filling inputs. */
uint16_t cli_f32_to_f16(float f);
uint16_t cli_f32_to_bf16(float f);

#endif /* KILN_TOOLS_CLI_H */
