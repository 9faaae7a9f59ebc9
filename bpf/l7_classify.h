/*
 * l7_classify.h - does a connection's first payload look like HTTP/1.x?
 *
 * Decided by content, not by port, on the first 8 bytes of the first payload
 * segment (either direction): a request line starts with a method and a
 * space, a status line with "HTTP/1.". Shared by the socket filter and the
 * user-space tests.
 */
#ifndef EBPFC_L7_CLASSIFY_H
#define EBPFC_L7_CLASSIFY_H

#include "capture_abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define EBPFC_L7_PROBE_LEN 8

/* Compares the first n (<= 8) bytes of b with the string s. */
#define EBPFC_PREFIX(b, s) ebpfc_prefix((b), (s), sizeof(s) - 1)

static __always_inline int ebpfc_prefix(const __u8 *b, const char *s, unsigned n)
{
#pragma unroll
	for (unsigned i = 0; i < EBPFC_L7_PROBE_LEN; i++) {
		if (i >= n)
			break;
		if (b[i] != (__u8)s[i])
			return 0;
	}
	return 1;
}

static __always_inline int ebpfc_looks_like_http(const __u8 b[EBPFC_L7_PROBE_LEN])
{
	switch (b[0]) {
	case 'H':
		return EBPFC_PREFIX(b, "HTTP/1.") || EBPFC_PREFIX(b, "HEAD ");
	case 'G':
		return EBPFC_PREFIX(b, "GET ");
	case 'P':
		return EBPFC_PREFIX(b, "POST ") || EBPFC_PREFIX(b, "PUT ") ||
		       EBPFC_PREFIX(b, "PATCH ");
	case 'D':
		return EBPFC_PREFIX(b, "DELETE ");
	case 'O':
		return EBPFC_PREFIX(b, "OPTIONS ");
	case 'C':
		return EBPFC_PREFIX(b, "CONNECT ");
	case 'T':
		return EBPFC_PREFIX(b, "TRACE ");
	default:
		return 0;
	}
}

#endif /* EBPFC_L7_CLASSIFY_H */
