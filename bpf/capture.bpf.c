// SPDX-License-Identifier: GPL-2.0
/*
 * capture.bpf.c - the socket filter attached to the capture's AF_PACKET socket.
 *
 * It aggregates in the kernel: every TCP segment is accounted to its
 * connection in the `flows` hash map (exact packet and byte counts, handshake
 * times, flags; updated atomically, see flow_account.h), and user space hears about a connection
 * through the `events` ring buffer only when it closes (and, for HTTP, with
 * payload heads). If the ring buffer is full the map still
 * holds the exact counts and user space finds the closed flow on its next
 * sweep. The filter returns 0, so no frame is ever queued to the socket.
 *
 * Who removes a closed flow's entry: the filter itself for a connection
 * closed by FINs, once its close event is in the ring buffer; user space, after
 * reading the event, for a reset connection (see the close block below); the
 * sweep for one whose event was lost.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define EBPFC_LOAD(ctx, off, dst, len) bpf_skb_load_bytes((ctx), (off), (dst), (len))
#include "flow_account.h"
#include "l7_classify.h"

/* Sizes are set by user space before load; these are the defaults. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ebpfc_flow_key);
	__type(value, struct ebpfc_flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ebpfc_counters);
} counters SEC(".maps");

/* Written by user space: where each HTTP connection's parser wants payload again. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ebpfc_flow_key);
	__type(value, struct ebpfc_l7_control);
} l7_control SEC(".maps");

/*
 * User space is woken only once this many bytes of events are waiting (a
 * sixteenth of the ring buffer); it drains the ring buffer on its own every
 * few milliseconds, so at ordinary rates no event forces a wake-up. A wake-up
 * per closed connection would cost the worker a few syscalls per span, and
 * every forced one costs this CPU an interrupt (IRQ work).
 * Set by user space before load.
 */
const volatile __u64 wakeup_bytes = 1 << 20;

/* Whether to send payload heads of HTTP connections. Set by user space before load. */
const volatile __u8 send_payload = 0;
/* Whether to send the payload of PostgreSQL connections. Set by user space before load. */
const volatile __u8 send_pgsql = 0;
/* Whether to send the payload of Redis connections. Set by user space before load. */
const volatile __u8 send_redis = 0;

/*
 * Set when the capture is at a bridge's ports (user space, before load): the
 * filter then runs on one socket per port, which ignore outgoing frames, and
 * on the bridge device, where it keeps only what the host sends out. A frame
 * coming up from a port to the host was already counted at that port.
 */
const volatile __u32 bridge_ifindex = 0;
#define EBPFC_PACKET_OUTGOING 4 /* PACKET_OUTGOING in linux/if_packet.h */

/*
 * Set when the capture is at routed pod interfaces (user space, before load):
 * one socket per pod's host-side veth, seeing both directions; a frame
 * between two pods is seen twice and counted once (see ebpfc_routed_copy in
 * flow_account.h).
 */
const volatile __u8 routed = 0;

/*
 * One source's share of the flows map. A connection opened by a SYN takes an
 * entry at once and keeps it until it closes or, if it never completes its
 * handshake, until it has been idle for the idle timeout: a SYN flood from
 * one pod would fill the whole map within seconds and blind the capture to
 * every other pod's new connections. So each source (the pod's bridge port,
 * or the sender's address elsewhere) may have at most
 * max_half_open_per_source connections whose handshake has not completed,
 * counted per window of half_open_window_ns (the idle timeout, after which
 * the entries of those that never completed are gone); SYNs beyond that
 * start no flow and are counted (source_capped). 0: no cap. Set by user
 * space before load.
 */
const volatile __u32 max_half_open_per_source = 0;
const volatile __u64 half_open_window_ns = 60000000000ULL;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ebpfc_source_key);
	__type(value, struct ebpfc_source_budget);
} sources SEC(".maps");

static __always_inline void ebpfc_source_of(const struct __sk_buff *skb,
					    const struct ebpfc_packet *p,
					    struct ebpfc_source_key *k)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->ifindex = skb->ifindex;
	/* at a bridge port every frame is the pod's, whatever address it claims */
	if (bridge_ifindex != 0 && skb->ifindex != bridge_ifindex)
		return;
	__builtin_memcpy(k->addr, p->key.addr[p->sender & 1], sizeof(k->addr));
}

/*
 * Source k opens a connection (release 0: returns whether it may, counting
 * it) or one of its connections completed its handshake (release 1). A
 * global function: the verifier checks it once, on its own, instead of in
 * every path of the filter that reaches it.
 */
__noinline int ebpfc_source_step(struct ebpfc_source_key *k, __u64 now, int release)
{
	struct ebpfc_source_budget *b;
	struct ebpfc_source_budget fresh = {};

	if (!k)
		return 1;
	b = bpf_map_lookup_elem(&sources, k);
	if (release) {
		if (b)
			__sync_fetch_and_add(&b->half_open, -1);
		return 1;
	}
	if (!b) {
		fresh.window_start = now;
		fresh.half_open = 1;
		bpf_map_update_elem(&sources, k, &fresh, BPF_ANY);
		return 1;
	}
	if (now - b->window_start > half_open_window_ns || b->half_open < 0) {
		/* racy between CPUs: at worst a few connections more or less */
		b->window_start = now;
		b->half_open = 0;
	}
	if (b->half_open >= (__s32)max_half_open_per_source)
		return 0;
	__sync_fetch_and_add(&b->half_open, 1);
	return 1;
}

/* Whether the source of SYN p may open one more connection now (counted). */
static __always_inline int ebpfc_source_admits(const struct __sk_buff *skb,
					       const struct ebpfc_packet *p, __u64 now,
					       struct ebpfc_counters *c)
{
	struct ebpfc_source_key k;

	if (max_half_open_per_source == 0)
		return 1;
	ebpfc_source_of(skb, p, &k);
	if (ebpfc_source_step(&k, now, 0))
		return 1;
	c->source_capped++;
	return 0;
}

/* The connection of p completed its handshake: its source has one more to open. */
static __always_inline void ebpfc_source_release(const struct __sk_buff *skb,
						 const struct ebpfc_packet *p)
{
	struct ebpfc_source_key k;

	if (max_half_open_per_source == 0)
		return;
	ebpfc_source_of(skb, p, &k);
	ebpfc_source_step(&k, 0, 1);
}

/* A payload's first bytes, as the classifiers read them. */
struct ebpfc_l7_buf {
	__u8 b[EBPFC_L7_BUF_LEN];
};

/*
 * ebpfc_pg_classify as a global function: the verifier checks it once, on
 * its own, instead of once per path of the filter that reaches it (inlined,
 * its branches multiplied the filter's states past the verifier's bound).
 */
__noinline int ebpfc_pg_classify_buf(struct ebpfc_l7_buf *buf, __u32 n, __u32 payload_len,
				     int at_start)
{
	if (!buf)
		return 0;
	return ebpfc_pg_classify(buf->b, n, payload_len, at_start);
}

/* ebpfc_redis_classify as a global function, for the same reason. */
__noinline int ebpfc_redis_classify_buf(struct ebpfc_l7_buf *buf, __u32 n)
{
	if (!buf)
		return 0;
	return ebpfc_redis_classify(buf->b, n);
}

/* Per-CPU scratch space: the BPF stack (512 bytes) is too small for these. */
struct ebpfc_scratch {
	__u8 head[EBPFC_HEAD_LEN]; /* the frame's first bytes, read at once */
	struct ebpfc_flow_stats fresh;
	struct ebpfc_flow_stats closed;
	struct ebpfc_payload_event payload;
	struct ebpfc_l7_buf l7_head; /* a payload's first bytes, for the classifiers */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ebpfc_scratch);
} scratch SEC(".maps");

/* The entry of a connection the flows map does not hold (yet), if p may start one. */
static __always_inline struct ebpfc_flow_stats *ebpfc_create(const struct __sk_buff *skb,
							    const struct ebpfc_packet *p, __u64 now,
							    struct ebpfc_counters *c,
							    struct ebpfc_scratch *tmp)
{
	long err;

	if (!ebpfc_starts_flow(p)) {
		c->untracked++;
		return 0;
	}
	if ((p->flags & (EBPFC_TCP_SYN | EBPFC_TCP_ACK)) == EBPFC_TCP_SYN &&
	    !ebpfc_source_admits(skb, p, now, c))
		return 0;
	ebpfc_flow_init(&tmp->fresh, p, now);
	err = bpf_map_update_elem(&flows, &p->key, &tmp->fresh, BPF_NOEXIST);
	if (err == 0)
		c->flows_created++;
	else if (err != -17 /* EEXIST: another CPU created it first */)
		c->flow_table_full++;
	return bpf_map_lookup_elem(&flows, &p->key);
}

/*
 * Wake user space only when this record makes the waiting data cross
 * wakeup_bytes: once per batch, not on every record after the threshold
 * (each forced wake-up raises an IRQ work item). `before` is the data that
 * was waiting without this record of `size` bytes.
 */
static __always_inline __u64 ebpfc_wakeup_flags(__u64 before, __u64 size)
{
	return before < wakeup_bytes && before + size >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
								      : BPF_RB_NO_WAKEUP;
}

/*
 * Sends user space an event about the flow `key`: its record (`stats`), or
 * zeros. Returns 0, or -1 when the ring buffer is full (counted).
 */
static __always_inline int ebpfc_send_event(__u32 type, __u32 flags,
					    const struct ebpfc_flow_key *key,
					    const struct ebpfc_flow_stats *stats,
					    struct ebpfc_counters *c)
{
	struct ebpfc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 avail;

	if (!e) {
		c->events_dropped++;
		return -1;
	}
	e->type = type;
	e->flags = flags;
	__builtin_memcpy(&e->key, key, sizeof(e->key));
	if (stats)
		__builtin_memcpy(&e->stats, stats, sizeof(e->stats));
	else
		__builtin_memset(&e->stats, 0, sizeof(e->stats));
	/* the reserved record already counts as waiting data */
	avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	bpf_ringbuf_submit(
	    e, ebpfc_wakeup_flags(avail >= sizeof(*e) ? avail - sizeof(*e) : 0, sizeof(*e)));
	return 0;
}

/*
 * Classifies an UNKNOWN connection on this segment's payload (l7_classify.h).
 * Returns whether the segment's payload is to be sent.
 *  - A direction's first bytes decide at once (not HTTP: OTHER), unless too
 *    few to tell: then they are sent, and so is what continues them (a
 *    request written a few bytes at a time) until a segment decides or the
 *    parser tells the filter to stop (l7_control.not_http).
 *  - A segment elsewhere (the capture joined mid-stream, or earlier bytes of
 *    the direction never came this way) may be the middle of a body: it is
 *    only a probe. One that does not look like HTTP is not sent, and
 *    EBPFC_L7_PROBES_MAX of them make the connection OTHER.
 * A connection that is not HTTP may be PostgreSQL (ebpfc_pg_classify): a
 * startup packet at the direction's start, message shapes anywhere (probes
 * as above); one that is neither may be Redis (ebpfc_redis_classify: a
 * client's command array, anywhere).
 * The CPU that makes a connection OTHER counts it (l7_not_http), the one that
 * makes it PGSQL counts that (l7_pgsql).
 */
static __always_inline int ebpfc_classify(struct __sk_buff *skb, const struct ebpfc_packet *p,
					  struct ebpfc_flow_stats *v, __u32 data_seq,
					  struct ebpfc_counters *c, struct ebpfc_l7_buf *buf)
{
	__u8 *head = buf->b;
	const struct ebpfc_flow_dir *d = &v->dir[p->sender & 1];
	__u32 start = d->isn + 1;
	int syn = (d->flags & EBPFC_TCP_SYN) != 0;
	int at_start = syn && data_seq == start;
	/* every byte of the direction up to this segment's end was seen (counted) */
	int from_start = syn && d->bytes >= (__u64)(__u32)(data_seq + p->payload_len - start);
	__u32 len = p->payload_len;
	__u32 verdict;

	if (len < EBPFC_L7_PROBE_MIN)
		return from_start; /* too little to tell */
	if (len > EBPFC_L7_PROBE_LEN)
		len = EBPFC_L7_PROBE_LEN;
	if (bpf_skb_load_bytes(skb, p->payload_off, head, len) < 0)
		return 0;
	verdict = send_payload ? ebpfc_l7_classify(head, len) : EBPFC_L7_OTHER;
	if (verdict != EBPFC_L7_HTTP && send_pgsql &&
	    ebpfc_pg_classify_buf(buf, len, p->payload_len, at_start))
		verdict = EBPFC_L7_PGSQL;
	else if (verdict != EBPFC_L7_HTTP && send_redis && ebpfc_redis_classify_buf(buf, len))
		verdict = EBPFC_L7_REDIS;
	if (verdict == EBPFC_L7_UNKNOWN)
		return from_start;
	if (verdict == EBPFC_L7_OTHER && !at_start) {
		if (from_start)
			return 1; /* continues first bytes too few to tell: the parser judges */
		if (__sync_fetch_and_add(&v->l7_probes, 1) + 1 < EBPFC_L7_PROBES_MAX)
			return 0;
	}
	if (__sync_val_compare_and_swap(&v->l7, EBPFC_L7_UNKNOWN, verdict) == EBPFC_L7_UNKNOWN) {
		if (verdict == EBPFC_L7_OTHER)
			c->l7_not_http++;
		else if (verdict == EBPFC_L7_PGSQL)
			c->l7_pgsql++;
		else if (verdict == EBPFC_L7_REDIS)
			c->l7_redis++;
	}
	return v->l7 == EBPFC_L7_HTTP || v->l7 == EBPFC_L7_PGSQL || v->l7 == EBPFC_L7_REDIS;
}

/*
 * Sends user space the head of this segment's payload if the connection is
 * (or may be) HTTP, or PostgreSQL, and the parser wants these bytes. Classifies the
 * connection first while it is UNKNOWN.
 */
static __always_inline void ebpfc_send_payload(struct __sk_buff *skb, const struct ebpfc_packet *p,
					       struct ebpfc_flow_stats *v, __u64 now,
					       struct ebpfc_counters *c,
					       struct ebpfc_payload_event *pe, struct ebpfc_l7_buf *head)
{
	__u32 data_seq = p->seq + ((p->flags & EBPFC_TCP_SYN) ? 1 : 0);
	__u8 from = p->sender & 1;
	struct ebpfc_l7_control *ctl;
	__u32 offset = 0;
	__u32 len;
	__u32 l7;

	if ((!send_payload && !send_pgsql && !send_redis) || p->payload_len == 0)
		return;
	l7 = v->l7;
	if (l7 == EBPFC_L7_OTHER)
		return;
	if (l7 == EBPFC_L7_UNKNOWN && !ebpfc_classify(skb, p, v, data_seq, c, head))
		return;

	ctl = bpf_map_lookup_elem(&l7_control, &p->key);
	if (ctl && ctl->first_ns == v->first_ns) { /* not an earlier connection's */
		if (ctl->not_http)
			return;
		if (ctl->skip_valid[from]) {
			__s32 ahead = (__s32)(ctl->skip_to[from] - data_seq);

			/*
			 * A segment that ends before the skip point is not
			 * sent. The one that reaches it is, even with no byte
			 * past it (a 0-byte head): its time is the body's end.
			 */
			if (ahead > (__s32)p->payload_len) {
				c->payload_skipped++;
				return;
			}
			if (ahead > 0)
				offset = (__u32)ahead;
		}
	}

	pe->type = EBPFC_EVENT_PAYLOAD;
	pe->sender = from;
	pe->from_client = from == v->client;
	pe->flags = 0;
	pe->l7 = (__u8)v->l7;
	pe->ack = p->ack;
	if (p->flags & EBPFC_TCP_ACK)
		pe->flags |= EBPFC_PAYLOAD_ACK;
	pe->stream_start = v->dir[from].isn + 1;
	if (v->dir[from].flags & EBPFC_TCP_SYN)
		pe->flags |= EBPFC_PAYLOAD_STREAM_START;
	pe->peer_start = v->dir[from ^ 1].isn + 1;
	if (v->dir[from ^ 1].flags & EBPFC_TCP_SYN)
		pe->flags |= EBPFC_PAYLOAD_PEER_START;
	__builtin_memcpy(&pe->key, &p->key, sizeof(pe->key));
	pe->ts_ns = now;
	pe->flow_first_ns = v->first_ns;

	/*
	 * With segmentation offload a "segment" here can be 64 KiB: header
	 * blocks, chunk-size lines and pipelined messages may lie anywhere in
	 * it. Send it as consecutive records of at most EBPFC_PAYLOAD_MAX bytes,
	 * each a segment of its own; if the bound on records is reached, the
	 * last one carries the length of everything left.
	 */
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < EBPFC_PAYLOAD_RECORDS; i++) {
		__u32 off = offset + i * EBPFC_PAYLOAD_MAX;
		__u32 left;

		if (i > 0 && off >= p->payload_len)
			break;
		left = p->payload_len - off;
		len = left > EBPFC_PAYLOAD_MAX ? EBPFC_PAYLOAD_MAX : left;
		pe->seq = data_seq + off;
		pe->segment_len = i == EBPFC_PAYLOAD_RECORDS - 1 ? left : len;
		pe->data_len = len;
		if (len > 0 && bpf_skb_load_bytes(skb, p->payload_off + off, pe->data, len) < 0)
			return;
		if (bpf_ringbuf_output(
			&events, pe, EBPFC_PAYLOAD_HEADER_LEN + len,
			ebpfc_wakeup_flags(bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA),
					   EBPFC_PAYLOAD_HEADER_LEN + len)) < 0) {
			c->payload_dropped++;
			return;
		}
		c->payload_events++;
	}
}

SEC("socket")
int ebpfc_socket_filter(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ebpfc_counters *c = bpf_map_lookup_elem(&counters, &zero);
	struct ebpfc_scratch *tmp = bpf_map_lookup_elem(&scratch, &zero);
	struct ebpfc_packet p = {};
	struct ebpfc_flow_stats *v;
	__u64 established;
	__u32 head_len;
	__u64 now;
	int outgoing;
	int result;

	if (!c || !tmp)
		return 0;
	if (bridge_ifindex != 0 && skb->ifindex == bridge_ifindex &&
	    skb->pkt_type != EBPFC_PACKET_OUTGOING)
		return 0;
	c->frames++;
	c->frame_bytes += skb->len;

	head_len = skb->len < EBPFC_HEAD_LEN ? skb->len : EBPFC_HEAD_LEN;
	if (head_len < EBPFC_ETH_HLEN || bpf_skb_load_bytes(skb, 0, tmp->head, head_len) < 0) {
		c->malformed++;
		return 0;
	}
	switch (ebpfc_parse_frame(skb, skb->len, tmp->head, head_len, &p)) {
	case EBPFC_PARSE_TCP:
		break;
	case EBPFC_PARSE_FRAGMENT:
		c->fragments++;
		return 0;
	case EBPFC_PARSE_MALFORMED:
		c->malformed++;
		return 0;
	default:
		c->non_tcp++;
		return 0;
	}

	outgoing = skb->pkt_type == EBPFC_PACKET_OUTGOING;
	v = bpf_map_lookup_elem(&flows, &p.key);
	if (routed && v && ebpfc_routed_copy(v, &p, outgoing)) {
		/* counted where it came in, at the sending pod's interface */
		c->routed_copies++;
		c->frames--;
		c->frame_bytes -= skb->len;
		return 0;
	}
	now = bpf_ktime_get_ns();
	if (!v)
		v = ebpfc_create(skb, &p, now, c, tmp);
	if (!v)
		return 0;

	established = v->established_ns;
	result = ebpfc_flow_account(v, &p, now, &tmp->closed);
	if (!established && v->established_ns && v->syn_ns)
		ebpfc_source_release(skb, &p);
	if (result == EBPFC_CLOSED_NOW)
		__builtin_memcpy(&tmp->closed, v, sizeof(tmp->closed));
	if (routed && !outgoing)
		ebpfc_routed_mark_in(v, &p);

	if (result == EBPFC_LATE) {
		c->late++;
		return 0;
	}
	c->tcp_packets++;
	ebpfc_send_payload(skb, &p, v, now, c, &tmp->payload, &tmp->l7_head);
	if (result == EBPFC_RESTARTED) {
		/*
		 * A client reused its port at once: the closed entry, whose
		 * close event user space may not have read yet, now holds the
		 * new connection. Say so, in order after that close event, so
		 * that user space does not remove the entry when it reads it.
		 */
		ebpfc_send_event(EBPFC_EVENT_FLOW_RESTARTED, 0, &p.key, 0, c);
		return 0;
	}
	if (result == EBPFC_CLOSED_NOW || result == EBPFC_REOPENED) {
		/*
		 * A connection closed by FINs is over once this frame, the ACK
		 * of the last FIN, is counted: nothing of it crosses the bridge
		 * later but a retransmission. Its entry is removed here, right
		 * after its event is in the ring buffer. No new connection can
		 * have taken the four-tuple over yet: the side waiting for this
		 * ACK learns that the old connection is closed only from this
		 * frame, which the filter sees before its receiver does.
		 * A reset connection's entry stays (closed) until user space has
		 * read its event: segments already on their way in the other
		 * direction arrive after the reset and must find it closed, not
		 * start a flow of their own. If the event is lost, the entry
		 * stays too, closed, and the sweep reports it.
		 */
		int fin_closed = result == EBPFC_CLOSED_NOW && tmp->closed.close_reason == EBPFC_CLOSE_FIN;
		/* a reopened entry already holds the new connection: keep it */
		__u32 flags = result == EBPFC_REOPENED ? EBPFC_EVENT_KEEP_ENTRY
			      : fin_closed	       ? EBPFC_EVENT_ENTRY_REMOVED
					       : 0;

		if (ebpfc_send_event(EBPFC_EVENT_FLOW_CLOSED, flags, &p.key, &tmp->closed, c) == 0 &&
		    fin_closed)
			bpf_map_delete_elem(&flows, &p.key);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
