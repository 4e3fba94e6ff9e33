/* The maps of the XDP program (l4lb_xdp.c) as the AF_XDP driver
 * (io/af_xdp_driver.cc) fills them: one header for both sides, in C so that
 * clang -target bpf and g++ read the same layout. Every field states its
 * byte order; no implicit padding. */
#ifndef L4LB_XDP_MAPS_H
#define L4LB_XDP_MAPS_H

#include <linux/types.h>

/* Map names as the object declares them (the driver finds them by name). */
#define L4LB_XDP_PROGRAM_NAME "l4lb_xdp"
#define L4LB_XDP_MAP_SOCKETS "l4lb_sockets"
#define L4LB_XDP_MAP_PORTS "l4lb_ports"
#define L4LB_XDP_MAP_ADDRESSES "l4lb_addresses"
#define L4LB_XDP_MAP_SERVICES "l4lb_services"
#define L4LB_XDP_MAP_SETTINGS "l4lb_settings"
#define L4LB_XDP_MAP_COUNTERS "l4lb_counters"

/* Sockets: key = port index * L4LB_XDP_MAX_QUEUES + receive queue. */
#define L4LB_XDP_MAX_PORTS 64
#define L4LB_XDP_MAX_QUEUES 64
#define L4LB_XDP_MAX_ADDRESSES 65536
#define L4LB_XDP_MAX_SERVICES 65536

/* l4lb_addresses value: what an IPv4 address is to the balancer. */
#define L4LB_ADDRESS_VIP 0x01u            /* VIP of a service: every packet to it is the balancer's */
#define L4LB_ADDRESS_LOCAL 0x02u          /* fullnat local address */
#define L4LB_ADDRESS_BACKEND 0x04u        /* nat/fullnat backend: its replies are the balancer's */
#define L4LB_ADDRESS_HOST 0x08u           /* an address of a served interface (the host's own) */
#define L4LB_ADDRESS_TUNNEL_END 0x10u     /* real servers return tunnelled replies to it */

/* l4lb_services key: a VIP's port and protocol. */
struct l4lb_service_key {
  __u32 address;   /* network order */
  __u16 port;      /* network order */
  __u8 protocol;   /* IPPROTO_TCP, IPPROTO_UDP */
  __u8 pad;        /* zero */
};

/* l4lb_settings[0]. */
struct l4lb_settings {
  __u16 fullnat_port_min;   /* host order: replies to a host-owned local address within [min, max] */
  __u16 fullnat_port_max;   /* host order */
  __u32 owner_pid;          /* the process that attached the program (stale programs: open() of a later one) */
  __u64 owner_start_time;   /* its start time in clock ticks after boot (/proc/PID/stat field 22) */
};

/* l4lb_counters (per CPU) index. */
enum l4lb_xdp_counter {
  L4LB_XDP_REDIRECTED = 0,  /* handed to the balancer's socket */
  L4LB_XDP_PASSED = 1,      /* left to the kernel */
  L4LB_XDP_MALFORMED = 2,   /* too short or inconsistent headers: passed to the kernel, which drops them */
  L4LB_XDP_COUNTERS = 3,
};

#endif
