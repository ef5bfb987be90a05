/* engine.h - the engine (an immutable, validated plan) and the context that runs it. */
#ifndef KILN_ENGINE_H
#define KILN_ENGINE_H

#include "runtime/plan.h"

struct kiln_engine {
    void *mem; /* the plan bytes: mmap'ed file or an owned aligned block */
    size_t size;
    bool mapped;
    kiln_arena arena; /* decoded arrays */
    plan_desc d;
    kiln_strmap by_name; /* tensor index by name */
    size_t weight_bytes;
    int32_t max_in, max_out; /* largest layer arity, for per-context scratch */
};

/* Takes ownership of `mem` (aligned block from kiln_aligned_alloc, or a mapping when
 * `mapped`), validates it and makes an engine. On failure `mem` is released. */
kiln_status engine_from_plan(void *mem, size_t size, bool mapped, kiln_engine **out);

#endif
