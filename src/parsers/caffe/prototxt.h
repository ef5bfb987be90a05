/* prototxt.h - protobuf's text format (Caffe's .prototxt files) read into a protobuf-c
 * message of any type through its descriptor, so a text file and a binary file of one
 * schema give the same structs. */
#ifndef KILN_PROTOTXT_H
#define KILN_PROTOTXT_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#include "core/core.h"

/* Messages nested deeper than this are refused (the parser recurses once per level). */
#define PROTOTXT_MAX_DEPTH 100
/* Most bytes one parse may hold allocated at once (messages, arrays, strings): a small
 * document of empty submessages ("m{}" is 3 bytes, a message may be hundreds) cannot make
 * the parser exhaust memory. Real prototxt files need a tiny fraction of it. */
#define PROTOTXT_MAX_BYTES ((size_t)256 << 20)

/* Parses protobuf text format `text` (len bytes, need not be NUL-terminated) into a new
 * message of type `desc`, every part allocated through `alloc` exactly as
 * protobuf_c_message_unpack would, so protobuf_c_message_free_unpacked(msg, alloc) frees it.
 * `source` names the file in messages. On error returns KILN_ERR_PARSE (or
 * KILN_ERR_OUT_OF_MEMORY) with a message "SOURCE:LINE:COL: what was expected, what was found",
 * e.g. "deploy.prototxt:12:5: unknown field 'kernel_sise' in caffe.ConvolutionParameter",
 * and *out NULL; nothing leaks.
 *
 * What Google's TextFormat::Parse (which Caffe uses) accepts is accepted, except extension
 * and Any fields ("[name]"), \u escapes, and field numbers in place of names. As in
 * TextFormat::Parse, a non-repeated field given twice is an error (nothing is merged), as
 * is a second member of a oneof, and a missing required field. Enum numbers must name a
 * value of the enum. Lines and columns count from 1; a column counts bytes. `alloc` may be
 * NULL: kiln_malloc then, which protobuf_c_message_free_unpacked(msg, NULL) frees. */
kiln_status prototxt_parse(const char *text, size_t len, const char *source,
                           const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *alloc,
                           ProtobufCMessage **out);

#endif /* KILN_PROTOTXT_H */
