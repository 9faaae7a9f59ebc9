/*
 * capture_abi.h - the data shared by the eBPF socket filter and user space.
 *
 * Compiled into the BPF object (clang -target bpf) and into the C++ capture
 * code (g++), so every struct has an explicit, padding-free layout that is
 * identical on both sides.
 */
#ifndef EBPFC_CAPTURE_ABI_H
#define EBPFC_CAPTURE_ABI_H

#include <linux/types.h>

#define EBPFC_ADDR_LEN 16

#ifdef __cplusplus
#define EBPFC_STATIC_ASSERT static_assert
#else
#define EBPFC_STATIC_ASSERT _Static_assert
#endif

/*
 * A TCP connection, independent of direction: endpoint 0 is the smaller of
 * (address, port) in network byte order, endpoint 1 the larger. IPv4
 * addresses are stored IPv4-mapped (::ffff:a.b.c.d).
 */
struct ebpfc_flow_key {
	__u8 addr[2][EBPFC_ADDR_LEN];
	__u16 port[2]; /* host byte order */
	__u8 family;   /* 4 or 6 */
	__u8 pad[3];
} __attribute__((aligned(8))); /* the filter reads the addresses as words */

EBPFC_STATIC_ASSERT(sizeof(struct ebpfc_flow_key) == 40, "no implicit padding");

/*
 * What one endpoint sent. Segments of one connection may be accounted on
 * several CPUs at once (socket filters cannot take a bpf_spin_lock), so every
 * field that changes after the flow is created is updated atomically.
 */
struct ebpfc_flow_dir {
	__u64 packets;
	__u64 bytes;	   /* TCP payload bytes, each sequence number counted once */
	__u64 seq;	   /* EBPFC_SEQ_VALID | the sequence number after the highest
			    * payload byte seen; 0 until the first one */
	__u32 retransmits; /* segments that carried no new sequence space */
	__u32 flags;	   /* OR of the TCP flags this endpoint sent */
	__u32 isn;	   /* initial sequence number of this endpoint's first SYN */
	__u32 zero_windows; /* segments that advertised a receive window of zero: this
			     * endpoint could not take more (SYN and RST segments aside) */
};

#define EBPFC_SEQ_VALID (1ULL << 32)

enum ebpfc_flow_state {
	EBPFC_FLOW_OPEN = 0,
	EBPFC_FLOW_CLOSED = 1,
};

enum ebpfc_close_reason {
	EBPFC_CLOSE_NONE = 0,
	EBPFC_CLOSE_FIN = 1,		 /* FIN both ways and the final ACK */
	EBPFC_CLOSE_RST = 2,		 /* a reset */
	EBPFC_CLOSE_IDLE = 3,		 /* no packet for the idle timeout (user space) */
	EBPFC_CLOSE_CAPTURE_STOPPED = 4, /* still open when the capture ended */
	EBPFC_CLOSE_REOPENED = 5,	 /* a new SYN on the four-tuple while it looked open */
};

#define EBPFC_NO_ENDPOINT 0xff

/*
 * Everything known about one connection: the value of the flows map. Times
 * are CLOCK_MONOTONIC ns.
 */
struct ebpfc_flow_stats {
	__u64 first_ns;
	__u64 last_ns;
	__u64 syn_ns;		      /* the client's first SYN */
	__u64 synack_ns;	      /* the server's first SYN-ACK */
	__u64 established_ns;	      /* the client's first ACK after the SYN-ACK */
	struct ebpfc_flow_dir dir[2]; /* dir[i]: what endpoint i sent */
	__u32 state;		      /* enum ebpfc_flow_state */
	__u8 client;		      /* endpoint index of the client */
	__u8 close_reason;	      /* enum ebpfc_close_reason */
	__u8 rst_from;		      /* endpoint that sent the first RST */
	__u8 mid_stream;	      /* the connection was first seen without a SYN */
	__u32 l7;		      /* enum ebpfc_l7: what the payload looks like */
	__u32 l7_probes;	      /* payload segments that were looked at and did not decide
				       * (see l7_classify.h); bounded by EBPFC_L7_PROBES_MAX */
	__u32 counted_in;	      /* routed capture: bit i is set once endpoint i's
				       * frames are counted where they enter the node from a
				       * captured interface (see ebpfc_routed_copy) */
};

/*
 * A connection first seen mid-stream (or whose first payload bytes did not
 * cross this capture point) is not judged by its first segment, which may be
 * the middle of a body: up to this many of its payload segments are looked at
 * for a message start (l7_classify.h) before it is taken as not HTTP.
 */
#define EBPFC_L7_PROBES_MAX 64

/* What a connection's payload looks like, decided on its first payload bytes. */
enum ebpfc_l7 {
	EBPFC_L7_UNKNOWN = 0, /* no payload yet, or too little to tell (see l7_classify.h) */
	EBPFC_L7_HTTP = 1,    /* starts like an HTTP/1.x request or response: heads are sent */
	EBPFC_L7_OTHER = 2,   /* anything else: no payload is sent */
	EBPFC_L7_PGSQL = 3,   /* PostgreSQL's wire protocol (a startup packet, an SSLRequest or
			       * message shapes): payload is sent to its parser */
	EBPFC_L7_REDIS = 4,   /* Redis (RESP): a client's command array; payload is sent to its
			       * parser */
};

/*
 * Written by user space, read by the filter: where the parser of an HTTP (or
 * PostgreSQL) connection wants payload again. Segments that end before skip_to[i] (what
 * endpoint i sends, while skip_valid[i]) are not sent: they are body bytes
 * whose end the parser already knows. not_http stops all payload of the flow.
 * first_ns names the connection it is for (its flow's first_ns): user space
 * removes an entry only after it has read the connection's close, so a new
 * connection on the same four-tuple may meet its predecessor's entry, which
 * the filter then ignores.
 */
struct ebpfc_l7_control {
	__u32 skip_to[2];
	__u8 skip_valid[2];
	__u8 not_http;
	__u8 pad[5];
	__u64 first_ns;
};

EBPFC_STATIC_ASSERT(sizeof(struct ebpfc_l7_control) == 24, "no implicit padding");

enum ebpfc_event_type {
	EBPFC_EVENT_FLOW_CLOSED = 1,
	EBPFC_EVENT_PAYLOAD = 2,
	/* an ebpfc_event whose key's closed entry a new connection took over
	 * (EBPFC_RESTARTED): user space must not remove that entry */
	EBPFC_EVENT_FLOW_RESTARTED = 3,
};

/*
 * Payload is sent in records of at most EBPFC_PAYLOAD_MAX bytes, at most
 * EBPFC_PAYLOAD_RECORDS of them per segment (64 KiB: a whole offloaded
 * segment).
 */
#define EBPFC_PAYLOAD_MAX     4096
#define EBPFC_PAYLOAD_RECORDS 16

/*
 * A ring-buffer record carrying the head of one segment's payload: data_len
 * bytes from sequence number seq; the segment carried segment_len bytes from
 * there on. Records are variable-length: the header, then data_len bytes.
 */
struct ebpfc_payload_event {
	__u32 type;	  /* EBPFC_EVENT_PAYLOAD */
	__u8 sender;	  /* endpoint index (in key) of the sender */
	__u8 from_client; /* the sender is the connection's client */
	__u8 flags;	  /* EBPFC_PAYLOAD_* */
	__u8 l7;	  /* enum ebpfc_l7: the connection's class when this was sent (UNKNOWN:
			   * first bytes too few to tell, sent to the HTTP parser) */
	struct ebpfc_flow_key key;
	__u64 ts_ns;
	__u64 flow_first_ns; /* the connection's first_ns: tells two connections on one
			      * four-tuple apart */
	__u32 seq;
	__u32 segment_len;
	__u32 data_len;
	__u32 ack;	    /* the segment's acknowledgement number (EBPFC_PAYLOAD_ACK): how
			     * much of the other direction its sender had received */
	__u32 stream_start; /* sequence number of the sender's first payload byte, its SYN's
			     * + 1 (EBPFC_PAYLOAD_STREAM_START: the SYN was seen) */
	__u32 peer_start;   /* the same for the other direction (EBPFC_PAYLOAD_PEER_START) */
	__u8 data[EBPFC_PAYLOAD_MAX];
};

/* ebpfc_payload_event.flags */
#define EBPFC_PAYLOAD_ACK	   1 /* ack is valid (the segment had the ACK flag) */
#define EBPFC_PAYLOAD_STREAM_START 2 /* stream_start is valid */
#define EBPFC_PAYLOAD_PEER_START   4 /* peer_start is valid */

#define EBPFC_PAYLOAD_HEADER_LEN ((__u32) __builtin_offsetof(struct ebpfc_payload_event, data))

/* ebpfc_event.flags */
#define EBPFC_EVENT_KEEP_ENTRY	  1 /* the map entry already holds a newer connection */
#define EBPFC_EVENT_ENTRY_REMOVED 2 /* the filter removed the entry (a connection closed by FINs) */

/* A ring-buffer record. */
struct ebpfc_event {
	__u32 type;
	__u32 flags;
	struct ebpfc_flow_key key;
	struct ebpfc_flow_stats stats;
};

/* Per-CPU counters, summed by user space. */
struct ebpfc_counters {
	__u64 frames;	       /* frames the filter saw */
	__u64 frame_bytes;     /* their lengths */
	__u64 tcp_packets;     /* TCP segments accounted to a flow */
	__u64 non_tcp;	       /* frames that are not TCP over IPv4/IPv6 */
	__u64 fragments;       /* IP fragments (ignored) */
	__u64 malformed;       /* truncated or inconsistent headers */
	__u64 untracked;       /* segments of unknown flows without SYN or payload */
	__u64 late;	       /* segments of a flow that already closed */
	__u64 flows_created;   /* entries added to the flows map */
	__u64 flow_table_full; /* new flows lost because the map was full */
	__u64 events_dropped;  /* ring buffer full */
	__u64 payload_events;  /* payload heads sent to user space */
	__u64 payload_skipped; /* payload segments not sent: body bytes the parser skips */
	__u64 payload_dropped; /* payload heads lost because the ring buffer was full */
	__u64 l7_not_http;     /* connections whose first payload was not HTTP: never looked at
				* again (l7_classify.h) */
	__u64 source_capped;   /* new flows not tracked: their source had its share of
				* half-open connections (max_half_open_per_source) */
	__u64 l7_pgsql;	       /* connections taken for PostgreSQL's wire protocol */
	__u64 routed_copies;   /* routed capture: TCP frames seen leaving towards a pod that
				* were already counted where they came in (not counted again) */
	__u64 l7_redis;	       /* connections taken for Redis (RESP) */
};

/* The flows map's share of one source (see capture.bpf.c, sources). */
struct ebpfc_source_key {
	__u8 addr[16];	/* the sender's address; zeros at a bridge port (the port is the pod) */
	__u32 ifindex; /* where the frame came in */
};

struct ebpfc_source_budget {
	__u64 window_start; /* when the current window began */
	__s32 half_open;    /* connections opened in it whose handshake has not completed */
	__u32 pad;
};

#endif /* EBPFC_CAPTURE_ABI_H */
