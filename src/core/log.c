/* log.c - the process-wide logger callback. */
#include <stdio.h>

#include "core.h"

static kiln_log_fn g_fn;
static void *g_user;
static kiln_log_level g_max = KILN_LOG_ERROR;
/* The builder narrows logging to its config's level for the thread running a build. */
static _Thread_local int g_cap = KILN_LOG_VERBOSE;

kiln_log_level kiln_log_set_cap(kiln_log_level cap)
{
    kiln_log_level old = (kiln_log_level)g_cap;
    g_cap = cap;
    return old;
}

void kiln_set_logger(kiln_log_fn fn, void *user, kiln_log_level max_level)
{
    g_fn = fn;
    g_user = user;
    g_max = max_level;
}

bool kiln_log_enabled(kiln_log_level level)
{
    return g_fn != NULL && level <= g_max && (int)level <= g_cap;
}

void kiln_log(kiln_log_level level, const char *fmt, ...)
{
    if (!kiln_log_enabled(level)) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_fn(level, msg, g_user);
}
