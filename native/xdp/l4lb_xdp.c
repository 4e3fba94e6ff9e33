/* The XDP program of the AF_XDP driver: it takes from the kernel only the
 * frames the balancer serves (XDP_REDIRECT into the receive queue's AF_XDP
 * socket) and passes everything else (XDP_PASS), so that the host's own
 * traffic, its ARP and the health checks keep going through its stack.
 *
 * Redirected, from the maps the driver fills after every configuration:
 *   - IPv4 to a VIP (any protocol: the data plane answers echo, drops the rest);
 *   - IPv4 to a dedicated fullnat local address;
 *   - replies to a host-owned fullnat local address within the fullnat ports;
 *   - from a nat/fullnat backend or from a VIP to anything but the host's own
 *     addresses (nat replies; dr replies routed through the balancer);
 *   - IPIP/GRE to a tunnel endpoint (real servers returning replies);
 *   - ICMP errors in transit about the balancer's packets (their inner header
 *     names a VIP, backend or local address);
 *   - ARP requests for a VIP or a dedicated local address.
 * Malformed frames are passed to the kernel (which drops them) and counted.
 * Nothing here is trusted beyond the bytes the frame holds: every read is
 * checked against data_end. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "l4lb_xdp_maps.h"

#ifdef L4LB_XDP_QUEUE_SOCKETS
/* Built for DPDK's net_af_xdp (-DL4LB_XDP_QUEUE_SOCKETS, l4lb_dpdk.so): one
 * program per interface, loaded by the vdev itself, which puts each queue's
 * socket into the map named xsks_map at the queue's index. */
struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, L4LB_XDP_MAX_QUEUES);
  __type(key, __u32);
  __type(value, __u32);
} xsks_map SEC(".maps");
#else
struct {
  __uint(type, BPF_MAP_TYPE_XSKMAP);
  __uint(max_entries, L4LB_XDP_MAX_PORTS * L4LB_XDP_MAX_QUEUES);
  __type(key, __u32);
  __type(value, __u32);
} l4lb_sockets SEC(".maps");
#endif

/* ifindex -> port index */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, L4LB_XDP_MAX_PORTS);
  __type(key, __u32);
  __type(value, __u32);
} l4lb_ports SEC(".maps");

/* IPv4 address (network order) -> L4LB_ADDRESS_* bits */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, L4LB_XDP_MAX_ADDRESSES);
  __type(key, __u32);
  __type(value, __u32);
} l4lb_addresses SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, L4LB_XDP_MAX_SERVICES);
  __type(key, struct l4lb_service_key);
  __type(value, __u32);
} l4lb_services SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct l4lb_settings);
} l4lb_settings SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, L4LB_XDP_COUNTERS);
  __type(key, __u32);
  __type(value, __u64);
} l4lb_counters SEC(".maps");

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ARP_REQUEST 1
#define IP_FRAGMENT_OFFSET 0x1fff
#define ICMP_DEST_UNREACH_ 3
#define ICMP_TIME_EXCEEDED_ 11
#define ICMP_PARAMETERPROB_ 12

struct arp_ipv4 {
  __be16 hardware;
  __be16 protocol;
  __u8 hardware_len;
  __u8 protocol_len;
  __be16 operation;
  __u8 sender_mac[6];
  __be32 sender_ip;
  __u8 target_mac[6];
  __be32 target_ip;
} __attribute__((packed));

static __always_inline void count(__u32 index) {
  __u64 *value = bpf_map_lookup_elem(&l4lb_counters, &index);
  if (value) *value += 1;
}

static __always_inline int pass(void) {
  count(L4LB_XDP_PASSED);
  return XDP_PASS;
}

static __always_inline int malformed(void) {
  count(L4LB_XDP_MALFORMED);
  return XDP_PASS;
}

static __always_inline int redirect(struct xdp_md *ctx) {
#ifdef L4LB_XDP_QUEUE_SOCKETS
  if (ctx->rx_queue_index >= L4LB_XDP_MAX_QUEUES) return pass();
  count(L4LB_XDP_REDIRECTED);
  return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_DROP);
#else
  __u32 ifindex = ctx->ingress_ifindex;
  __u32 *port = bpf_map_lookup_elem(&l4lb_ports, &ifindex);
  if (!port || ctx->rx_queue_index >= L4LB_XDP_MAX_QUEUES) return pass();
  count(L4LB_XDP_REDIRECTED);
  /* No socket on this queue (never with the driver's set-up): dropped, as
   * the balancer's traffic must not reach the host's stack. */
  return bpf_redirect_map(&l4lb_sockets, *port * L4LB_XDP_MAX_QUEUES + ctx->rx_queue_index, XDP_DROP);
#endif
}

static __always_inline __u32 address_bits(__be32 address) {
  __u32 key = address;
  __u32 *bits = bpf_map_lookup_elem(&l4lb_addresses, &key);
  return bits ? *bits : 0;
}

SEC("xdp")
int l4lb_xdp(struct xdp_md *ctx) {
  void *data = (void *)(long)ctx->data;
  void *data_end = (void *)(long)ctx->data_end;
  struct ethhdr *eth = data;
  if ((void *)(eth + 1) > data_end) return malformed();
  __be16 type = eth->h_proto;
  void *next = eth + 1;
  /* Up to two VLAN tags (802.1ad outer, 802.1Q inner), as the core parses them. */
#pragma unroll
  for (int i = 0; i < 2; i++) {
    if (type != bpf_htons(ETH_P_8021Q_) && type != bpf_htons(ETH_P_8021AD_)) break;
    if (next + 4 > data_end) return malformed();
    type = *(__be16 *)(next + 2);
    next += 4;
  }

  if (type == bpf_htons(ETH_P_ARP)) {
    struct arp_ipv4 *arp = next;
    if ((void *)(arp + 1) > data_end) return pass();  /* other hardware/protocol types are shorter or longer: the kernel's */
    if (arp->operation != bpf_htons(ARP_REQUEST) || arp->protocol != bpf_htons(ETH_P_IP)) return pass();
    __u32 target = address_bits(arp->target_ip);
    /* A host-owned local address is answered by the kernel itself. */
    if ((target & L4LB_ADDRESS_VIP) || ((target & L4LB_ADDRESS_LOCAL) && !(target & L4LB_ADDRESS_HOST))) return redirect(ctx);
    return pass();
  }
  if (type != bpf_htons(ETH_P_IP)) return pass();

  struct iphdr *ip = next;
  if ((void *)(ip + 1) > data_end) return malformed();
  __u32 header_len = ip->ihl * 4;
  if (ip->version != 4 || header_len < sizeof(*ip)) return malformed();
  if ((void *)ip + header_len > data_end) return malformed();
  if (bpf_ntohs(ip->tot_len) < header_len || (void *)ip + bpf_ntohs(ip->tot_len) > data_end) return malformed();

  __u32 to = address_bits(ip->daddr);
  if (to & L4LB_ADDRESS_VIP) return redirect(ctx);
  if ((to & L4LB_ADDRESS_LOCAL) && !(to & L4LB_ADDRESS_HOST)) return redirect(ctx);
  if ((ip->protocol == IPPROTO_IPIP || ip->protocol == IPPROTO_GRE) && (to & L4LB_ADDRESS_TUNNEL_END)) return redirect(ctx);

  __u32 from = address_bits(ip->saddr);
  if ((from & (L4LB_ADDRESS_BACKEND | L4LB_ADDRESS_VIP)) && !(to & L4LB_ADDRESS_HOST)) return redirect(ctx);

  void *l4 = (void *)ip + header_len;
  const int first_fragment = (ip->frag_off & bpf_htons(IP_FRAGMENT_OFFSET)) == 0;
  if ((to & L4LB_ADDRESS_LOCAL) && (from & L4LB_ADDRESS_BACKEND) && first_fragment &&
      (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
    /* A fullnat reply to a host-owned local address: the balancer's within
     * its source ports, the host's own connections (health checks) below. */
    if (l4 + 4 > data_end) return malformed();
    __u16 port = bpf_ntohs(*(__be16 *)(l4 + 2));
    __u32 zero = 0;
    struct l4lb_settings *settings = bpf_map_lookup_elem(&l4lb_settings, &zero);
    if (settings && port >= settings->fullnat_port_min && port <= settings->fullnat_port_max) return redirect(ctx);
    return pass();
  }

  if (ip->protocol == IPPROTO_ICMP && first_fragment) {
    if (l4 + 8 + sizeof(struct iphdr) > data_end) return pass();
    __u8 icmp_type = *(__u8 *)l4;
    if (icmp_type != ICMP_DEST_UNREACH_ && icmp_type != ICMP_TIME_EXCEEDED_ && icmp_type != ICMP_PARAMETERPROB_) return pass();
    struct iphdr *inner = l4 + 8;
    __u32 about = address_bits(inner->saddr) | address_bits(inner->daddr);
    if (!(about & (L4LB_ADDRESS_VIP | L4LB_ADDRESS_BACKEND | L4LB_ADDRESS_LOCAL))) return pass();
    /* In transit (not to the host): the balancer translates it back. */
    if (!(to & L4LB_ADDRESS_HOST)) return redirect(ctx);
    /* To a host-owned local address: the balancer's when the inner packet
     * left from one of its fullnat ports. */
    if ((to & L4LB_ADDRESS_LOCAL) && inner->saddr == ip->daddr && inner->ihl == 5 &&
        (inner->protocol == IPPROTO_TCP || inner->protocol == IPPROTO_UDP)) {
      void *inner_l4 = (void *)(inner + 1);
      if (inner_l4 + 2 > data_end) return pass();
      __u16 port = bpf_ntohs(*(__be16 *)inner_l4);
      __u32 zero = 0;
      struct l4lb_settings *settings = bpf_map_lookup_elem(&l4lb_settings, &zero);
      if (settings && port >= settings->fullnat_port_min && port <= settings->fullnat_port_max) return redirect(ctx);
    }
    return pass();
  }
  return pass();
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
