#include "ws_frame.h"

#include <assert.h>
#include <string.h>

/* A client frame header that passed every check. */
typedef struct ws_header {
	uint64_t len;    /* payload bytes */
	size_t size;     /* header bytes, mask key included */
	uint8_t fin;     /* 0 or 1 */
	uint8_t opcode;  /* WS_OP_* */
	uint8_t mask[4]; /* masking key */
} ws_header;

static uint64_t limit_of(uint64_t v)
{
	return v ? v : UINT64_MAX;
}

static int is_control(int opcode)
{
	return (opcode & 0x08) != 0;
}

void ws_reader_init(ws_reader *r, const ws_limits *lim)
{
	memset(r, 0, sizeof(*r));
	r->lim = lim;
	r->step = WS_RD_IDLE;
	r->utf8 = UTF8_ACCEPT;
	/* The reader checks max_message itself before appending; the buffer's own
	 * limit is a second fence behind it. */
	buf_init(&r->msg, lim->max_message > SIZE_MAX ? SIZE_MAX : (size_t)lim->max_message);
}

void ws_reader_dispose(ws_reader *r)
{
	buf_dispose(&r->msg);
}

/*
 * Checks what the first two header bytes alone can prove, so that a bad frame
 * is refused before its extended length or payload arrives. Returns 0 or the
 * close code. The fragment cap is tested here too: a continuation that would
 * exceed it is refused whatever its length, which is what stops an endless
 * stream of empty continuations.
 */
static uint16_t check_start(const ws_reader *r, uint8_t b0, uint8_t b1)
{
	int fin = (b0 & 0x80) != 0;
	int opcode = b0 & 0x0f;

	if (b0 & 0x70)
		return WS_CLOSE_PROTOCOL; /* RSV bits without a negotiated extension */
	if (!(b1 & 0x80))
		return WS_CLOSE_PROTOCOL; /* section 5.1: a server must fail unmasked frames */
	switch (opcode) {
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!fin || (b1 & 0x7f) > WS_CONTROL_MAX)
			return WS_CLOSE_PROTOCOL;
		return 0;
	case WS_OP_CONT:
		if (r->step != WS_RD_MESSAGE)
			return WS_CLOSE_PROTOCOL;
		if (r->lim->max_fragments && r->fragments >= r->lim->max_fragments)
			return WS_CLOSE_POLICY;
		return 0;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (r->step == WS_RD_MESSAGE)
			return WS_CLOSE_PROTOCOL; /* a new message inside a fragmented one */
		return 0;
	default: return WS_CLOSE_PROTOCOL; /* reserved opcodes 3-7 and 11-15 */
	}
}

/*
 * Checks the announced payload length against the protocol and the limits.
 * The arithmetic is arranged so that nothing can overflow: the bytes already
 * held are subtracted from the limit (they never exceed it) instead of being
 * added to the length. Control frames were already held to 125 bytes, which
 * every peer may send whatever the limits say.
 */
static uint16_t check_length(const ws_reader *r, const ws_header *h)
{
	uint64_t held = h->opcode == WS_OP_CONT ? r->msg.len : 0;

	if (h->len >> 63)
		return WS_CLOSE_PROTOCOL; /* section 5.2: the most significant bit must be 0 */
	if (is_control(h->opcode))
		return 0;
	if (h->len > limit_of(r->lim->max_frame) || h->len > limit_of(r->lim->max_message) - held)
		return WS_CLOSE_TOO_BIG;
	return 0;
}

/*
 * Parses the header at p[0..n). Returns 1 with *h filled in, 0 when more
 * bytes are needed, or -1 with *code set. Each check runs as soon as its
 * bytes are present and in the order they arrive, so the verdict on a frame
 * is the same however the input was split.
 */
static int parse_header(const ws_reader *r, const uint8_t *p, size_t n, ws_header *h,
                        uint16_t *code)
{
	size_t ext;

	if (n < 2)
		return 0;
	if ((*code = check_start(r, p[0], p[1])) != 0)
		return -1;
	h->fin = p[0] >> 7;
	h->opcode = p[0] & 0x0f;
	h->len = p[1] & 0x7f;
	ext = h->len == 126 ? 2 : h->len == 127 ? 8 : 0;
	if (n < 2 + ext)
		return 0;
	if (ext) {
		h->len = 0;
		for (size_t i = 0; i < ext; i++)
			h->len = h->len << 8 | p[2 + i];
	}
	/* Lengths that were not minimally encoded (126 in 64 bits) are accepted:
	 * the minimality rule binds the sender and harms nobody when broken. */
	if ((*code = check_length(r, h)) != 0)
		return -1;
	h->size = 2 + ext + 4;
	if (n < h->size)
		return 0;
	memcpy(h->mask, p + 2 + ext, 4);
	return 1;
}

/*
 * XORs n bytes of src with the masking key into dst (which may be src),
 * starting at payload offset off. Eight bytes per step: the key repeats every
 * four bytes, so an eight-byte word of key rotated to `off` fits any offset.
 */
static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t key[4], uint64_t off)
{
	uint8_t k[8];
	uint64_t kw, w;
	size_t i = 0;

	for (int j = 0; j < 8; j++)
		k[j] = key[(off + (uint64_t)j) & 3];
	memcpy(&kw, k, 8);
	for (; n - i >= 8; i += 8) {
		memcpy(&w, src + i, 8);
		w ^= kw;
		memcpy(dst + i, &w, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ k[i & 7];
}

/*
 * Validates as much of an incomplete text frame as has arrived, so that a
 * peer sending invalid UTF-8 is failed at the offending byte rather than when
 * its frame ends (Autobahn's "fail fast", cases 6.4.3 and 6.4.4). The caller's
 * bytes must stay masked until the frame is consumed, so the payload is
 * unmasked into a small stack buffer. Progress is kept in the reader so that
 * a large frame arriving in many reads is scanned once in total, not once per
 * read; the key (length and mask) guards against a caller who presents a
 * different frame. This scan only decides how early an error is reported:
 * the complete frame is validated again from the start of the frame, so the
 * cache can never make invalid text pass.
 */
static utf8_state prescan(ws_reader *r, const ws_header *h, const uint8_t *p, size_t avail)
{
	uint8_t tmp[512];
	uint32_t key;

	if (h->len > UINT32_MAX)
		return UTF8_ACCEPT; /* no early verdict: it is validated once complete */
	memcpy(&key, h->mask, 4);
	if (!(r->flags & WS_RD_F_SCAN) || r->scan_len != h->len || r->scan_mask != key ||
	    r->scan_done > avail) {
		r->flags |= WS_RD_F_SCAN;
		r->scan_len = (uint32_t)h->len;
		r->scan_mask = key;
		r->scan_done = 0;
		r->scan_utf8 = h->opcode == WS_OP_TEXT ? UTF8_ACCEPT : r->utf8;
	}
	while (r->scan_done < avail && r->scan_utf8 != UTF8_REJECT) {
		size_t n = avail - (size_t)r->scan_done;
		if (n > sizeof(tmp))
			n = sizeof(tmp);
		unmask(tmp, p + r->scan_done, n, h->mask, r->scan_done);
		r->scan_utf8 = utf8_validate(r->scan_utf8, tmp, n);
		r->scan_done += (uint32_t)n;
	}
	return r->scan_utf8;
}

static int fail(ws_reader *r, ws_event *ev, uint16_t code)
{
	r->step = WS_RD_FAILED;
	r->err = code;
	ev->type = WS_EV_ERROR;
	ev->close_code = code;
	return WS_EV_ERROR;
}

static int deliver(ws_event *ev, int type, int opcode, slice payload)
{
	ev->type = type;
	ev->opcode = opcode;
	ev->payload = payload;
	return type;
}

/*
 * A complete data frame. An unfragmented message is handed out in place;
 * fragments are validated (text) and appended, and the message is handed out
 * from the reassembly buffer when its final fragment arrives. Text is
 * validated fragment by fragment, so an invalid fragment fails at once; a
 * sequence cut at a fragment boundary is fine as long as the next fragment
 * completes it.
 */
static int data_frame(ws_reader *r, const ws_header *h, slice p, ws_event *ev)
{
	if (h->opcode != WS_OP_CONT) {
		if (h->fin) {
			if (h->opcode == WS_OP_TEXT && !utf8_is_valid(p.base, p.len))
				return fail(r, ev, WS_CLOSE_INVALID_DATA);
			return deliver(ev, WS_EV_MESSAGE, h->opcode, p);
		}
		r->step = WS_RD_MESSAGE;
		r->msg_opcode = h->opcode;
		r->fragments = 0;
		r->utf8 = UTF8_ACCEPT;
	}
	r->fragments++;
	if (r->msg_opcode == WS_OP_TEXT) {
		r->utf8 = utf8_validate(r->utf8, p.base, p.len);
		if (r->utf8 == UTF8_REJECT || (h->fin && r->utf8 != UTF8_ACCEPT))
			return fail(r, ev, WS_CLOSE_INVALID_DATA);
	}
	if (buf_append(&r->msg, p.base, p.len) < 0)
		return fail(r, ev, WS_CLOSE_INTERNAL); /* the limits were checked: no memory */
	if (!h->fin)
		return ev->type = WS_EV_NEED_MORE;
	r->step = WS_RD_IDLE;
	return deliver(ev, WS_EV_MESSAGE, r->msg_opcode,
	               r->msg.len ? buf_slice(&r->msg) : slice_make("", 0));
}

/* Section 5.5.1: an empty body means "no status" (1005); otherwise two bytes
 * of code, then an optional UTF-8 reason. */
static int close_frame(ws_reader *r, slice p, ws_event *ev)
{
	uint16_t code = WS_CLOSE_NO_STATUS;
	slice reason = slice_make(p.base, 0);

	if (p.len == 1)
		return fail(r, ev, WS_CLOSE_PROTOCOL);
	if (p.len >= 2) {
		code = (uint16_t)((uint8_t)p.base[0] << 8 | (uint8_t)p.base[1]);
		if (!ws_close_code_valid(code))
			return fail(r, ev, WS_CLOSE_PROTOCOL);
		reason = slice_make(p.base + 2, p.len - 2);
		if (!utf8_is_valid(reason.base, reason.len))
			return fail(r, ev, WS_CLOSE_INVALID_DATA);
	}
	r->step = WS_RD_CLOSED;
	ev->close_code = code;
	ev->close_reason = reason;
	return deliver(ev, WS_EV_CLOSE, WS_OP_CLOSE, p);
}

static int control_frame(ws_reader *r, const ws_header *h, slice p, ws_event *ev)
{
	if (h->opcode == WS_OP_PING)
		return deliver(ev, WS_EV_PING, h->opcode, p);
	if (h->opcode == WS_OP_PONG)
		return deliver(ev, WS_EV_PONG, h->opcode, p);
	return close_frame(r, p, ev);
}

/*
 * The reader keeps no partial frame of its own: an incomplete frame is left
 * in the caller's buffer and parsed again when more bytes arrive, which costs
 * a header parse per read and saves a copy of every payload. A reassembled
 * message is released at the next call, once its slice is no longer in use,
 * so that an idle connection pins no memory.
 */
int ws_reader_feed(ws_reader *r, uint8_t *data, size_t len, size_t *consumed, ws_event *ev)
{
	ws_header h;
	uint16_t code = 0;
	int rc, type;

	*consumed = 0;
	memset(ev, 0, sizeof(*ev));
	if (r->step == WS_RD_FAILED)
		return fail(r, ev, r->err);
	if (r->step == WS_RD_CLOSED)
		return fail(r, ev, WS_CLOSE_PROTOCOL); /* nothing may follow a close */
	if (r->step == WS_RD_IDLE && r->msg.cap)
		buf_dispose(&r->msg);

	rc = parse_header(r, data, len, &h, &code);
	if (rc < 0)
		return fail(r, ev, code);
	if (rc == 0)
		return WS_EV_NEED_MORE;
	if (h.len > len - h.size) {
		int text = h.opcode == WS_OP_TEXT ||
		           (h.opcode == WS_OP_CONT && r->msg_opcode == WS_OP_TEXT);
		if (text && prescan(r, &h, data + h.size, len - h.size) == UTF8_REJECT)
			return fail(r, ev, WS_CLOSE_INVALID_DATA);
		return WS_EV_NEED_MORE;
	}

	r->flags &= (uint8_t)~WS_RD_F_SCAN;
	unmask(data + h.size, data + h.size, (size_t)h.len, h.mask, 0);
	slice payload = slice_make(data + h.size, (size_t)h.len);
	if (is_control(h.opcode))
		type = control_frame(r, &h, payload, ev);
	else
		type = data_frame(r, &h, payload, ev);
	if (type != WS_EV_ERROR)
		*consumed = h.size + (size_t)h.len;
	return type;
}

size_t ws_frame_header_encode(uint8_t *out, int fin, int opcode, uint64_t len)
{
	assert(len >> 63 == 0);
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		return 4;
	}
	out[1] = 127;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

/*
 * The reason is cut at a character boundary because the peer fails the
 * connection with 1007 on a truncated sequence, which would replace the close
 * code we meant to send; for the same reason an invalid reason is dropped.
 */
size_t ws_close_body_encode(uint8_t *out, uint16_t code, slice reason)
{
	size_t n = reason.len;

	if (!ws_close_code_valid(code))
		return 0;
	out[0] = (uint8_t)(code >> 8);
	out[1] = (uint8_t)code;
	if (n > WS_CONTROL_MAX - 2) {
		n = WS_CONTROL_MAX - 2;
		while (n > 0 && ((uint8_t)reason.base[n] & 0xc0) == 0x80)
			n--;
	}
	if (n && !utf8_is_valid(reason.base, n))
		n = 0;
	if (n)
		memcpy(out + 2, reason.base, n);
	return 2 + n;
}

int ws_close_code_valid(uint16_t code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
	       (code >= 3000 && code <= 4999);
}
