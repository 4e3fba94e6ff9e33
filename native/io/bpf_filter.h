// Classic BPF socket filter for the AF_PACKET port: the kernel queues only
// what the balancer may act on, so the rest of the host's traffic never costs
// a ring slot, a wake-up or a parse.
//
// Accepted:
//   - ARP (the data plane answers ARP for VIPs and fullnat local addresses);
//   - IPv4 whose destination is in `destinations` (VIPs, fullnat local
//     addresses, the balancer's own tunnel endpoint) or whose source is in
//     `sources` (backends: nat replies);
//   - optionally every IPv4 ICMP message, whatever its addresses: an ICMP
//     error about a nat flow can come from a router between the balancer and
//     a backend, addressed to the client, matching neither set;
// each untagged or with one 802.1Q / 802.1ad tag. Everything else (IPv6,
// other EtherTypes, a second tag) is rejected before it is queued.
//
// VLAN: on receive, the kernel moves the outermost tag into skb metadata
// before packet taps run (__netif_receive_skb_core -> skb_vlan_untag), so
// the filter usually sees an untagged frame; SKF_AD_VLAN_TAG_PRESENT tells
// that a tag was stripped (the port re-inserts it). A tag still in the frame
// (stripping not done, e.g. a device without it) is read at offset 12 and
// the network header taken 4 bytes later; a tag in the frame *and* one in
// metadata is double tagging, which the packet core does not handle:
// rejected.
//
// Size: cBPF programs are limited to BPF_MAXINSNS (4096) instructions. Address
// sets are matched by a binary search over the sorted set down to leaves of
// eight (about 1.7 instructions per address, ~2200 addresses in all, 16
// comparisons per packet for 2000); when the sets do not fit, the builder
// falls back to a coarse filter that accepts all IPv4 (and ARP when asked)
// and says so in `coarse` / `note`; the packet core still decides per packet.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <string>
#include <vector>

namespace l4lb::io {

struct BpfFilterSpec {
  std::vector<uint32_t> destinations;  // IPv4, host order (198.18.0.1 is 0xc6120001)
  std::vector<uint32_t> sources;       // IPv4, host order
  bool accept_arp = true;
  bool accept_any_icmp = false;
  uint32_t max_instructions = BPF_MAXINSNS;
};

struct BpfFilter {
  std::vector<sock_filter> instructions;
  bool coarse = false;  // the address sets did not fit: every IPv4 frame is accepted
  std::string note;     // why the filter is coarse (empty otherwise)
};

// Pure: the same spec gives the same program (sets are sorted and deduplicated).
BpfFilter build_bpf_filter(const BpfFilterSpec& spec);

// The snap length returned for accepted frames: the whole frame.
inline constexpr uint32_t kBpfAcceptWholeFrame = 0xffffffffu;

}  // namespace l4lb::io
