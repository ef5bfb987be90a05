/* status.c - the thread-local last-error message and status names. */
#include <stdio.h>
#include <string.h>

#include "core.h"

#define ERR_CAP 2048

static _Thread_local char g_err[ERR_CAP];

kiln_status kiln_error(kiln_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return status;
}

kiln_status kiln_error_prefix(kiln_status status, const char *fmt, ...)
{
    char old[ERR_CAP];
    memcpy(old, g_err, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof g_err)
        snprintf(g_err + n, sizeof g_err - (size_t)n, "%s", old);
    return status;
}

const char *kiln_last_error(void) { return g_err; }

void kiln_clear_error(void) { g_err[0] = '\0'; }

const char *kiln_status_name(kiln_status status)
{
    switch (status) {
    case KILN_OK: return "KILN_OK";
    case KILN_ERR_INVALID_ARGUMENT: return "KILN_ERR_INVALID_ARGUMENT";
    case KILN_ERR_OUT_OF_MEMORY: return "KILN_ERR_OUT_OF_MEMORY";
    case KILN_ERR_IO: return "KILN_ERR_IO";
    case KILN_ERR_PARSE: return "KILN_ERR_PARSE";
    case KILN_ERR_UNSUPPORTED: return "KILN_ERR_UNSUPPORTED";
    case KILN_ERR_INVALID_GRAPH: return "KILN_ERR_INVALID_GRAPH";
    case KILN_ERR_SHAPE: return "KILN_ERR_SHAPE";
    case KILN_ERR_NOT_FOUND: return "KILN_ERR_NOT_FOUND";
    case KILN_ERR_CORRUPT_PLAN: return "KILN_ERR_CORRUPT_PLAN";
    case KILN_ERR_VERSION: return "KILN_ERR_VERSION";
    case KILN_ERR_DEVICE: return "KILN_ERR_DEVICE";
    case KILN_ERR_STATE: return "KILN_ERR_STATE";
    case KILN_ERR_INTERNAL: return "KILN_ERR_INTERNAL";
    }
    return "KILN_ERR_UNKNOWN";
}

#define STR2(x) #x
#define STR(x)  STR2(x)

const char *kiln_version(void)
{
    return STR(KILN_VERSION_MAJOR) "." STR(KILN_VERSION_MINOR) "." STR(KILN_VERSION_PATCH);
}

int kiln_version_number(void)
{
    return KILN_VERSION_MAJOR * 10000 + KILN_VERSION_MINOR * 100 + KILN_VERSION_PATCH;
}
