/*
 * plugins/json.h: a minimal JSON writer and reader for the Docker Engine API.
 *
 * The dependency list has no JSON library, and the container plugin needs little: build small
 * request bodies, and read a handful of fields from inspect/list responses (State.Status, Id,
 * Labels, ...). Both halves are strict RFC 8259 and bounded:
 *
 *  - json_w: a writer with a sticky error. Calls append to a growable buffer capped at @max
 *    bytes; structure is checked as it goes (a key before every object member, no key in an
 *    array, balanced ends, depth <= JSON_MAX_DEPTH); strings are escaped and must be valid
 *    UTF-8. The first error sticks and is returned by json_w_finish; later calls do nothing.
 *
 *  - json_doc: a tokenizer (in the style of jsmn) that validates the whole text once
 *    (grammar, UTF-8, escapes and surrogate pairs, depth <= JSON_MAX_DEPTH, token count) and
 *    records one token per value. Tokens point into the caller's text, which must outlive the
 *    doc. Lookups walk the tokens: by key, by array index, or by a dotted path
 *    ("State.Status", "0.Id"). Values are decoded on demand into caller buffers.
 *
 * Token indices are ints >= 0; the root is 0. Lookup functions return a token index or a
 * negative errno. Not thread-safe per object; no global state. This module never logs.
 */
#ifndef SHOAL_PLUGINS_JSON_H
#define SHOAL_PLUGINS_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 64
#define JSON_DEFAULT_MAX_TOKENS 100000
#define JSON_DEFAULT_MAX_OUT (1024 * 1024)

/* ---- Writer ------------------------------------------------------------------------------ */

struct json_w {
	char *buf;
	size_t len, cap, max;
	int err;
	unsigned depth;
	bool in_obj[JSON_MAX_DEPTH];	/* per level: object (true) or array */
	bool has_item[JSON_MAX_DEPTH];	/* per level: a member already written (comma needed) */
	bool want_value;		/* a key was written, its value comes next */
	bool done;			/* the top-level value is complete */
};

/* Start an empty writer whose output may reach @max bytes (0: JSON_DEFAULT_MAX_OUT). */
void json_w_init(struct json_w *w, size_t max);
/* Free the buffer (if json_w_finish did not hand it over). Accepts a zeroed writer. */
void json_w_release(struct json_w *w);

void json_w_obj_begin(struct json_w *w);
void json_w_obj_end(struct json_w *w);
void json_w_arr_begin(struct json_w *w);
void json_w_arr_end(struct json_w *w);
/* An object member's name; the next call writes its value. */
void json_w_key(struct json_w *w, const char *key);
void json_w_str(struct json_w *w, const char *s);	/* NULL writes null */
void json_w_int(struct json_w *w, int64_t v);
void json_w_bool(struct json_w *w, bool v);
void json_w_null(struct json_w *w);

/*
 * Finish: the text must be one complete value. On success *ret_buf (malloc'd, NUL-terminated,
 * caller frees) and *ret_len receive the text and the writer is left empty.
 * @return 0; the sticky error: -EINVAL misuse (value without key in an object, key in an array,
 *         unbalanced end, a second top-level value, nothing written, NULL key); -EILSEQ a string
 *         that is not valid UTF-8; -E2BIG nesting over JSON_MAX_DEPTH; -EMSGSIZE output over
 *         @max; -ENOMEM.
 */
int json_w_finish(struct json_w *w, char **ret_buf, size_t *ret_len);

/* ---- Reader ------------------------------------------------------------------------------ */

enum json_type {
	JSON_NULL = 1,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
};

struct json_tok {
	uint8_t type;		/* enum json_type */
	uint32_t start, len;	/* the value's text (strings: between the quotes, still escaped) */
	uint32_t end;		/* index of the first token after this value's subtree */
	uint32_t size;		/* arrays: elements; objects: members; else 0 */
};

struct json_doc {
	const char *src;	/* borrowed: the text must outlive the doc */
	size_t len;
	struct json_tok *toks;	/* objects: key token (a string), then its value's tokens */
	uint32_t ntoks, cap;
};

/*
 * Tokenize and validate @len bytes at @src (no NUL needed): exactly one value, surrounded by
 * optional whitespace. @max_tokens 0: JSON_DEFAULT_MAX_TOKENS; @len must be < 4 GiB.
 * @return 0; -EBADMSG not valid JSON (grammar, UTF-8, escape, lone surrogate, trailing data);
 *         -E2BIG more than @max_tokens values or deeper than JSON_MAX_DEPTH; -ENOMEM.
 *         @ret untouched on failure.
 */
int json_parse(const char *src, size_t len, size_t max_tokens, struct json_doc *ret);
/* Free the tokens; accepts a zeroed doc. */
void json_doc_release(struct json_doc *d);

/* Type of token @t, or 0 if @t is not a valid index. */
int json_type(const struct json_doc *d, int t);
/* Elements of an array / members of an object; -EINVAL for other types or a bad index. */
int json_size(const struct json_doc *d, int t);
/* The value of member @key of object @obj: token index; -ENOENT no such member; -EINVAL @obj
 * is not an object. With duplicate keys the last one wins (as in most readers). */
int json_obj_get(const struct json_doc *d, int obj, const char *key);
/* Element @i of array @arr; -ENOENT out of range; -EINVAL not an array. */
int json_arr_at(const struct json_doc *d, int arr, uint32_t i);
/* Iteration: the first element of an array (or first key of an object) is json_first; the
 * next sibling is json_next. For objects, siblings alternate key, value. -ENOENT at the end. */
int json_first(const struct json_doc *d, int t);
int json_next(const struct json_doc *d, int parent, int t);
/*
 * Follow @path from @from: segments separated by '.', a segment is an object key or, on an
 * array, a decimal index. Keys containing '.' cannot be reached this way: use json_obj_get.
 * @return token index; -ENOENT a segment is missing; -EINVAL a segment crosses a scalar.
 */
int json_path(const struct json_doc *d, int from, const char *path);

/*
 * Decoders. @t must be of the right type (-EINVAL otherwise; negative @t is passed through,
 * so json_get_str(d, json_path(...), ...) reports a missing path as -ENOENT).
 * json_get_str: unescaped UTF-8 with a NUL; returns its length; -ENOSPC if @cap is too small
 *               (then @out is ""); embedded "\u0000" is refused with -EILSEQ.
 * json_get_i64: an integer (no fraction or exponent): -ERANGE outside int64_t; -EINVAL a
 *               non-integer number.
 * json_get_bool: true/false.
 * Outputs untouched on failure (except @out of json_get_str, which is "").
 */
int json_get_str(const struct json_doc *d, int t, char *out, size_t cap);
int json_get_i64(const struct json_doc *d, int t, int64_t *ret);
int json_get_bool(const struct json_doc *d, int t, bool *ret);
/* Compare a string token with @s (after unescaping): true if equal. */
bool json_str_eq(const struct json_doc *d, int t, const char *s);

#endif
