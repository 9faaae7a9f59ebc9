/*
 * frame_parse.h - decode an Ethernet frame down to its TCP header.
 *
 * The same code runs in the kernel (the socket filter, with
 * bpf_skb_load_bytes) and in user space (unit tests and the libFuzzer target,
 * with a bounds-checked memcpy). The includer defines
 *
 *     EBPFC_LOAD(ctx, offset, dst, len)  ->  0 on success, < 0 if the frame
 *                                           is shorter than offset + len
 *
 * and passes the frame's first bytes (its head: up to EBPFC_HEAD_LEN of
 * them, read at once). Headers that lie inside the head are read there; only
 * headers past it (IP options, IPv6 extension headers) cost an EBPFC_LOAD.
 * In the kernel every helper call is a call and a return through the
 * mitigation thunks, so one load instead of three is most of the parser's
 * cost per frame.
 *
 * Every read is bounds-checked against the head or goes through EBPFC_LOAD,
 * every length taken from the frame is checked against the frame before use,
 * and every loop has a constant bound.
 */
#ifndef EBPFC_FRAME_PARSE_H
#define EBPFC_FRAME_PARSE_H

#include "capture_abi.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define EBPFC_ETH_HLEN		   14
#define EBPFC_ETH_P_IP		   0x0800
#define EBPFC_ETH_P_IPV6	   0x86DD
#define EBPFC_ETH_P_8021Q	   0x8100
#define EBPFC_ETH_P_8021AD	   0x88A8
#define EBPFC_MAX_VLAN_TAGS	   2
#define EBPFC_MAX_IPV6_EXT_HEADERS 6

#define EBPFC_TCP_FIN 0x01
#define EBPFC_TCP_SYN 0x02
#define EBPFC_TCP_RST 0x04
#define EBPFC_TCP_PSH 0x08
#define EBPFC_TCP_ACK 0x10

/*
 * Bytes of a frame read at once: Ethernet with two VLAN tags, IPv4 with
 * options or IPv6, and TCP's fixed header all fit in the first 102 bytes; the
 * common case (IPv4, no tag, no option) in 54.
 */
#define EBPFC_HEAD_LEN 128

enum ebpfc_parse_result {
	EBPFC_PARSE_TCP = 0,
	EBPFC_PARSE_NOT_TCP = 1,
	EBPFC_PARSE_FRAGMENT = 2,
	EBPFC_PARSE_MALFORMED = 3,
};

/* One decoded TCP segment, already keyed by its connection. */
struct ebpfc_packet {
	struct ebpfc_flow_key key;
	__u32 seq;
	__u32 ack;
	__u32 payload_off; /* offset of the TCP payload in the frame */
	__u32 payload_len;
	__u8 sender; /* endpoint index (in key) of the sender */
	__u8 flags;  /* TCP flags byte */
	__u16 window; /* the receive window field, unscaled */
	__u8 pad[4];  /* to the key's 8-byte alignment */
};

EBPFC_STATIC_ASSERT(sizeof(struct ebpfc_packet) == 64, "no implicit padding");

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define EBPFC_NTOHLL(x) __builtin_bswap64(x)
#else
#define EBPFC_NTOHLL(x) (x)
#endif

/* The big-endian 64-bit word at a (8-byte aligned within its flow key). */
static __always_inline __u64 ebpfc_be64(const __u8 *a)
{
	__u64 w;

	__builtin_memcpy(&w, __builtin_assume_aligned(a, 8), sizeof(w));
	return EBPFC_NTOHLL(w);
}

/*
 * Orders the two endpoints of a key by (address, port), addresses compared
 * bytewise like memcmp (as two big-endian words); returns < 0, 0, > 0.
 */
static __always_inline int ebpfc_endpoint_cmp(const struct ebpfc_flow_key *k)
{
#pragma unroll
	for (int i = 0; i < EBPFC_ADDR_LEN; i += 8) {
		__u64 a = ebpfc_be64(&k->addr[0][i]);
		__u64 b = ebpfc_be64(&k->addr[1][i]);

		if (a != b)
			return a < b ? -1 : 1;
	}
	if (k->port[0] != k->port[1])
		return k->port[0] < k->port[1] ? -1 : 1;
	return 0;
}

/* Swaps endpoint 0 and 1 of a key in place. */
static __always_inline void ebpfc_swap_endpoints(struct ebpfc_flow_key *k)
{
	__u8 tmp[EBPFC_ADDR_LEN];
	__u16 port = k->port[0];

	__builtin_memcpy(tmp, k->addr[0], EBPFC_ADDR_LEN);
	__builtin_memcpy(k->addr[0], k->addr[1], EBPFC_ADDR_LEN);
	__builtin_memcpy(k->addr[1], tmp, EBPFC_ADDR_LEN);
	k->port[0] = k->port[1];
	k->port[1] = port;
}

/*
 * The len bytes of the frame at off: inside the head (head_len bytes of it)
 * when they lie there, else copied into buf with EBPFC_LOAD. NULL if the
 * frame is shorter than off + len.
 */
static __always_inline const __u8 *ebpfc_frame_bytes(void *ctx, const __u8 *head, __u32 head_len,
						   __u32 off, __u8 *buf, __u32 len)
{
	if (off <= EBPFC_HEAD_LEN - len && off + len <= head_len)
		return head + off;
	if (EBPFC_LOAD(ctx, off, buf, len) < 0)
		return 0;
	return buf;
}

/*
 * Decodes the frame in ctx (frame_len bytes, starting at the Ethernet header;
 * head holds its first head_len of them) into *p. Returns an enum
 * ebpfc_parse_result; *p is meaningful only for EBPFC_PARSE_TCP. The addresses are read straight into p->key (source into
 * endpoint 0) and swapped at the end if the source is the larger endpoint.
 */
static __always_inline int ebpfc_parse_frame(void *ctx, __u32 frame_len, const __u8 *head,
					     __u32 head_len, struct ebpfc_packet *p)
{
	__u8 buf[2 * EBPFC_ADDR_LEN]; /* a header past the head, copied */
	const __u8 *hdr; /* the fixed part of the header being decoded */
	__u16 proto;
	__u32 off = EBPFC_ETH_HLEN;
	__u32 l4_off;
	__u32 l4_end;
	__u32 doff;

	hdr = ebpfc_frame_bytes(ctx, head, head_len, 12, buf, 2);
	if (!hdr)
		return EBPFC_PARSE_MALFORMED;
	proto = ((__u16)hdr[0] << 8) | hdr[1];

#pragma unroll
	for (int i = 0; i < EBPFC_MAX_VLAN_TAGS; i++) {
		if (proto != EBPFC_ETH_P_8021Q && proto != EBPFC_ETH_P_8021AD)
			break;
		/* tag control (2 bytes) then the encapsulated type (2 bytes) */
		hdr = ebpfc_frame_bytes(ctx, head, head_len, off + 2, buf, 2);
		if (!hdr)
			return EBPFC_PARSE_MALFORMED;
		proto = ((__u16)hdr[0] << 8) | hdr[1];
		off += 4;
	}

	__builtin_memset(&p->key, 0, sizeof(p->key));
	if (proto == EBPFC_ETH_P_IP) {
		__u32 ihl;
		__u32 tot_len;

		hdr = ebpfc_frame_bytes(ctx, head, head_len, off, buf, 20);
		if (!hdr)
			return EBPFC_PARSE_MALFORMED;
		if ((hdr[0] >> 4) != 4)
			return EBPFC_PARSE_MALFORMED;
		ihl = (__u32)(hdr[0] & 0x0f) * 4;
		tot_len = ((__u32)hdr[2] << 8) | hdr[3];
		if (ihl < 20 || tot_len < ihl || off + tot_len > frame_len)
			return EBPFC_PARSE_MALFORMED;
		/* more-fragments flag or a fragment offset */
		if ((((__u32)hdr[6] << 8 | hdr[7]) & 0x3fff) != 0)
			return EBPFC_PARSE_FRAGMENT;
		if (hdr[9] != 6)
			return EBPFC_PARSE_NOT_TCP;
		p->key.addr[0][10] = 0xff;
		p->key.addr[0][11] = 0xff;
		p->key.addr[1][10] = 0xff;
		p->key.addr[1][11] = 0xff;
#pragma unroll
		for (int i = 0; i < 4; i++) {
			p->key.addr[0][12 + i] = hdr[12 + i];
			p->key.addr[1][12 + i] = hdr[16 + i];
		}
		p->key.family = 4;
		l4_off = off + ihl;
		l4_end = off + tot_len;
	} else if (proto == EBPFC_ETH_P_IPV6) {
		__u32 payload_len;
		__u8 next;

		hdr = ebpfc_frame_bytes(ctx, head, head_len, off, buf, 8);
		if (!hdr)
			return EBPFC_PARSE_MALFORMED;
		if ((hdr[0] >> 4) != 6)
			return EBPFC_PARSE_MALFORMED;
		payload_len = ((__u32)hdr[4] << 8) | hdr[5];
		/* a zero payload length means a jumbogram: not on a bridge */
		if (payload_len == 0 || off + 40 + payload_len > frame_len)
			return EBPFC_PARSE_MALFORMED;
		next = hdr[6];
		hdr = ebpfc_frame_bytes(ctx, head, head_len, off + 8, buf, 2 * EBPFC_ADDR_LEN);
		if (!hdr)
			return EBPFC_PARSE_MALFORMED;
		__builtin_memcpy(p->key.addr, hdr, 2 * EBPFC_ADDR_LEN);
		l4_end = off + 40 + payload_len;
		off += 40;

#pragma unroll
		for (int i = 0; i < EBPFC_MAX_IPV6_EXT_HEADERS; i++) {
			__u32 hdr_len;

			if (next == 6)
				break;
			if (next == 44)
				return EBPFC_PARSE_FRAGMENT;
			if (next != 0 && next != 43 && next != 60 && next != 51)
				return EBPFC_PARSE_NOT_TCP;
			hdr = ebpfc_frame_bytes(ctx, head, head_len, off, buf, 2);
			if (!hdr)
				return EBPFC_PARSE_MALFORMED;
			/* AH counts 4-byte units minus 2, the others 8-byte units minus 1 */
			if (next == 51)
				hdr_len = ((__u32)hdr[1] + 2) * 4;
			else
				hdr_len = ((__u32)hdr[1] + 1) * 8;
			next = hdr[0];
			off += hdr_len;
			if (off > l4_end)
				return EBPFC_PARSE_MALFORMED;
		}
		if (next != 6)
			return EBPFC_PARSE_NOT_TCP;
		p->key.family = 6;
		l4_off = off;
	} else {
		return EBPFC_PARSE_NOT_TCP;
	}

	if (l4_off + 20 > l4_end)
		return EBPFC_PARSE_MALFORMED;
	hdr = ebpfc_frame_bytes(ctx, head, head_len, l4_off, buf, 20);
	if (!hdr)
		return EBPFC_PARSE_MALFORMED;
	doff = (__u32)(hdr[12] >> 4) * 4;
	if (doff < 20 || l4_off + doff > l4_end)
		return EBPFC_PARSE_MALFORMED;

	p->key.port[0] = ((__u16)hdr[0] << 8) | hdr[1];
	p->key.port[1] = ((__u16)hdr[2] << 8) | hdr[3];
	p->seq = ((__u32)hdr[4] << 24) | ((__u32)hdr[5] << 16) | ((__u32)hdr[6] << 8) | hdr[7];
	p->ack = ((__u32)hdr[8] << 24) | ((__u32)hdr[9] << 16) | ((__u32)hdr[10] << 8) | hdr[11];
	p->flags = hdr[13];
	p->window = ((__u16)hdr[14] << 8) | hdr[15];
	p->payload_off = l4_off + doff;
	p->payload_len = l4_end - (l4_off + doff);
	__builtin_memset(p->pad, 0, sizeof(p->pad));
	p->sender = 0;
	if (ebpfc_endpoint_cmp(&p->key) > 0) {
		ebpfc_swap_endpoints(&p->key);
		p->sender = 1;
	}
	return EBPFC_PARSE_TCP;
}

#endif /* EBPFC_FRAME_PARSE_H */
