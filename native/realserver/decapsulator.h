// The real server's userspace decapsulator, for kernels without the ipip and
// ip_gre modules (microVMs, containers): one thread that receives IPIP and
// GRE packets addressed to this host, strips the outer header and hands the
// inner packet to the local stack through a TUN device, so that it arrives
// for the VIP as if it had come off the wire. Optionally it also carries the
// replies back: policy routing sends packets from the VIP into the same TUN
// device, and the thread sends them to the balancer inside GRE.
//
// Sockets, chosen over AF_PACKET:
//  - one raw IPv4 socket per accepted protocol (IPPROTO_GRE, IPPROTO_IPIP).
//    The kernel delivers to it only packets that passed its own input path:
//    addressed to a local address, IPv4 header checksum verified, fragments
//    reassembled, firewall applied; any link type works (veth, VLAN, bond).
//    AF_PACKET would see every frame on one interface, before reassembly.
//  - Its presence is also what keeps the host quiet: a kernel without a
//    handler for protocol 47 or 4 answers each such packet with ICMP
//    "protocol unreachable" (ip_local_deliver_finish), unless a raw socket
//    took the packet (raw_local_deliver). The balancer would otherwise get an
//    ICMP error for every packet it tunnels here.
//  - one IPPROTO_RAW socket (IP_HDRINCL implied) to send the encapsulated
//    replies: the outer header is ours (encapsulate_ipv4), the kernel routes
//    it, fills in the source when we leave it 0 and never loops it back to
//    our receive sockets.
//  - the TUN device (IFF_TUN | IFF_NO_PI): bare IPv4 packets both ways.
//
// Everything is opened by the worker thread after it has joined the target
// network namespace (setns changes only the calling thread's namespace, and
// sockets and TUN devices belong to the namespace they were created in), so
// one process can serve real servers in several namespaces.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "realserver/tunnel_packet.h"

namespace l4lb::realserver {

struct DecapsulatorOptions {
  std::string netns_path;  // e.g. /run/netns/NAME; empty: the namespace of the calling thread
  // The TUN device. If a persistent device of this name exists (`ip tuntap
  // add`), the decapsulator attaches to it and leaves it in place on stop;
  // otherwise it creates one that the kernel removes when the decapsulator
  // closes it.
  std::string tun_name;
  std::vector<uint32_t> vips;             // host order: accepted inner destinations
  std::vector<uint32_t> local_addresses;  // host order: accepted outer destinations; empty: any
  bool accept_ipip = false;
  bool accept_gre = false;
  bool require_gre_key = false;
  uint32_t gre_key = 0;  // host order
  // Replies from a VIP that routing sends into the TUN device go back to
  // return_tunnel.outer_dst; without it they are counted and dropped.
  bool return_enabled = false;
  ReturnTunnel return_tunnel;  // inner_sources is filled from vips
  uint32_t receive_buffer_bytes = 4u << 20;
};

// Written by the worker thread only (relaxed stores), read by stats().
struct DecapsulatorCounters {
  std::atomic<uint64_t> received{0};              // tunnel packets read from the raw sockets
  std::atomic<uint64_t> decapsulated{0};          // inner packets written to the TUN device
  std::atomic<uint64_t> decapsulated_bytes{0};    // their bytes (inner IPv4 packets)
  std::atomic<uint64_t> tun_write_errors{0};      // write() to the TUN device failed
  std::atomic<uint64_t> malformed[static_cast<size_t>(DecapMalformed::count)]{};
  std::atomic<uint64_t> not_for_us[static_cast<size_t>(DecapNotForUs::count)]{};
  std::atomic<uint64_t> returned{0};              // replies sent back through the tunnel
  std::atomic<uint64_t> returned_bytes{0};        // their bytes (outer IPv4 packets)
  std::atomic<uint64_t> return_drops[static_cast<size_t>(ReturnDrop::count)]{};
  std::atomic<uint64_t> send_errors{0};           // sendto() of a reply failed (EMSGSIZE, no route...)
  std::atomic<uint64_t> receive_errors{0};        // recv()/read() failed other than EAGAIN
};

struct DecapsulatorError {
  std::string code;     // 'ENETNS', 'ESOCKET', 'ETUN', 'ETHREAD'
  std::string message;  // names the operation and the errno text
};

class Decapsulator {
 public:
  // Starts the worker and waits until it has opened everything (or failed).
  // Returns null with *error filled when it cannot run.
  static std::unique_ptr<Decapsulator> start(DecapsulatorOptions options, DecapsulatorError* error);

  ~Decapsulator();
  Decapsulator(const Decapsulator&) = delete;
  Decapsulator& operator=(const Decapsulator&) = delete;

  // Wakes the worker, joins it and closes every descriptor (which removes a
  // TUN device the decapsulator created). Idempotent.
  void stop();

  const DecapsulatorCounters& counters() const { return counters_; }
  // False once stopped, or after the worker gave up (the TUN device was deleted
  // under it): failure() then says why.
  bool running() const { return running_.load(std::memory_order_acquire); }
  std::string failure() const;
  // Whether the TUN device outlives the decapsulator (created with `ip tuntap add`).
  bool tun_persistent() const { return tun_persistent_; }

 private:
  explicit Decapsulator(DecapsulatorOptions options);
  bool open_all(DecapsulatorError* error);  // on the worker thread
  void run();                               // the worker loop
  void receive_tunnel(int fd);
  void receive_replies();
  void fail(std::string why);
  void close_all();

  DecapsulatorOptions options_;
  DecapFilter filter_;
  ReturnTunnel return_tunnel_;
  DecapsulatorCounters counters_;
  std::vector<uint8_t> buffer_;
  int stop_fd_ = -1;     // eventfd: stop() writes, the worker polls it
  int gre_fd_ = -1;      // raw IPPROTO_GRE
  int ipip_fd_ = -1;     // raw IPPROTO_IPIP
  int send_fd_ = -1;     // raw IPPROTO_RAW, for replies
  int tun_fd_ = -1;
  bool tun_persistent_ = false;
  uint16_t next_identification_ = 1;
  std::atomic<bool> running_{false};
  mutable std::mutex failure_mutex_;
  std::string failure_;
  std::thread worker_;
};

}  // namespace l4lb::realserver
