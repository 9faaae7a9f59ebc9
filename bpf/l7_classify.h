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

#endif /* EBPFC_L7_CLASSIFY_H */
