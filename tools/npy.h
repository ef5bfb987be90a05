/* npy.h - reading and writing NumPy .npy files (format versions 1.0, 2.0 and 3.0),
 * the tensor exchange format of the command line. */
#ifndef KILN_TOOLS_NPY_H
#define KILN_TOOLS_NPY_H

#include <stddef.h>

#include "kiln.h"

/* Largest header the reader accepts; NumPy itself refuses more than 10000 bytes unless
 * told otherwise, so 1 MiB leaves room without inviting a huge allocation. */
#define NPY_MAX_HEADER (1u << 20)

/* A dense, C-ordered, little-endian array. */
typedef struct npy_array {
    kiln_dtype dtype;
    kiln_dims shape;
    void *data; /* malloc'ed; NULL when nbytes is 0 */
    size_t nbytes;
} npy_array;

/* Reads `path`. Supported descr: f4, f2, i8, i4, i1, u1, b1 with byte order '<' or '|'.
 * On failure returns -1 and writes a one-line reason (without the path) into err. */
int npy_read(const char *path, npy_array *out, char *err, size_t err_cap);

/* Parses a whole .npy file held in memory (what npy_read does after reading the file). */
int npy_parse(const void *data, size_t size, npy_array *out, char *err, size_t err_cap);

/* Writes `nbytes` of data with the given dtype and shape to `path` (version 1.0 unless the
 * header needs 2.0). Returns -1 with a reason in err on failure. */
int npy_write(const char *path, kiln_dtype dtype, const kiln_dims *shape, const void *data,
              size_t nbytes, char *err, size_t err_cap);

/* Frees the array's data and zeroes it (NULL-safe). */
void npy_free(npy_array *a);

/* The NumPy descr of a dtype ("<f4"), or NULL if NumPy has no such dtype (bf16). */
const char *npy_descr(kiln_dtype dtype);

#endif /* KILN_TOOLS_NPY_H */
