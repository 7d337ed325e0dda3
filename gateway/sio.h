/*
 * sio.h - Socket.IO v5 packet codec (the default socket.io-parser format).
 *
 * A Socket.IO packet travels as the data of one Engine.IO MESSAGE packet:
 *
 *   <type>[<attachments>-][<nsp>,][<ack id>][<JSON>]
 *
 *   0                                  CONNECT to "/"
 *   0/admin,{"token":"123"}            CONNECT to "/admin" with auth data
 *   2["hello",1]                       EVENT
 *   2/admin,456["project:delete",123]  EVENT asking for ack 456
 *   3/admin,456[]                      ACK 456
 *   51-["hello",{"_placeholder":true,"num":0}]
 *                                      BINARY_EVENT; one binary Engine.IO
 *                                      message (the attachment) follows
 *   4{"message":"Not authorized"}      CONNECT_ERROR
 *   1/admin,                           DISCONNECT from "/admin"
 *
 * The codec is pure: no I/O, no logging and no allocation, except the cJSON
 * tree sio_parse_data builds when asked. Parsers take the caller's bytes and
 * hand back slices into them; encoders append to a caller's buf and leave it
 * exactly as it was when they fail.
 *
 * Binary attachments are not this module's concern beyond the header count
 * and the placeholder check: the caller collects the binary messages that
 * follow a BINARY_EVENT/BINARY_ACK (with its own byte cap and timeout).
 */
#ifndef TIDINGS_SIO_H
#define TIDINGS_SIO_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/buf.h"
#include "common/slice.h"

enum {
	SIO_CONNECT = 0,
	SIO_DISCONNECT = 1,
	SIO_EVENT = 2,
	SIO_ACK = 3,
	SIO_CONNECT_ERROR = 4,
	SIO_BINARY_EVENT = 5,
	SIO_BINARY_ACK = 6
};

#define SIO_DEFAULT_MAX_ATTACHMENTS 10
#define SIO_DEFAULT_MAX_DEPTH       32
/* Hard ceilings, whatever the limits say: the placeholder check keeps one
 * bit per attachment on the stack and the JSON check one byte per level. */
#define SIO_MAX_ATTACHMENTS 1024
#define SIO_MAX_DEPTH       256
/* The largest ack id accepted or written: 2^53, the edge of the integers a
 * JavaScript number holds exactly. */
#define SIO_MAX_ACK_ID 9007199254740992LL

typedef struct sio_packet {
	int type;             /* SIO_CONNECT .. SIO_BINARY_ACK */
	slice nsp;            /* starts with '/', no ','; a static "/" when absent */
	int64_t id;           /* ack id 0..SIO_MAX_ACK_ID, or -1 when absent */
	uint32_t attachments; /* BINARY_EVENT/BINARY_ACK only; 0 otherwise */
	slice data;           /* the JSON text as sent (may have surrounding JSON
	                       * whitespace); empty when absent */
} sio_packet;

typedef struct sio_limits {
	uint32_t max_attachments; /* SIO_DEFAULT_MAX_ATTACHMENTS is 10; 0 refuses all
	                           * binary packets; values above SIO_MAX_ATTACHMENTS
	                           * mean SIO_MAX_ATTACHMENTS */
	uint32_t max_depth;       /* JSON nesting; 0 means SIO_DEFAULT_MAX_DEPTH,
	                           * values above SIO_MAX_DEPTH mean SIO_MAX_DEPTH */
} sio_limits;

/*
 * Parses the text form of one packet from text[0..len) (no NUL needed) into
 * the caller's *pkt, whose slices then point into text. `lim` may be NULL
 * for the defaults.
 *
 * Strict, in this order:
 *   - type: one digit 0-6;
 *   - attachments: required for BINARY_EVENT/BINARY_ACK and absent
 *     otherwise: decimal digits without a leading zero, from 1 (as
 *     socket.io-parser 4.2.7 requires) to lim->max_attachments, then '-';
 *   - namespace: when the next byte is '/', the bytes up to the first ','
 *     (which must exist, and is consumed); no control bytes (< 0x20, 0x7f)
 *     and valid UTF-8;
 *   - ack id: decimal digits without a leading zero, <= SIO_MAX_ACK_ID;
 *     only EVENT/ACK/BINARY_* may carry one and ACK/BINARY_ACK must;
 *   - data: everything else, which must be absent or one RFC 8259 JSON value
 *     (optionally surrounded by JSON whitespace) of the kind the type needs:
 *     CONNECT absent or object; DISCONNECT absent; EVENT/BINARY_EVENT an
 *     array whose first element is a string (the event name) other than the
 *     names socket.io-parser reserves ("connect", "connect_error",
 *     "disconnect", "disconnecting", "newListener", "removeListener", however
 *     escaped); ACK/BINARY_ACK an array; CONNECT_ERROR an object.
 * The JSON check is our own (no allocation) and stricter than cJSON in ways
 * that keep the bytes safe for C strings and Postgres: strings must be valid
 * UTF-8 without raw control bytes, escapes must be well-formed, \u0000 and
 * unpaired surrogate escapes are refused, numbers follow the RFC grammar and
 * are at most 63 characters (cJSON's own limit), nesting is at most
 * lim->max_depth, and a byte-order mark is refused. Whatever passes is
 * guaranteed to parse with cJSON (sio_parse_data).
 *
 * Returns 0, or -1 with *err set to a static, human-readable reason (and
 * *pkt unspecified). `err` may be NULL.
 */
int sio_parse(slice text, const sio_limits *lim, sio_packet *pkt, const char **err);

/*
 * Builds the cJSON tree of pkt->data, which must come from a successful
 * sio_parse (so the parse cannot fail for any reason but memory). The tree
 * is the caller's: free it with cJSON_Delete. Returns NULL when the packet
 * has no data or memory ran out.
 */
cJSON *sio_parse_data(const sio_packet *pkt);

/*
 * Checks the placeholders of a BINARY_EVENT/BINARY_ACK data tree (from
 * sio_parse_data; the tree stays the caller's and is not modified). Every
 * object that has a "_placeholder" key must be exactly
 * {"_placeholder":true,"num":N} (the two keys in any order, nothing else)
 * with N an integer in [0, attachments); each N may appear once; and every
 * attachment must be referenced, so there are exactly `attachments`
 * placeholders. Passing attachments = 0 checks that a plain EVENT/ACK holds
 * no placeholder look-alikes. attachments above SIO_MAX_ATTACHMENTS and
 * trees deeper than SIO_MAX_DEPTH are refused.
 *
 * Returns 0, or -1 with a static reason in *err (err may be NULL).
 */
int sio_check_placeholders(const cJSON *data, uint32_t attachments, const char **err);

/*
 * Appends one packet in text form. nsp "/" (or empty) is left out, any other
 * must start with '/' and contain no ','; it is written followed by ','.
 * id -1 is left out, otherwise it must be 0..SIO_MAX_ACK_ID. attachments is
 * written ("<n>-") for BINARY_EVENT/BINARY_ACK only, where it must be at
 * least 1 (socket.io-parser refuses 0), and is ignored for the other types.
 * json is copied as it is (may be empty): the caller vouches that it is
 * valid JSON of the right kind. Returns 0, or -1 on a bad type, nsp, id or
 * attachment count, or past out's limit (out unchanged).
 */
int sio_encode(buf *out, int type, slice nsp, int64_t id, uint32_t attachments, slice json);

/*
 * Appends the CONNECT answer 0[<nsp>,]{"sid":"<sid>"}, with sid escaped as
 * JSON. Returns 0 or -1 as sio_encode.
 */
int sio_encode_connect_ok(buf *out, slice nsp, slice sid);

/*
 * Appends the refusal 4[<nsp>,]{"message":"<message>"}, the message (a C
 * string) escaped as JSON. Returns 0 or -1 as sio_encode.
 */
int sio_encode_connect_error(buf *out, slice nsp, const char *message);

/*
 * Appends the EVENT 2[<nsp>,][<id>]["<name>",<args>...]: name is escaped as
 * JSON; args_json_array is the JSON text of an array holding the remaining
 * arguments ("[1,{}]"), or empty / "[]" for none; its elements are copied
 * as they are. Returns 0, or -1 as sio_encode or when args_json_array is
 * neither empty nor bracketed by '[' ... ']' (JSON whitespace around is
 * allowed).
 */
int sio_encode_event(buf *out, slice nsp, int64_t id, slice name, slice args_json_array);

/*
 * Appends s as a JSON string literal, quotes included, exactly as
 * JSON.stringify writes a string for valid UTF-8 input: '"' and '\\' are
 * escaped, control bytes < 0x20 become \b \f \n \r \t or \u00xx (lowercase
 * hex), every other byte is copied. Returns 0, or -1 past out's limit (out
 * unchanged).
 */
int sio_json_escape(buf *out, slice s);

#endif
