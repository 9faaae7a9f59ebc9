/*
 * flow_account.h - account one TCP segment to its connection.
 *
 * Shared by the socket filter and the user-space unit tests. Socket filters
 * cannot take a bpf_spin_lock, and the two directions of one connection are
 * often processed on two CPUs at once, so every update after ebpfc_flow_init
 * is an atomic operation (BPF atomics, -mcpu=v3; GCC's __sync builtins in user
 * space): counters are added, flags or-ed, the sequence high-water mark and
 * the set-once timestamps moved by compare-and-swap, and exactly one CPU wins
 * the OPEN -> CLOSED transition.
 */
#ifndef EBPFC_FLOW_ACCOUNT_H
#define EBPFC_FLOW_ACCOUNT_H

#include "frame_parse.h"

/* A jump in sequence space larger than this is a resynchronisation, not a gap. */
#define EBPFC_MAX_SEQ_GAP (16u << 20)
/* Compare-and-swap retries before a contended update gives up (bounded loops). */
#define EBPFC_CAS_TRIES 4

enum ebpfc_account_result {
	EBPFC_ACCOUNTED = 0,  /* counted; the flow stays open */
	EBPFC_CLOSED_NOW = 1, /* counted; this segment closed the flow */
	EBPFC_LATE = 2,	      /* the flow had already closed: not counted */
	EBPFC_REOPENED = 3,   /* a new connection on the four-tuple of one that still looked
			       * open (its close was not seen): *old holds the old record,
			       * closed with EBPFC_CLOSE_REOPENED; the new one starts with
			       * this segment */
	EBPFC_RESTARTED = 4,  /* a new connection (this SYN) on the four-tuple of a closed
			       * flow whose entry user space had not removed yet: the
			       * entry now holds the new connection */
};

/* Should a segment of a connection we do not know start tracking it? */
static __always_inline int ebpfc_starts_flow(const struct ebpfc_packet *p)
{
	return (p->flags & EBPFC_TCP_SYN) || p->payload_len > 0;
}

/* Starts a flow at segment p (which is then passed to ebpfc_flow_account). */
static __always_inline void ebpfc_flow_init(struct ebpfc_flow_stats *s,
					    const struct ebpfc_packet *p, __u64 now_ns)
{
	__builtin_memset(s, 0, sizeof(*s));
	s->first_ns = now_ns;
	s->last_ns = now_ns;
	s->rst_from = EBPFC_NO_ENDPOINT;
	if ((p->flags & (EBPFC_TCP_SYN | EBPFC_TCP_ACK)) == EBPFC_TCP_SYN) {
		s->client = p->sender; /* the side that opens */
	} else if (p->flags & EBPFC_TCP_SYN) {
		s->client = p->sender ^ 1; /* a SYN-ACK answers the client */
	} else {
		/* first seen mid-stream: clients use ephemeral (higher) ports */
		s->mid_stream = 1;
		if (p->key.port[0] != p->key.port[1])
			s->client = p->key.port[0] > p->key.port[1] ? 0 : 1;
		else
			s->client = p->sender;
	}
}

/*
 * Is p, on an open flow, the SYN of a new connection on the same four-tuple?
 * A sender that already opened with another initial sequence number, or a
 * SYN on a flow first seen mid-stream, means the old connection ended unseen.
 * A retransmitted SYN carries the same sequence number.
 */
static __always_inline int ebpfc_is_reopening(const struct ebpfc_flow_stats *s,
					      const struct ebpfc_packet *p)
{
	const struct ebpfc_flow_dir *d = &s->dir[p->sender & 1];

	if (s->state != EBPFC_FLOW_OPEN ||
	    (p->flags & (EBPFC_TCP_SYN | EBPFC_TCP_ACK | EBPFC_TCP_RST)) != EBPFC_TCP_SYN)
		return 0;
	if (d->flags & EBPFC_TCP_SYN)
		return d->isn != p->seq;
	return s->mid_stream;
}

/* Sets a timestamp that is written once. */
static __always_inline void ebpfc_set_once(__u64 *field, __u64 now_ns)
{
	if (*field == 0)
		__sync_val_compare_and_swap(field, 0, now_ns);
}

/*
 * Moves d's sequence high-water mark to cover [data_seq, data_seq + len) and
 * counts the bytes that were new, each sequence number once.
 */
static __always_inline void ebpfc_account_payload(struct ebpfc_flow_dir *d, __u32 data_seq,
						  __u32 len)
{
	__u32 end = data_seq + len;

	if (len == 0)
		return;
#pragma unroll
	for (int i = 0; i < EBPFC_CAS_TRIES; i++) {
		__u64 old = d->seq;
		__u32 fresh;

		if (!(old & EBPFC_SEQ_VALID)) {
			fresh = len;
		} else {
			__s32 advance = (__s32)(end - (__u32)old);

			if (advance <= 0) {
				__sync_fetch_and_add(&d->retransmits, 1); /* nothing new */
				return;
			}
			fresh = (__u32)advance;
			if (fresh < len)
				__sync_fetch_and_add(&d->retransmits, 1); /* overlaps */
			else if (fresh - len > EBPFC_MAX_SEQ_GAP)
				fresh = len; /* not a gap we believe in: resynchronise */
		}
		if (__sync_val_compare_and_swap(&d->seq, old, EBPFC_SEQ_VALID | end) == old) {
			__sync_fetch_and_add(&d->bytes, fresh);
			return;
		}
	}
	/* lost every race: still count the segment, without the dedup */
	__sync_fetch_and_add(&d->bytes, len);
}

/* Closes the flow if it is open; returns 1 for the one caller that did. */
static __always_inline int ebpfc_close(struct ebpfc_flow_stats *s, __u8 reason, __u8 rst_from)
{
	if (__sync_val_compare_and_swap(&s->state, EBPFC_FLOW_OPEN, EBPFC_FLOW_CLOSED) !=
	    EBPFC_FLOW_OPEN)
		return 0;
	s->close_reason = reason;
	s->rst_from = rst_from;
	return 1;
}

/*
 * Accounts segment p, seen at now_ns, to the flow s. Returns an
 * enum ebpfc_account_result; for EBPFC_REOPENED the old record is copied to
 * *old first.
 */
static __always_inline int ebpfc_flow_account(struct ebpfc_flow_stats *s,
					      const struct ebpfc_packet *p, __u64 now_ns,
					      struct ebpfc_flow_stats *old)
{
	__u8 from = p->sender & 1;
	__u8 flags = p->flags;
	struct ebpfc_flow_dir *d;
	__u32 data_seq = p->seq;
	__u32 seen;

	int reopened = 0;
	int restarted = 0;

	if (ebpfc_is_reopening(s, p)) {
		__builtin_memcpy(old, s, sizeof(*old));
		old->state = EBPFC_FLOW_CLOSED;
		old->close_reason = EBPFC_CLOSE_REOPENED;
		ebpfc_flow_init(s, p, now_ns);
		reopened = 1;
	} else if (s->state != EBPFC_FLOW_OPEN) {
		/*
		 * The same four-tuple opening again (before user space removed the
		 * closed entry) is a new connection.
		 */
		if ((flags & (EBPFC_TCP_SYN | EBPFC_TCP_ACK | EBPFC_TCP_RST)) != EBPFC_TCP_SYN)
			return EBPFC_LATE;
		ebpfc_flow_init(s, p, now_ns);
		restarted = 1;
	}
	d = &s->dir[from];

	__sync_fetch_and_add(&d->packets, 1);
	/* most segments repeat flags already seen: skip the locked or for them */
	seen = d->flags;
	if ((seen & flags) != flags)
		seen = __sync_fetch_and_or(&d->flags, (__u32)flags);
	seen |= flags;
	if (now_ns > s->last_ns)
		s->last_ns = now_ns; /* racing CPUs store nearly equal times */

	if (flags & EBPFC_TCP_SYN) {
		data_seq = p->seq + 1; /* the SYN takes one sequence number */
		if (d->seq == 0) {
			__sync_val_compare_and_swap(&d->seq, 0, EBPFC_SEQ_VALID | data_seq);
			d->isn = p->seq;
		} else if ((__u32)d->seq == data_seq && p->payload_len == 0)
			__sync_fetch_and_add(&d->retransmits, 1); /* a repeated SYN */
		if (!(flags & EBPFC_TCP_ACK)) {
			if (from == s->client)
				ebpfc_set_once(&s->syn_ns, now_ns);
		} else if (from != s->client) {
			ebpfc_set_once(&s->synack_ns, now_ns);
		}
	} else if ((flags & EBPFC_TCP_ACK) && from == s->client && s->synack_ns != 0) {
		ebpfc_set_once(&s->established_ns, now_ns);
	}

	ebpfc_account_payload(d, data_seq, p->payload_len);
	/* A zero window (whatever the scale): this endpoint's receive buffer is full.
	 * Resets carry a zero window too; they say nothing about the buffer. */
	if (p->window == 0 && !(flags & (EBPFC_TCP_SYN | EBPFC_TCP_RST)))
		__sync_fetch_and_add(&d->zero_windows, 1);

	if (flags & EBPFC_TCP_RST)
		return ebpfc_close(s, EBPFC_CLOSE_RST, from) ? EBPFC_CLOSED_NOW : EBPFC_ACCOUNTED;
	/* both FINs seen, and now the ACK that acknowledges the last one */
	if ((seen & EBPFC_TCP_FIN) && (s->dir[from ^ 1].flags & EBPFC_TCP_FIN) &&
	    (flags & (EBPFC_TCP_FIN | EBPFC_TCP_ACK)) == EBPFC_TCP_ACK && p->payload_len == 0)
		return ebpfc_close(s, EBPFC_CLOSE_FIN, EBPFC_NO_ENDPOINT) ? EBPFC_CLOSED_NOW
									  : EBPFC_ACCOUNTED;
	return reopened ? EBPFC_REOPENED : restarted ? EBPFC_RESTARTED : EBPFC_ACCOUNTED;
}

/*
 * Routed capture (no bridge: each pod's veth ends in the host's IP stack).
 * The filter runs on a packet socket on every pod's host-side veth and sees
 * each frame in both directions there: coming in from the pod, and going out
 * to it (PACKET_OUTGOING). A frame between two pods of the node crosses two
 * veths: it comes in at the sender's and goes out at the receiver's. Which
 * copy counts is decided per direction of each connection, from the flow
 * itself:
 *
 *   - a frame coming in from a captured interface always counts, and marks
 *     its sender's direction as counted there (ebpfc_routed_mark_in);
 *   - a frame going out counts unless its sender's direction is so marked
 *     (ebpfc_routed_copy): then it is the second copy of a frame already
 *     counted where it came in.
 *
 * So pod to pod, each frame counts where it leaves its pod; from the host or
 * another node (which come in through no captured interface), where it goes
 * out to its pod. No list of pod addresses is needed. A connection whose
 * frames are rewritten on the way (a Service's DNAT, the reverse of it on the
 * replies) is two connections here, the client's view and the server's, each
 * frame once in each; a direction that only ever goes out (the replies of
 * the client's view) is never marked, so it is counted there.
 */

/* Is this outgoing frame (the socket's PACKET_OUTGOING) a copy of one counted where it came in? */
static __always_inline int ebpfc_routed_copy(const struct ebpfc_flow_stats *s,
					     const struct ebpfc_packet *p, int outgoing)
{
	return outgoing && (s->counted_in & (1u << (p->sender & 1)));
}

/*
 * Marks the sender's direction as counted where it comes in. Called after
 * ebpfc_flow_account, which may have started the entry afresh (a new
 * connection on the four-tuple clears the marks with everything else).
 */
static __always_inline void ebpfc_routed_mark_in(struct ebpfc_flow_stats *s,
						 const struct ebpfc_packet *p)
{
	__u32 bit = 1u << (p->sender & 1);

	if (!(s->counted_in & bit))
		__sync_fetch_and_or(&s->counted_in, bit);
}

#endif /* EBPFC_FLOW_ACCOUNT_H */
