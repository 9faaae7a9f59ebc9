// SPDX-License-Identifier: GPL-2.0
/*
 * capture.bpf.c - the socket filter attached to the capture's AF_PACKET socket.
 *
 * It aggregates in the kernel: every TCP segment is accounted to its
 * connection in the `flows` hash map (exact packet and byte counts, handshake
 * times, flags; updated atomically, see flow_account.h), and user space hears about a connection
 * through the `events` ring buffer only when it closes. If the ring buffer is full the map still
 * holds the exact counts and user space finds the closed flow on its next
 * sweep. The filter returns 0, so no frame is ever queued to the socket.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define EBPFC_LOAD(ctx, off, dst, len) bpf_skb_load_bytes((ctx), (off), (dst), (len))
#include "flow_account.h"

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

/*
 * User space is woken only once this many bytes of events are waiting; it
 * also drains the ring buffer on its own every few milliseconds. A wake-up per
 * closed connection would cost the worker a few syscalls per span.
 * Set by user space before load.
 */
const volatile __u64 wakeup_bytes = 64 * sizeof(struct ebpfc_event);

/* Per-CPU scratch space: the BPF stack (512 bytes) is too small for these. */
struct ebpfc_scratch {
	struct ebpfc_flow_stats fresh;
	struct ebpfc_flow_stats closed;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ebpfc_scratch);
} scratch SEC(".maps");

static __always_inline struct ebpfc_flow_stats *ebpfc_find_or_create(const struct ebpfc_packet *p,
								     __u64 now,
								     struct ebpfc_counters *c,
								     struct ebpfc_scratch *tmp)
{
	struct ebpfc_flow_stats *v = bpf_map_lookup_elem(&flows, &p->key);
	long err;

	if (v)
		return v;
	if (!ebpfc_starts_flow(p)) {
		c->untracked++;
		return 0;
	}
	ebpfc_flow_init(&tmp->fresh, p, now);
	err = bpf_map_update_elem(&flows, &p->key, &tmp->fresh, BPF_NOEXIST);
	if (err == 0)
		c->flows_created++;
	else if (err != -17 /* EEXIST: another CPU created it first */)
		c->flow_table_full++;
	return bpf_map_lookup_elem(&flows, &p->key);
}

SEC("socket")
int ebpfc_socket_filter(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct ebpfc_counters *c = bpf_map_lookup_elem(&counters, &zero);
	struct ebpfc_scratch *tmp = bpf_map_lookup_elem(&scratch, &zero);
	struct ebpfc_packet p = {};
	struct ebpfc_flow_stats *v;
	__u64 now;
	int result;

	if (!c || !tmp)
		return 0;
	c->frames++;
	c->frame_bytes += skb->len;

	switch (ebpfc_parse_frame(skb, skb->len, &p)) {
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

	now = bpf_ktime_get_ns();
	v = ebpfc_find_or_create(&p, now, c, tmp);
	if (!v)
		return 0;

	result = ebpfc_flow_account(v, &p, now);
	if (result == EBPFC_CLOSED_NOW)
		__builtin_memcpy(&tmp->closed, v, sizeof(tmp->closed));

	if (result == EBPFC_LATE) {
		c->late++;
		return 0;
	}
	c->tcp_packets++;
	if (result == EBPFC_CLOSED_NOW) {
		struct ebpfc_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

		if (!e) {
			c->events_dropped++;
			return 0;
		}
		e->type = EBPFC_EVENT_FLOW_CLOSED;
		e->pad = 0;
		__builtin_memcpy(&e->key, &p.key, sizeof(e->key));
		__builtin_memcpy(&e->stats, &tmp->closed, sizeof(e->stats));
		bpf_ringbuf_submit(e, bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes
					  ? BPF_RB_FORCE_WAKEUP
					  : BPF_RB_NO_WAKEUP);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
