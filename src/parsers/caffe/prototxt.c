/* prototxt.c - protobuf text format into protobuf-c messages: a tokenizer, a recursive
 * descent over message bodies driven by the descriptors, and per-type value conversion
 * with the spellings and ranges Google's TextFormat accepts. */
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parsers/caffe/prototxt.h"

/* ---- tokens ---- */

typedef enum tok_kind {
    TOK_END,
    TOK_IDENT,
    TOK_INT,    /* decimal, 0x hex or 0 octal, no sign */
    TOK_FLOAT,  /* has a '.', an exponent or an f suffix */
    TOK_STRING, /* one quoted literal, quotes included */
    TOK_SYMBOL  /* one of { } < > [ ] : , ; - */
} tok_kind;

typedef struct token {
    tok_kind kind;
    const char *s; /* in the input */
    size_t n;
    long line, col;
} token;

typedef struct parser {
    const char *p, *end; /* next unread byte */
    long line, col;      /* of p */
    token tok;           /* the lookahead */
    const char *source;
    ProtobufCAllocator *alloc;
    size_t live; /* bytes held through alloc */
    int depth;
    locale_t c_locale; /* for strtod; made at the first float */
} parser;

/* A field and the message type it belongs to, for messages. */
typedef struct field_ref {
    const ProtobufCMessageDescriptor *md;
    const ProtobufCFieldDescriptor *f;
} field_ref;

/* What an error shows of a token. Returned by value so it can sit in an argument list. */
typedef struct tok_text {
    char s[48];
} tok_text;

static kiln_status perr(const parser *P, kiln_status st, long line, long col, const char *fmt, ...)
    KILN_PRINTF(5, 6);

static kiln_status perr(const parser *P, kiln_status st, long line, long col, const char *fmt, ...)
{
    char msg[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return kiln_error(st, "%s:%ld:%ld: %s", P->source, line, col, msg);
}

#define PERR_AT(P, t, ...) perr(P, KILN_ERR_PARSE, (t)->line, (t)->col, __VA_ARGS__)

static tok_text describe(const token *t)
{
    tok_text d;
    if (t->kind == TOK_END) {
        snprintf(d.s, sizeof d.s, "end of input");
        return d;
    }
    /* Strings show as written (with their quotes), anything else in single quotes. */
    size_t max = 32, k = 0, n = t->n < max ? t->n : max;
    if (t->kind != TOK_STRING) d.s[k++] = '\'';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t->s[i];
        d.s[k++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (t->n > max) {
        memcpy(d.s + k, "...", 3);
        k += 3;
        if (t->kind == TOK_STRING) d.s[k++] = t->s[0];
    }
    if (t->kind != TOK_STRING) d.s[k++] = '\'';
    d.s[k] = '\0';
    return d;
}

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static int hex_val(int c) { return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10; }

/* TOK_INT, TOK_FLOAT, or TOK_END when `s` is no number (with why in *why). */
static tok_kind classify_number(const char *s, size_t n, const char **why)
{
    size_t i = 0;
    *why = "";
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        i = 2;
        while (i < n && is_hex(s[i])) i++;
        return n > 2 && i == n ? TOK_INT : TOK_END;
    }
    while (i < n && is_digit(s[i])) i++;
    if (i == n) {
        /* A leading 0 means octal, as in C and in protobuf's tokenizer. */
        for (size_t k = 1; s[0] == '0' && k < n; k++)
            if (s[k] > '7') {
                *why = " (a leading 0 makes it octal)";
                return TOK_END;
            }
        return TOK_INT;
    }
    size_t digits = i;
    if (s[i] == '.') {
        for (i++; i < n && is_digit(s[i]); i++) digits++;
    }
    if (digits == 0) return TOK_END;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t k = i;
        while (i < n && is_digit(s[i])) i++;
        if (i == k) return TOK_END;
    }
    if (i < n && (s[i] == 'f' || s[i] == 'F')) i++;
    return i == n ? TOK_FLOAT : TOK_END;
}

/* Reads the next token into P->tok, skipping whitespace and # comments. */
static kiln_status next_token(parser *P)
{
    for (;;) {
        if (P->p == P->end) break;
        char c = *P->p;
        if (c == '\n') {
            P->p++;
            P->line++;
            P->col = 1;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
            P->p++;
            P->col++;
        } else if (c == '#') {
            while (P->p < P->end && *P->p != '\n') {
                P->p++;
                P->col++;
            }
        } else {
            break;
        }
    }
    token *t = &P->tok;
    t->s = P->p;
    t->n = 0;
    t->line = P->line;
    t->col = P->col;
    if (P->p == P->end) {
        t->kind = TOK_END;
        return KILN_OK;
    }
    const char *q = P->p, *end = P->end;
    unsigned char c = (unsigned char)*q;
    if (is_alpha(c)) {
        while (q < end && (is_alpha(*q) || is_digit(*q))) q++;
        t->kind = TOK_IDENT;
    } else if (is_digit(c) || (c == '.' && q + 1 < end && is_digit(q[1]))) {
        /* Take everything that could belong to a number, then judge the whole, so that
         * "1.5.2" or "12abc" is reported as one bad number. */
        bool hex = c == '0' && q + 1 < end && (q[1] == 'x' || q[1] == 'X');
        for (q++; q < end; q++) {
            if (is_alpha(*q) || is_digit(*q) || *q == '.') continue;
            if ((*q == '+' || *q == '-') && !hex && (q[-1] == 'e' || q[-1] == 'E')) continue;
            break;
        }
        const char *why;
        t->n = (size_t)(q - P->p);
        t->kind = classify_number(t->s, t->n, &why);
        if (t->kind == TOK_END)
            return PERR_AT(P, t, "expected a number, found %s%s",
                           describe(&(token){TOK_INT, t->s, t->n, 0, 0}).s, why);
    } else if (c == '"' || c == '\'') {
        /* Escapes are checked when the value is decoded; here only the end is found. */
        for (q++; q < end && *q != (char)c && *q != '\n'; q++)
            if (*q == '\\' && q + 1 < end && q[1] != '\n') q++;
        if (q == end || *q == '\n')
            return PERR_AT(P, t, "expected a closing %c for the string that starts here, found %s",
                           c, q == end ? "end of input" : "end of line");
        q++;
        t->kind = TOK_STRING;
    } else if (c != '\0' && strchr("{}<>[]:,;-", c)) {
        q++;
        t->kind = TOK_SYMBOL;
    } else if (c >= 0x21 && c < 0x7f) {
        return PERR_AT(P, t, "expected a field, a value or a delimiter, found '%c'", c);
    } else {
        return PERR_AT(P, t, "expected a field, a value or a delimiter, found byte 0x%02x", c);
    }
    t->n = (size_t)(q - P->p);
    P->col += (long)t->n;
    P->p = q;
    return KILN_OK;
}

static bool is_sym(const token *t, char c) { return t->kind == TOK_SYMBOL && t->s[0] == c; }

/* Consumes the symbol `c` if it comes next. */
static kiln_status try_sym(parser *P, char c, bool *got)
{
    *got = is_sym(&P->tok, c);
    return *got ? next_token(P) : KILN_OK;
}

/* ---- allocation through the caller's allocator, counted against PROTOTXT_MAX_BYTES ---- */

static kiln_status p_alloc(parser *P, size_t size, void **out)
{
    *out = NULL;
    if (size > PROTOTXT_MAX_BYTES - P->live)
        return PERR_AT(P, &P->tok,
                       "expected a document that fits in %zu MiB, found one that needs more",
                       PROTOTXT_MAX_BYTES >> 20);
    void *p = P->alloc->alloc(P->alloc->allocator_data, size);
    if (!p)
        return perr(P, KILN_ERR_OUT_OF_MEMORY, P->tok.line, P->tok.col,
                    "out of memory allocating %zu bytes", size);
    P->live += size;
    *out = p;
    return KILN_OK;
}

static void p_free(parser *P, void *p, size_t size)
{
    P->alloc->free(P->alloc->allocator_data, p);
    P->live -= size;
}

static kiln_status new_message(parser *P, const ProtobufCMessageDescriptor *d,
                               ProtobufCMessage **out)
{
    void *m;
    KILN_TRY(p_alloc(P, d->sizeof_message, &m));
    protobuf_c_message_init(d, m);
    *out = m;
    return KILN_OK;
}

/* ---- descriptors ---- */

static const char *type_name(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32: return "int32";
    case PROTOBUF_C_TYPE_SINT32: return "sint32";
    case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
    case PROTOBUF_C_TYPE_INT64: return "int64";
    case PROTOBUF_C_TYPE_SINT64: return "sint64";
    case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
    case PROTOBUF_C_TYPE_UINT32: return "uint32";
    case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
    case PROTOBUF_C_TYPE_UINT64: return "uint64";
    case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
    case PROTOBUF_C_TYPE_FLOAT: return "float";
    case PROTOBUF_C_TYPE_DOUBLE: return "double";
    case PROTOBUF_C_TYPE_BOOL: return "bool";
    case PROTOBUF_C_TYPE_ENUM: return "enum";
    case PROTOBUF_C_TYPE_STRING: return "string";
    case PROTOBUF_C_TYPE_BYTES: return "bytes";
    case PROTOBUF_C_TYPE_MESSAGE: return "message";
    }
    return "?";
}

/* Size of one element of a repeated field's array. */
static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM: return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
    }
    return 8;
}

/* strcmp(name, the n bytes at s), for the descriptors' sorted name tables. */
static int name_cmp(const char *name, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char a = (unsigned char)name[i], b = (unsigned char)s[i];
        if (a != b) return a < b ? -1 : 1;
    }
    return name[n] ? 1 : 0;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *md,
                                                  const char *s, size_t n)
{
    if (!md->fields_sorted_by_name) return NULL; /* protoc-c always makes the table */
    size_t lo = 0, hi = md->n_fields;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const ProtobufCFieldDescriptor *f = &md->fields[md->fields_sorted_by_name[mid]];
        int c = name_cmp(f->name, s, n);
        if (c == 0) return f;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static const ProtobufCEnumValue *find_enum_value(const ProtobufCEnumDescriptor *ed, const char *s,
                                                 size_t n)
{
    if (!ed->values_by_name) return NULL;
    size_t lo = 0, hi = ed->n_value_names;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = name_cmp(ed->values_by_name[mid].name, s, n);
        if (c == 0) return &ed->values[ed->values_by_name[mid].index];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- values ---- */

/* Error for a value token of the wrong kind. */
static kiln_status expected(const parser *P, const field_ref *r, const char *what)
{
    return PERR_AT(P, &P->tok, "expected %s for field '%s' (%s) of %s, found %s", what, r->f->name,
                   type_name(r->f->type), r->md->name, describe(&P->tok).s);
}

/* The magnitude of an integer token; false when it exceeds 64 bits. */
static bool token_u64(const token *t, uint64_t *out)
{
    const char *s = t->s;
    size_t i = 0, n = t->n;
    uint64_t base = 10, v = 0;
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        base = 16, i = 2;
    else if (n >= 2 && s[0] == '0')
        base = 8, i = 1;
    for (; i < n; i++) {
        uint64_t d = (uint64_t)hex_val((unsigned char)s[i]);
        if (v > (UINT64_MAX - d) / base) return false;
        v = v * base + d;
    }
    *out = v;
    return true;
}

/* An integer value in [lo, hi] (hi >= 0): an optional '-' and an integer token. Signed
 * results come back in *sv, unsigned ones (lo == 0) in *uv. */
static kiln_status parse_int(parser *P, const field_ref *r, int64_t lo, uint64_t hi, int64_t *sv,
                             uint64_t *uv)
{
    bool neg;
    token at = P->tok; /* where a range error points: at the sign when there is one */
    if (lo == 0 && is_sym(&P->tok, '-')) return expected(P, r, "a non-negative integer");
    KILN_TRY(try_sym(P, '-', &neg));
    if (P->tok.kind != TOK_INT) return expected(P, r, "an integer");
    uint64_t mag;
    uint64_t neg_lim = lo < 0 ? (uint64_t)(-(lo + 1)) + 1 : 0;
    if (!token_u64(&P->tok, &mag) || (neg ? mag > neg_lim : mag > hi)) {
        return PERR_AT(P, &at,
                       "expected a value from %lld to %llu for field '%s' (%s) of %s, found %s%.*s",
                       (long long)lo, (unsigned long long)hi, r->f->name, type_name(r->f->type),
                       r->md->name, neg ? "-" : "", (int)P->tok.n, P->tok.s);
    }
    if (uv) *uv = mag;
    /* -(mag - 1) - 1 stays in range for mag == 2^63. */
    if (sv) *sv = neg ? (mag ? -(int64_t)(mag - 1) - 1 : 0) : (int64_t)mag;
    return next_token(P);
}

/* C-locale strtod, so a host program's setlocale cannot turn "0.5" into 0. */
static double c_strtod(parser *P, const char *buf)
{
    if (P->c_locale == (locale_t)0) P->c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    if (P->c_locale == (locale_t)0) return strtod(buf, NULL);
    locale_t old = uselocale(P->c_locale);
    double d = strtod(buf, NULL);
    uselocale(old);
    return d;
}

static bool ieq(const token *t, const char *word)
{
    size_t n = strlen(word);
    if (t->n != n) return false;
    for (size_t i = 0; i < n; i++)
        if ((t->s[i] | 0x20) != word[i]) return false;
    return true;
}

/* A float or double: decimal numbers (TextFormat refuses hex and octal here), inf,
 * infinity and nan in any case, each with an optional '-'. Overflow gives infinity, as in
 * TextFormat. */
static kiln_status parse_double(parser *P, const field_ref *r, double *out)
{
    bool neg;
    KILN_TRY(try_sym(P, '-', &neg));
    const token *t = &P->tok;
    double d;
    if (t->kind == TOK_IDENT && (ieq(t, "inf") || ieq(t, "infinity"))) {
        d = INFINITY;
    } else if (t->kind == TOK_IDENT && ieq(t, "nan")) {
        d = NAN;
    } else if (t->kind == TOK_FLOAT || t->kind == TOK_INT) {
        if (t->kind == TOK_INT && t->n > 1 && t->s[0] == '0')
            return expected(P, r, "a decimal number");
        char buf[128];
        size_t n = t->n;
        if (t->s[n - 1] == 'f' || t->s[n - 1] == 'F') n--;
        if (n >= sizeof buf) return expected(P, r, "a number of at most 127 characters");
        memcpy(buf, t->s, n);
        buf[n] = '\0';
        d = c_strtod(P, buf);
    } else {
        return expected(P, r, "a number");
    }
    *out = neg ? -d : d;
    return next_token(P);
}

static kiln_status parse_bool(parser *P, const field_ref *r, protobuf_c_boolean *out)
{
    const token *t = &P->tok;
    uint64_t v = 2;
    if (t->kind == TOK_IDENT) {
        static const char *const yes[] = {"true", "True", "t"};
        static const char *const no[] = {"false", "False", "f"};
        for (int i = 0; i < 3; i++) {
            if (name_cmp(yes[i], t->s, t->n) == 0) v = 1;
            if (name_cmp(no[i], t->s, t->n) == 0) v = 0;
        }
    } else if (t->kind == TOK_INT && !token_u64(t, &v)) {
        v = 2;
    }
    if (v > 1) return expected(P, r, "true, false, 1 or 0");
    *out = (protobuf_c_boolean)v;
    return next_token(P);
}

static kiln_status parse_enum(parser *P, const field_ref *r, int32_t *out)
{
    const ProtobufCEnumDescriptor *ed = r->f->descriptor;
    const token *t = &P->tok;
    if (t->kind == TOK_IDENT) {
        const ProtobufCEnumValue *v = find_enum_value(ed, t->s, t->n);
        if (!v) {
            /* List the valid names: the likely fix is a typo or a wrong case. */
            char names[256];
            size_t k = 0;
            names[0] = '\0';
            for (unsigned i = 0; i < ed->n_values; i++) {
                int w = snprintf(names + k, sizeof names - k, "%s%s", i ? ", " : "",
                                 ed->values[i].name);
                if (w < 0 || (size_t)w >= sizeof names - k) {
                    snprintf(names + (k < sizeof names - 6 ? k : sizeof names - 6), 6, ", ...");
                    break;
                }
                k += (size_t)w;
            }
            return PERR_AT(P, t, "expected a value of enum %s (%s) for field '%s' of %s, found %s",
                           ed->name, names, r->f->name, r->md->name, describe(t).s);
        }
        *out = v->value;
        return next_token(P);
    }
    if (t->kind != TOK_INT && !is_sym(t, '-'))
        return expected(P, r, "an enum value name or number");
    int64_t v;
    token at = *t;
    KILN_TRY(parse_int(P, r, INT32_MIN, INT32_MAX, &v, NULL));
    if (!protobuf_c_enum_descriptor_get_value(ed, (int)v))
        return PERR_AT(P, &at,
                       "expected a value of enum %s for field '%s' of %s, found %lld (no value has "
                       "that number)",
                       ed->name, r->f->name, r->md->name, (long long)v);
    *out = (int32_t)v;
    return KILN_OK;
}

/* Decodes the escapes of one string token into `out` (when not NULL); *len gets the decoded
 * length and *nul whether a zero byte came out. Escapes follow C and protobuf: \a \b \f \n \r
 * \t \v \\ \' \" \?, octal \N to \NNN (at most \377) and hex \xH or \xHH. */
static kiln_status unescape(const parser *P, const token *t, uint8_t *out, size_t *len, bool *nul)
{
    const char *s = t->s;
    size_t i = 1, end = t->n - 1, k = 0;
    while (i < end) {
        unsigned char c = (unsigned char)s[i++];
        if (c == '\\') {
            size_t at = i - 1;
            c = (unsigned char)s[i++]; /* the tokenizer saw that a backslash has a successor */
            switch (c) {
            case 'a': c = '\a'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'v': c = '\v'; break;
            case '\\':
            case '\'':
            case '"':
            case '?': break;
            case 'x': {
                if (i >= end || !is_hex(s[i]))
                    return perr(P, KILN_ERR_PARSE, t->line, t->col + (long)at,
                                "expected hex digits after \\x, found %s",
                                i >= end ? "the end of the string" : "another character");
                unsigned v = 0;
                for (int d = 0; d < 2 && i < end && is_hex(s[i]); d++)
                    v = v * 16 + (unsigned)hex_val(s[i++]);
                c = (unsigned char)v;
                break;
            }
            default:
                if (c >= '0' && c <= '7') {
                    unsigned v = c - '0';
                    for (int d = 1; d < 3 && i < end && s[i] >= '0' && s[i] <= '7'; d++)
                        v = v * 8 + (unsigned)(s[i++] - '0');
                    if (v > 0xff)
                        return perr(P, KILN_ERR_PARSE, t->line, t->col + (long)at,
                                    "expected an octal escape up to \\377, found \\%.*s",
                                    (int)(i - at - 1), s + at + 1);
                    c = (unsigned char)v;
                    break;
                }
                if (c >= 0x21 && c < 0x7f)
                    return perr(P, KILN_ERR_PARSE, t->line, t->col + (long)at,
                                "expected an escape such as \\n, \\\\, \\\", \\NNN or \\xHH, "
                                "found \\%c",
                                c);
                return perr(P, KILN_ERR_PARSE, t->line, t->col + (long)at,
                            "expected an escape such as \\n, \\\\, \\\", \\NNN or \\xHH, "
                            "found \\ and byte 0x%02x",
                            c);
            }
        }
        if (c == 0) *nul = true;
        if (out) out[k] = c;
        k++;
    }
    *len = k;
    return KILN_OK;
}

/* A string or bytes value: one or more adjacent literals, concatenated. Measured in a
 * first pass over the tokens and decoded in a second, so one exact allocation holds it. */
static kiln_status parse_string(parser *P, const field_ref *r, void *slot)
{
    if (P->tok.kind != TOK_STRING) return expected(P, r, "a quoted string");
    parser first = *P; /* the lexer's state at the first literal, to decode from */
    size_t total = 0;
    bool nul = false;
    while (P->tok.kind == TOK_STRING) {
        size_t n = 0;
        KILN_TRY(unescape(P, &P->tok, NULL, &n, &nul));
        total += n;
        KILN_TRY(next_token(P));
    }
    bool is_string = r->f->type == PROTOBUF_C_TYPE_STRING;
    if (is_string && nul)
        return PERR_AT(
            P, &first.tok,
            "expected a string without zero bytes for field '%s' of %s, found one with \\0 "
            "(a string field is a C string here; bytes fields may hold zeros)",
            r->f->name, r->md->name);
    uint8_t *data = NULL;
    if (is_string || total > 0) {
        void *mem;
        KILN_TRY(p_alloc(P, total + is_string, &mem));
        data = mem;
    }
    size_t k = 0;
    while (k < total && first.tok.kind == TOK_STRING) {
        size_t n = 0;
        /* Cannot fail: the first pass decoded the same tokens. */
        (void)unescape(&first, &first.tok, data + k, &n, &nul);
        k += n;
        (void)next_token(&first);
    }
    if (is_string) {
        data[total] = '\0';
        *(char **)slot = (char *)data;
    } else {
        ProtobufCBinaryData *bd = slot;
        bd->len = total;
        bd->data = data;
    }
    return KILN_OK;
}

/* Parses one value of a scalar, enum, string or bytes field into `slot`. */
static kiln_status parse_value(parser *P, const field_ref *r, void *slot)
{
    int64_t s;
    uint64_t u;
    double d;
    switch (r->f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        KILN_TRY(parse_int(P, r, INT32_MIN, INT32_MAX, &s, NULL));
        *(int32_t *)slot = (int32_t)s;
        return KILN_OK;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        KILN_TRY(parse_int(P, r, INT64_MIN, INT64_MAX, &s, NULL));
        *(int64_t *)slot = s;
        return KILN_OK;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        KILN_TRY(parse_int(P, r, 0, UINT32_MAX, NULL, &u));
        *(uint32_t *)slot = (uint32_t)u;
        return KILN_OK;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        KILN_TRY(parse_int(P, r, 0, UINT64_MAX, NULL, &u));
        *(uint64_t *)slot = u;
        return KILN_OK;
    case PROTOBUF_C_TYPE_FLOAT:
        KILN_TRY(parse_double(P, r, &d));
        /* Converting a double beyond float's range is undefined in C; TextFormat gives inf. */
        *(float *)slot = d > FLT_MAX ? INFINITY : d < -FLT_MAX ? -INFINITY : (float)d;
        return KILN_OK;
    case PROTOBUF_C_TYPE_DOUBLE: return parse_double(P, r, (double *)slot);
    case PROTOBUF_C_TYPE_BOOL: return parse_bool(P, r, (protobuf_c_boolean *)slot);
    case PROTOBUF_C_TYPE_ENUM: return parse_enum(P, r, (int32_t *)slot);
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES: return parse_string(P, r, slot);
    case PROTOBUF_C_TYPE_MESSAGE: break;
    }
    return PERR_AT(P, &P->tok, "field '%s' of %s has a type kiln does not know", r->f->name,
                   r->md->name);
}

/* ---- fields and messages ---- */

/* Where the next element of a repeated field goes. Arrays grow by doubling from 4; the
 * capacity follows from the count (the next power of two, at least 4), so the message
 * itself is all the state there is, and protobuf_c_message_free_unpacked frees any array. */
static kiln_status reserve(parser *P, ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f,
                           void **slot)
{
    size_t *n = (size_t *)((char *)msg + f->quantifier_offset);
    void **arr = (void **)((char *)msg + f->offset);
    size_t es = elem_size(f->type);
    if (*n == 0 || (*n >= 4 && (*n & (*n - 1)) == 0)) {
        size_t cap = *n ? *n * 2 : 4;
        if (cap > PROTOTXT_MAX_BYTES / es) cap = PROTOTXT_MAX_BYTES / es + 1; /* p_alloc refuses */
        void *grown;
        KILN_TRY(p_alloc(P, cap * es, &grown));
        if (*n) {
            memcpy(grown, *arr, *n * es);
            p_free(P, *arr, *n * es);
        }
        *arr = grown;
    }
    *slot = (char *)*arr + *n * es;
    return KILN_OK;
}

/* Marks a singular field as given: its has_ flag or its oneof's case. */
static void set_present(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
    char *base = (char *)msg;
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        *(uint32_t *)(base + f->quantifier_offset) = f->id;
    else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
             f->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
}

static kiln_status parse_body(parser *P, ProtobufCMessage *msg, const token *open);

/* One message value: '{' or '<', the fields, the matching close. */
static kiln_status parse_message_value(parser *P, ProtobufCMessage *msg, const field_ref *r)
{
    const ProtobufCFieldDescriptor *f = r->f;
    const ProtobufCMessageDescriptor *sd = f->descriptor;
    token open = P->tok;
    if (!is_sym(&open, '{') && !is_sym(&open, '<'))
        return PERR_AT(P, &open, "expected '{' or '<' to open field '%s' (%s) of %s, found %s",
                       f->name, sd->name, r->md->name, describe(&open).s);
    if (P->depth >= PROTOTXT_MAX_DEPTH)
        return PERR_AT(P, &open, "expected messages nested at most %d deep, found deeper ones",
                       PROTOTXT_MAX_DEPTH);
    void *slot = (char *)msg + f->offset;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) KILN_TRY(reserve(P, msg, f, &slot));
    ProtobufCMessage *sub;
    KILN_TRY(new_message(P, sd, &sub));
    /* Hung in the tree before its body is read, so a failure below frees it with the rest. */
    *(ProtobufCMessage **)slot = sub;
    if (f->label == PROTOBUF_C_LABEL_REPEATED)
        (*(size_t *)((char *)msg + f->quantifier_offset))++;
    else
        set_present(msg, f);
    KILN_TRY(next_token(P));
    P->depth++;
    kiln_status st = parse_body(P, sub, &open);
    P->depth--;
    return st;
}

/* One element of a field: a message or a value, appended when the field is repeated. */
static kiln_status parse_element(parser *P, ProtobufCMessage *msg, const field_ref *r)
{
    const ProtobufCFieldDescriptor *f = r->f;
    if (f->type == PROTOBUF_C_TYPE_MESSAGE) return parse_message_value(P, msg, r);
    if (f->label != PROTOBUF_C_LABEL_REPEATED) {
        KILN_TRY(parse_value(P, r, (char *)msg + f->offset));
        set_present(msg, f);
        return KILN_OK;
    }
    void *slot;
    KILN_TRY(reserve(P, msg, f, &slot));
    KILN_TRY(parse_value(P, r, slot));
    (*(size_t *)((char *)msg + f->quantifier_offset))++;
    return KILN_OK;
}

/* '[' element, ... ']' for a repeated field. */
static kiln_status parse_list(parser *P, ProtobufCMessage *msg, const field_ref *r)
{
    token open = P->tok;
    if (r->f->label != PROTOBUF_C_LABEL_REPEATED)
        return PERR_AT(P, &open,
                       "expected a single value for field '%s' of %s, found a list "
                       "(the field is not repeated)",
                       r->f->name, r->md->name);
    KILN_TRY(next_token(P));
    bool got;
    KILN_TRY(try_sym(P, ']', &got));
    while (!got) {
        KILN_TRY(parse_element(P, msg, r));
        KILN_TRY(try_sym(P, ',', &got));
        if (got) {
            got = false;
            continue;
        }
        KILN_TRY(try_sym(P, ']', &got));
        if (!got)
            return PERR_AT(
                P, &P->tok,
                "expected ',' or ']' in the list of field '%s' opened at %ld:%ld, found %s",
                r->f->name, open.line, open.col, describe(&P->tok).s);
    }
    return KILN_OK;
}

/* Reads fields until the token closing `open`, or the end of input at the top level
 * (open == NULL), and checks that required fields came. */
static kiln_status parse_body(parser *P, ProtobufCMessage *msg, const token *open)
{
    const ProtobufCMessageDescriptor *md = msg->descriptor;
    char close = open ? (is_sym(open, '{') ? '}' : '>') : 0;
    /* Which fields came, for duplicates and required fields; the heap only for huge types. */
    uint64_t seen_local[8] = {0};
    uint64_t *seen = seen_local;
    size_t words = (md->n_fields + 63) / 64;
    kiln_status st = KILN_OK;
    if (words > 8) {
        seen = kiln_calloc(words, sizeof *seen);
        if (!seen)
            return perr(P, KILN_ERR_OUT_OF_MEMORY, P->tok.line, P->tok.col,
                        "out of memory reading a %s", md->name);
    }
    for (;;) {
        const token *t = &P->tok;
        if (t->kind == TOK_END && !open) break;
        if (t->kind == TOK_END || (t->kind == TOK_SYMBOL && strchr("}>", t->s[0]) && open)) {
            if (t->kind != TOK_END && t->s[0] == close) break;
            st = PERR_AT(P, t, "expected '%c' to close the '%c' at %ld:%ld, found %s", close,
                         open->s[0], open->line, open->col, describe(t).s);
            goto done;
        }
        if (t->kind != TOK_IDENT) {
            st = PERR_AT(P, t, "expected a field name, found %s%s", describe(t).s,
                         is_sym(t, '[')   ? " (extension and Any fields are not supported)"
                         : is_sym(t, '}') ? " (no '{' is open)"
                         : is_sym(t, '>') ? " (no '<' is open)"
                                          : "");
            goto done;
        }
        field_ref r = {md, find_field(md, t->s, t->n)};
        if (!r.f) {
            st = PERR_AT(P, t, "unknown field '%.*s' in %s", (int)t->n, t->s, md->name);
            goto done;
        }
        const ProtobufCFieldDescriptor *f = r.f;
        size_t idx = (size_t)(f - md->fields);
        if (f->label != PROTOBUF_C_LABEL_REPEATED && (seen[idx / 64] >> (idx % 64) & 1)) {
            st = PERR_AT(
                P, t, "expected field '%s' of %s at most once (it is not repeated), found it again",
                f->name, md->name);
            goto done;
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t chosen = *(uint32_t *)((char *)msg + f->quantifier_offset);
            const ProtobufCFieldDescriptor *other =
                protobuf_c_message_descriptor_get_field(md, chosen);
            if (chosen && chosen != f->id && other) {
                st = PERR_AT(P, t, "expected one field of a oneof in %s, found '%s' after '%s'",
                             md->name, f->name, other->name);
                goto done;
            }
        }
        seen[idx / 64] |= (uint64_t)1 << (idx % 64);
        token name = *t;
        bool colon;
        KILN_CHECK(next_token(P));
        KILN_CHECK(try_sym(P, ':', &colon));
        /* As in TextFormat, the colon is optional before a message only. */
        if (f->type != PROTOBUF_C_TYPE_MESSAGE && !colon) {
            st = PERR_AT(P, &P->tok, "expected ':' after field '%.*s', found %s", (int)name.n,
                         name.s, describe(&P->tok).s);
            goto done;
        }
        if (is_sym(&P->tok, '['))
            KILN_CHECK(parse_list(P, msg, &r));
        else
            KILN_CHECK(parse_element(P, msg, &r));
        bool sep;
        KILN_CHECK(try_sym(P, ';', &sep));
        if (!sep) KILN_CHECK(try_sym(P, ',', &sep));
    }
    for (unsigned i = 0; i < md->n_fields; i++) {
        if (md->fields[i].label == PROTOBUF_C_LABEL_REQUIRED && !(seen[i / 64] >> (i % 64) & 1)) {
            if (open)
                st = PERR_AT(
                    P, &P->tok, "expected required field '%s' of %s (opened at %ld:%ld), found %s",
                    md->fields[i].name, md->name, open->line, open->col, describe(&P->tok).s);
            else
                st = PERR_AT(P, &P->tok, "expected required field '%s' of %s, found end of input",
                             md->fields[i].name, md->name);
            goto done;
        }
    }
    if (open) st = next_token(P);
    goto done;
fail:
done:
    if (seen != seen_local) kiln_free(seen);
    return st;
}

static void *default_alloc(void *data, size_t size) { return kiln_malloc(size); }
static void default_free(void *data, void *p) { kiln_free(p); }
static ProtobufCAllocator g_default_alloc = {default_alloc, default_free, NULL};

kiln_status prototxt_parse(const char *text, size_t len, const char *source,
                           const ProtobufCMessageDescriptor *desc, ProtobufCAllocator *alloc,
                           ProtobufCMessage **out)
{
    if (out) *out = NULL;
    if (!out || !desc || (!text && len) || desc->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC)
        return kiln_error(KILN_ERR_INVALID_ARGUMENT,
                          "prototxt_parse: needs text, a message descriptor and an output");
    parser P = {0};
    P.p = text ? text : "";
    P.end = P.p + len;
    /* Editors on Windows may start a UTF-8 file with a byte order mark. */
    if (len >= 3 && memcmp(P.p, "\xef\xbb\xbf", 3) == 0) P.p += 3;
    P.line = P.col = 1;
    P.tok.line = P.tok.col = 1;
    P.source = source ? source : "<prototxt>";
    P.alloc = alloc ? alloc : &g_default_alloc;
    ProtobufCMessage *msg = NULL;
    kiln_status st;
    KILN_CHECK(new_message(&P, desc, &msg));
    KILN_CHECK(next_token(&P));
    KILN_CHECK(parse_body(&P, msg, NULL));
    if (P.c_locale != (locale_t)0) freelocale(P.c_locale);
    *out = msg;
    return KILN_OK;
fail:
    if (msg) protobuf_c_message_free_unpacked(msg, P.alloc);
    if (P.c_locale != (locale_t)0) freelocale(P.c_locale);
    return st;
}
