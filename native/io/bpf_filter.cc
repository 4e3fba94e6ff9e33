#include "io/bpf_filter.h"

#include <algorithm>
#include <cstddef>
#include <limits>

#include "core/wire.h"

namespace l4lb::io {

namespace {

// The wire's numbers from the packet core (one place), under the names the
// filter programs below read best with.
constexpr uint32_t kEtherTypeIpv4 = core::wire::kEtherTypeIpv4;
constexpr uint32_t kEtherTypeArp = core::wire::kEtherTypeArp;
constexpr uint32_t kEtherTypeVlan = core::wire::kEtherTypeVlan;
constexpr uint32_t kEtherTypeQinQ = core::wire::kEtherTypeQinQ;
constexpr uint32_t kEtherTypeOffset = core::wire::kEthType;
constexpr uint32_t kEthernetHeaderLen = core::wire::kEthHeaderLen;
constexpr uint32_t kVlanTagLen = core::wire::kVlanTagLen;
constexpr uint32_t kIpv4ProtocolOffset = core::wire::kIpv4Protocol;
constexpr uint32_t kIpv4SourceOffset = core::wire::kIpv4Src;
constexpr uint32_t kIpv4DestinationOffset = core::wire::kIpv4Dst;
constexpr uint32_t kIpProtocolIcmp = core::wire::kProtoIcmp;
constexpr uint32_t kReject = 0;
// Addresses matched one by one at the leaves of the binary search: a leaf of
// eight costs ten instructions (eight jeq, a ja, a shared ret) and at most
// eight comparisons.
constexpr size_t kLeafSize = 8;

// A straight-line cBPF assembler with forward labels. Conditional jumps have
// 8-bit offsets; the code below only uses them over a few instructions and
// takes `ja` (32-bit offset) for anything that may be far.
class Assembler {
 public:
  using Label = uint32_t;

  Label new_label() {
    labels_.push_back(kUnbound);
    return static_cast<Label>(labels_.size() - 1);
  }
  void bind(Label label) { labels_[label] = static_cast<uint32_t>(code_.size()); }

  void statement(uint16_t code, uint32_t k) { code_.push_back(sock_filter{code, 0, 0, k}); }
  // Conditional jump with literal offsets (instructions skipped).
  void branch(uint16_t code, uint32_t k, uint8_t jump_true, uint8_t jump_false) {
    code_.push_back(sock_filter{code, jump_true, jump_false, k});
  }
  // Conditional jump falling through when true, going to `label` when false.
  void branch_false_to(uint16_t code, uint32_t k, Label label) {
    fixups_.push_back(Fixup{static_cast<uint32_t>(code_.size()), label, Fixup::kFalse});
    code_.push_back(sock_filter{code, 0, 0, k});
  }
  void jump(Label label) {
    fixups_.push_back(Fixup{static_cast<uint32_t>(code_.size()), label, Fixup::kAlways});
    code_.push_back(sock_filter{BPF_JMP | BPF_JA, 0, 0, 0});
  }
  size_t size() const { return code_.size(); }

  // Resolves the labels; false if a conditional jump does not fit its 8 bits.
  bool finish(std::vector<sock_filter>* out) {
    for (const Fixup& fixup : fixups_) {
      const uint32_t target = labels_[fixup.label];
      if (target == kUnbound || target <= fixup.at) return false;  // forward jumps only
      const uint32_t offset = target - fixup.at - 1;
      if (fixup.kind == Fixup::kAlways) {
        code_[fixup.at].k = offset;
      } else {
        if (offset > std::numeric_limits<uint8_t>::max()) return false;
        code_[fixup.at].jf = static_cast<uint8_t>(offset);
      }
    }
    *out = std::move(code_);
    return true;
  }

 private:
  static constexpr uint32_t kUnbound = std::numeric_limits<uint32_t>::max();
  struct Fixup {
    enum Kind : uint8_t { kAlways, kFalse };
    uint32_t at;
    Label label;
    Kind kind;
  };
  std::vector<sock_filter> code_;
  std::vector<uint32_t> labels_;
  std::vector<Fixup> fixups_;
};

void accept(Assembler& as) { as.statement(BPF_RET | BPF_K, kBpfAcceptWholeFrame); }

// With the address in A: returns (accepts) on a member of values[lo, hi),
// otherwise continues at `no_match`.
void emit_set_match(Assembler& as, const std::vector<uint32_t>& values, size_t lo, size_t hi,
                    Assembler::Label no_match) {
  if (hi - lo <= kLeafSize) {
    // jeq v[i] jumps over the rest of the leaf's jeqs and the ja to the ret.
    for (size_t i = lo; i < hi; ++i) {
      as.branch(BPF_JMP | BPF_JEQ | BPF_K, values[i], static_cast<uint8_t>(hi - i), 0);
    }
    as.jump(no_match);
    accept(as);
    return;
  }
  const size_t mid = lo + (hi - lo) / 2;
  const Assembler::Label upper = as.new_label();
  // A >= values[mid]: the upper half, which may be far (ja); else the lower half right after.
  as.branch(BPF_JMP | BPF_JGE | BPF_K, values[mid], 0, 1);
  as.jump(upper);
  emit_set_match(as, values, lo, mid, no_match);
  as.bind(upper);
  emit_set_match(as, values, mid, hi, no_match);
}

// After the EtherType test of one layout (untagged, or one tag in the frame):
// IPv4 goes to `ipv4` with X = the offset of the IPv4 header; ARP is accepted.
void emit_ethertype_dispatch(Assembler& as, const BpfFilterSpec& spec, uint32_t network_offset, Assembler::Label ipv4) {
  as.branch(BPF_JMP | BPF_JEQ | BPF_K, kEtherTypeIpv4, 0, 2);
  as.statement(BPF_LDX | BPF_IMM, network_offset);
  as.jump(ipv4);
  if (spec.accept_arp) {
    as.branch(BPF_JMP | BPF_JEQ | BPF_K, kEtherTypeArp, 0, 1);
    accept(as);
  }
}

bool assemble(const BpfFilterSpec& spec, const std::vector<uint32_t>& destinations, const std::vector<uint32_t>& sources,
              bool coarse, std::vector<sock_filter>* out) {
  Assembler as;
  const Assembler::Label ipv4 = as.new_label();
  const Assembler::Label tagged = as.new_label();
  const Assembler::Label reject = as.new_label();

  as.statement(BPF_LD | BPF_H | BPF_ABS, kEtherTypeOffset);
  emit_ethertype_dispatch(as, spec, kEthernetHeaderLen, ipv4);
  as.branch(BPF_JMP | BPF_JEQ | BPF_K, kEtherTypeVlan, 1, 0);
  as.branch_false_to(BPF_JMP | BPF_JEQ | BPF_K, kEtherTypeQinQ, reject);

  as.bind(tagged);
  // A tag in the frame while another was already stripped into metadata is
  // double tagging.
  as.statement(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_VLAN_TAG_PRESENT));
  as.branch_false_to(BPF_JMP | BPF_JEQ | BPF_K, 0, reject);
  as.statement(BPF_LD | BPF_H | BPF_ABS, kEtherTypeOffset + kVlanTagLen);
  emit_ethertype_dispatch(as, spec, kEthernetHeaderLen + kVlanTagLen, ipv4);

  as.bind(reject);
  as.statement(BPF_RET | BPF_K, kReject);

  // X = offset of the IPv4 header. Loads past the end of a short frame make
  // the kernel return 0 (reject), so no length test is needed.
  as.bind(ipv4);
  if (coarse) {
    accept(as);
  } else {
    if (spec.accept_any_icmp) {
      as.statement(BPF_LD | BPF_B | BPF_IND, kIpv4ProtocolOffset);
      as.branch(BPF_JMP | BPF_JEQ | BPF_K, kIpProtocolIcmp, 0, 1);
      accept(as);
    }
    const Assembler::Label check_sources = as.new_label();
    const Assembler::Label no_match = as.new_label();
    if (!destinations.empty()) {
      as.statement(BPF_LD | BPF_W | BPF_IND, kIpv4DestinationOffset);
      emit_set_match(as, destinations, 0, destinations.size(), check_sources);
    }
    as.bind(check_sources);
    if (!sources.empty()) {
      as.statement(BPF_LD | BPF_W | BPF_IND, kIpv4SourceOffset);
      emit_set_match(as, sources, 0, sources.size(), no_match);
    }
    as.bind(no_match);
    as.statement(BPF_RET | BPF_K, kReject);
  }
  return as.finish(out);
}

std::vector<uint32_t> sorted_unique(std::vector<uint32_t> values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

}  // namespace

BpfFilter build_bpf_filter(const BpfFilterSpec& spec) {
  BpfFilter filter;
  const uint32_t limit = std::min<uint32_t>(spec.max_instructions, BPF_MAXINSNS);
  const std::vector<uint32_t> destinations = sorted_unique(spec.destinations);
  const std::vector<uint32_t> sources = sorted_unique(spec.sources);
  if (assemble(spec, destinations, sources, false, &filter.instructions) && filter.instructions.size() <= limit) {
    return filter;
  }
  const size_t exact_size = filter.instructions.size();
  filter.instructions.clear();
  assemble(spec, destinations, sources, true, &filter.instructions);
  filter.coarse = true;
  filter.note = "the address sets (" + std::to_string(destinations.size()) + " destinations, " +
                std::to_string(sources.size()) + " sources) need " + std::to_string(exact_size) +
                " instructions, more than the limit of " + std::to_string(limit) +
                ": the filter accepts every IPv4 frame and ARP";
  return filter;
}

}  // namespace l4lb::io
