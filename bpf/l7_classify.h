/*
 * l7_classify.h - does a connection's payload look like HTTP/1.x?
 *
 * Decided by content, not by port, on the first EBPFC_L7_PROBE_LEN bytes of a
 * payload segment (either direction):
 *   - a status line starts with "HTTP/1.";
 *   - a request line (RFC 9112 3) starts with a method, SP and a request
 *     target. The method is any RFC 9110 token (tchar: letters, digits and
 *     !#$%&'*+-.^_`|~) of at most EBPFC_L7_METHOD_MAX characters, as user
 *     space reads it: GET, QUERY, WebDAV's PROPFIND, a private one. The target
 *     must begin the way RFC 9112 3.2 allows: "/" (origin-form), a scheme and
 *     "://" (absolute-form), anything visible after CONNECT (authority-form),
 *     "*" after OPTIONS (asterisk-form). That keeps out line protocols whose
 *     commands are tokens too (SMTP's "EHLO x", memcached's "get key", Redis
 *     inline commands, FTP, POP3, SIP's "INVITE sip:...") and the HTTP/2
 *     preface ("PRI * HTTP/2.0").
 *
 * Shared by the socket filter and the user-space tests. The loops are bounded
 * by constants (the verifier walks them once per path).
 */
#ifndef EBPFC_L7_CLASSIFY_H
#define EBPFC_L7_CLASSIFY_H

#include "capture_abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* A payload shorter than this is not classified (too little to tell). */
#define EBPFC_L7_PROBE_MIN 8
/* Bytes of a payload the classifier reads at most. */
#define EBPFC_L7_PROBE_LEN 32
/* The longest method token (user space: kHttpMethodMax). */
#define EBPFC_L7_METHOD_MAX 20

/* RFC 9110 5.6.2 tchar, as a bitmap over ASCII (bit c of word c / 64). */
#define EBPFC_TCHAR_LO 0x03ff6cfa00000000ULL /* !#$%&'*+-. 0-9 */
#define EBPFC_TCHAR_HI 0x57ffffffc7fffffeULL /* A-Z ^_` a-z | ~ */

static __always_inline int ebpfc_is_tchar(__u8 c)
{
	if (c >= 128)
		return 0;
	return (int)(((c < 64 ? EBPFC_TCHAR_LO : EBPFC_TCHAR_HI) >> (c & 63)) & 1);
}

static __always_inline int ebpfc_is_alpha(__u8 c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* RFC 3986 scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
static __always_inline int ebpfc_is_scheme_char(__u8 c)
{
	return ebpfc_is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
}

enum ebpfc_l7_scan {
	EBPFC_SCAN_METHOD,
	EBPFC_SCAN_TARGET,  /* the first byte of the target */
	EBPFC_SCAN_SCHEME,  /* absolute-form: the scheme, up to ':' */
	EBPFC_SCAN_SLASH1,  /* "//" after the scheme's ':' */
	EBPFC_SCAN_SLASH2,
};

/*
 * Classifies a payload from its first n bytes (n <= EBPFC_L7_PROBE_LEN):
 * EBPFC_L7_HTTP, EBPFC_L7_OTHER, or EBPFC_L7_UNKNOWN when the n bytes are a
 * prefix of both (the segment was too short to tell).
 */
static __always_inline __u32 ebpfc_l7_classify(const __u8 *b, __u32 n)
{
	static const char status[] = "HTTP/1.";
	__u32 state = EBPFC_SCAN_METHOD;
	int connect = 0, options = 0;

	if (n == 0)
		return EBPFC_L7_UNKNOWN;
	if (b[0] == 'H' && n >= 2 && b[1] == 'T') {
		/* "HT" is no method prefix that could still be a status line */
#pragma unroll
		for (__u32 i = 2; i < sizeof(status) - 1; i++) {
			if (i >= n)
				return EBPFC_L7_UNKNOWN;
			if (b[i] != (__u8)status[i])
				break;
			if (i == sizeof(status) - 2)
				return EBPFC_L7_HTTP;
		}
	}
#pragma unroll
	for (__u32 i = 0; i < EBPFC_L7_PROBE_LEN; i++) {
		__u8 c;

		if (i >= n)
			return EBPFC_L7_UNKNOWN;
		c = b[i];
		switch (state) {
		case EBPFC_SCAN_METHOD:
			if (c == ' ') {
				if (i == 0)
					return EBPFC_L7_OTHER;
				connect = i == 7 && b[0] == 'C' && b[1] == 'O' && b[2] == 'N' &&
					  b[3] == 'N' && b[4] == 'E' && b[5] == 'C' && b[6] == 'T';
				options = i == 7 && b[0] == 'O' && b[1] == 'P' && b[2] == 'T' &&
					  b[3] == 'I' && b[4] == 'O' && b[5] == 'N' && b[6] == 'S';
				state = EBPFC_SCAN_TARGET;
			} else if (i >= EBPFC_L7_METHOD_MAX || !ebpfc_is_tchar(c)) {
				return EBPFC_L7_OTHER;
			}
			break;
		case EBPFC_SCAN_TARGET:
			if (c == '/' || (c == '*' && options))
				return EBPFC_L7_HTTP;
			if (connect)
				return c > ' ' && c < 0x7f ? EBPFC_L7_HTTP : EBPFC_L7_OTHER;
			if (!ebpfc_is_alpha(c))
				return EBPFC_L7_OTHER;
			state = EBPFC_SCAN_SCHEME;
			break;
		case EBPFC_SCAN_SCHEME:
			if (c == ':')
				state = EBPFC_SCAN_SLASH1;
			else if (!ebpfc_is_scheme_char(c))
				return EBPFC_L7_OTHER;
			break;
		case EBPFC_SCAN_SLASH1:
			if (c != '/')
				return EBPFC_L7_OTHER;
			state = EBPFC_SCAN_SLASH2;
			break;
		default:
			return c == '/' ? EBPFC_L7_HTTP : EBPFC_L7_OTHER;
		}
	}
	return EBPFC_L7_OTHER; /* no decision in EBPFC_L7_PROBE_LEN bytes */
}

/*
 * Does a payload look like PostgreSQL's wire protocol (protocol 3.0)?
 *
 * b holds the payload's first n bytes (n <= EBPFC_L7_PROBE_LEN) and must have
 * EBPFC_L7_BUF_LEN readable bytes (the filter's scratch buffer; reads past n
 * are masked into it and never decide anything); payload_len is the whole
 * segment's. at_start: these are the direction's first bytes.
 *  - At a direction's start a client sends a startup packet: a length, then
 *    the protocol version 3.0 (196608) and "name\0value\0" pairs, or an
 *    SSLRequest (80877103), a GSSENCRequest (80877104), both 8 bytes long, or
 *    a CancelRequest (80877102, 16 bytes).
 *  - Anywhere (a connection first seen mid-stream): a chain of message
 *    headers - a type byte of the protocol and a 4-byte length below 16 MiB,
 *    fixed-size messages with their sizes - that ends exactly at the
 *    segment's end, or of at least two messages, or a Query ('Q') whose
 *    visible text is printable.
 */
#define EBPFC_L7_BUF_LEN 64
#define EBPFC_L7_BUF_MASK (EBPFC_L7_BUF_LEN - 1)
#define EBPFC_PG_PROTOCOL_3 0x00030000u
#define EBPFC_PG_SSL_REQUEST 80877103u
#define EBPFC_PG_GSSENC_REQUEST 80877104u
#define EBPFC_PG_CANCEL_REQUEST 80877102u
/* The longest startup packet the classifier believes (PostgreSQL: 10000). */
#define EBPFC_PG_STARTUP_MAX 10000u
/* Message headers the classifier walks at most. */
#define EBPFC_PG_PROBE_MESSAGES 3

static __always_inline __u32 ebpfc_be32(const __u8 *b, __u32 off)
{
	return ((__u32)b[off & EBPFC_L7_BUF_MASK] << 24) |
	       ((__u32)b[(off + 1) & EBPFC_L7_BUF_MASK] << 16) |
	       ((__u32)b[(off + 2) & EBPFC_L7_BUF_MASK] << 8) | b[(off + 3) & EBPFC_L7_BUF_MASK];
}

/* Message types of protocol 3.0, either direction. Returns the length a
 * fixed-size message must have, 0 for any, -1 for no such type. */
static __always_inline int ebpfc_pg_type_len(__u8 t)
{
	switch (t) {
	case '1': case '2': case '3': case 'n': case 's': case 'I': case 'c':
		return 4; /* Parse/Bind/CloseComplete, NoData, PortalSuspended,
			   * EmptyQueryResponse, CopyDone */
	case 'Z':
		return 5; /* ReadyForQuery */
	case 'Q': case 'P': case 'B': case 'E': case 'D': case 'C': case 'H': case 'S':
	case 'X': case 'F': case 'd': case 'f': case 'p': case 'R': case 'K': case 'T':
	case 'N': case 't': case 'A': case 'G': case 'W': case 'v': case 'V':
		return 0;
	default:
		return -1;
	}
}

static __always_inline int ebpfc_pg_printable(__u8 c)
{
	return (c >= ' ' && c < 0x7f) || c == '\t' || c == '\n' || c == '\r' || c >= 0x80;
}

static __always_inline int ebpfc_pg_classify(const __u8 *b, __u32 n, __u32 payload_len,
					     int at_start)
{
	__u32 off = 0, msgs = 0;

	if (n > EBPFC_L7_PROBE_LEN)
		n = EBPFC_L7_PROBE_LEN;
	if (at_start && n >= 8) {
		__u32 len = ebpfc_be32(b, 0), code = ebpfc_be32(b, 4);

		if ((code == EBPFC_PG_SSL_REQUEST || code == EBPFC_PG_GSSENC_REQUEST) && len == 8)
			return 1;
		if (code == EBPFC_PG_CANCEL_REQUEST && len == 16)
			return 1;
		if (code == EBPFC_PG_PROTOCOL_3 && len > 8 && len <= EBPFC_PG_STARTUP_MAX &&
		    (n == 8 || (b[8] >= 'a' && b[8] <= 'z') || b[8] == '_' || b[8] == 0))
			return 1;
	}
#pragma unroll
	for (__u32 k = 0; k < EBPFC_PG_PROBE_MESSAGES; k++) {
		__u8 t;
		__u32 len;
		int fixed;

		if (off + 5 > n)
			break; /* the next header is not in view */
		t = b[off & EBPFC_L7_BUF_MASK];
		fixed = ebpfc_pg_type_len(t);
		len = ebpfc_be32(b, off + 1);
		if (fixed < 0 || len < 4 || len >= (1u << 24))
			return 0;
		if (fixed > 0 && len != (__u32)fixed)
			return 0;
		if (t == 'Z' && off + 5 < n) {
			__u8 st = b[(off + 5) & EBPFC_L7_BUF_MASK];

			if (st != 'I' && st != 'T' && st != 'E')
				return 0;
		}
		if (k == 0 && t == 'Q') {
			/* the query's text, as far as it is in view */
			__u32 seen = 0;

#pragma unroll
			for (__u32 i = 5; i < EBPFC_L7_PROBE_LEN; i++) {
				if (i >= n || i >= 1 + len)
					break;
				if (!ebpfc_pg_printable(b[i]))
					return b[i] == 0 && i == len && seen > 0;
				seen++;
			}
			if (seen >= 3)
				return 1;
		}
		msgs++;
		off += 1 + len;
		if (off == payload_len)
			return 1; /* the segment is whole messages */
		if (off > payload_len)
			return msgs >= 2;
	}
	return msgs >= 2;
}

/*
 * Does a payload look like a Redis client's command (RESP2 or RESP3)? A
 * command is an array of bulk strings: "*<n>\r\n$<len>\r\n<name>\r\n...",
 * n of 1 to 7 digits, len of 1 to 4 digits (a name of at most 9999 bytes),
 * and the name's bytes in view letters (GET, hset, CLIENT) or '_' / '|'
 * / '-' / '.' / ':' after the first (module commands: JSON.SET, FT.SEARCH).
 * Anywhere in the client's stream: each command starts a segment often
 * enough (a pipelined batch starts with one). Server replies ("+OK", ":1")
 * are too short and too common in other protocols to decide on. Inline
 * commands ("PING\r\n") are not recognised (HTTP's classifier keeps those
 * out of HTTP; they look like many line protocols).
 * b must have EBPFC_L7_BUF_LEN readable bytes (as for ebpfc_pg_classify).
 */
#define EBPFC_REDIS_COUNT_DIGITS 7
#define EBPFC_REDIS_LEN_DIGITS 4

static __always_inline int ebpfc_redis_name_char(__u8 c, int first)
{
	if (ebpfc_is_alpha(c))
		return 1;
	return !first && (c == '_' || c == '|' || c == '-' || c == '.' || c == ':');
}

static __always_inline int ebpfc_redis_classify(const __u8 *b, __u32 n)
{
	__u32 i = 1, count_digits = 0, len_digits = 0, name_len = 0;

	if (n > EBPFC_L7_PROBE_LEN)
		n = EBPFC_L7_PROBE_LEN;
	if (n < EBPFC_L7_PROBE_MIN || b[0] != '*')
		return 0;
#pragma unroll
	for (__u32 k = 0; k < EBPFC_REDIS_COUNT_DIGITS + 1; k++) {
		__u8 c = b[i & EBPFC_L7_BUF_MASK];

		if (c >= '0' && c <= '9') {
			if (count_digits == 0 && c == '0')
				return 0;
			count_digits++;
			i++;
		} else {
			break;
		}
	}
	if (count_digits == 0 || count_digits > EBPFC_REDIS_COUNT_DIGITS || i + 3 > n)
		return 0;
	if (b[i & EBPFC_L7_BUF_MASK] != '\r' || b[(i + 1) & EBPFC_L7_BUF_MASK] != '\n' ||
	    b[(i + 2) & EBPFC_L7_BUF_MASK] != '$')
		return 0;
	i += 3;
#pragma unroll
	for (__u32 k = 0; k < EBPFC_REDIS_LEN_DIGITS + 1; k++) {
		__u8 c = b[i & EBPFC_L7_BUF_MASK];

		if (i >= n)
			return 0;
		if (c >= '0' && c <= '9') {
			if (len_digits == 0 && c == '0')
				return 0;
			name_len = name_len * 10 + (c - '0');
			len_digits++;
			i++;
		} else {
			break;
		}
	}
	if (len_digits == 0 || len_digits > EBPFC_REDIS_LEN_DIGITS || i + 2 > n)
		return 0;
	if (b[i & EBPFC_L7_BUF_MASK] != '\r' || b[(i + 1) & EBPFC_L7_BUF_MASK] != '\n')
		return 0;
	i += 2;
	/* the name, as far as it is in view (at least one byte of it) */
	if (i >= n)
		return 0;
#pragma unroll
	for (__u32 k = 0; k < EBPFC_L7_PROBE_LEN; k++) {
		__u32 at = i + k;

		if (at >= n)
			break;
		if (k == name_len)
			return b[at & EBPFC_L7_BUF_MASK] == '\r';
		if (!ebpfc_redis_name_char(b[at & EBPFC_L7_BUF_MASK], k == 0))
			return 0;
	}
	return 1;
}

#endif /* EBPFC_L7_CLASSIFY_H */
