#include "core/sched/maglev.h"

#include <algorithm>
#include <numeric>

#include "core/hash.h"

namespace l4lb::core::sched {

namespace {

// Fixed keys for the two permutation hashes (§3.4 "h1" and "h2"): changing
// them would reshuffle every deployed table, so they never change.
constexpr SipHashKey kOffsetKey{0x4d61676c65762d31ull, 0x6f66667365742d31ull};  // "Maglev-1offset-1"
constexpr SipHashKey kSkipKey{0x4d61676c65762d32ull, 0x736b69702d2d2d32ull};    // "Maglev-2skip---2"

}  // namespace

bool is_prime(uint32_t value) {
  if (value < 2) return false;
  if (value % 2 == 0) return value == 2;
  for (uint64_t divisor = 3; divisor * divisor <= value; divisor += 2) {
    if (value % divisor == 0) return false;
  }
  return true;
}

uint32_t next_prime(uint32_t value) {
  while (!is_prime(value)) ++value;
  return value;
}

bool maglev_fill(std::span<const BackendSpec> backends, std::span<int32_t> table, BuildError* error) {
  const size_t size = table.size();
  if (size < 3 || size > kMaxMaglevTableSize || !is_prime(static_cast<uint32_t>(size))) {
    error->code = "ERR_MAGLEV_TABLE_SIZE";
    error->message = "the Maglev table size must be a prime between 3 and " + std::to_string(kMaxMaglevTableSize) +
                     ", got " + std::to_string(size);
    return false;
  }
  if (!validate_backends(backends, error)) return false;
  const uint32_t modulus = static_cast<uint32_t>(size);

  struct Member {
    uint64_t identity;
    uint32_t index;
    uint32_t weight;
    uint32_t next;  // the next slot of its permutation to try
    uint32_t skip;
    uint64_t credit;
  };
  std::vector<Member> members;
  for (uint32_t index = 0; index < backends.size(); ++index) {
    if (!schedulable(backends[index])) continue;
    members.push_back(Member{backends[index].identity, index, backends[index].weight, 0, 0, 0});
  }
  std::fill(table.begin(), table.end(), kNoBackend);
  if (members.empty()) return true;

  std::sort(members.begin(), members.end(),
            [](const Member& a, const Member& b) { return a.identity < b.identity; });
  for (size_t i = 1; i < members.size(); ++i) {
    if (members[i].identity == members[i - 1].identity) {
      error->code = "ERR_DUPLICATE_BACKEND_IDENTITY";
      error->message = "backends " + std::to_string(members[i - 1].index) + " and " +
                       std::to_string(members[i].index) + " have the same identity";
      return false;
    }
  }
  uint32_t divisor = 0;
  for (const Member& member : members) divisor = std::gcd(divisor, member.weight);
  uint32_t max_weight = 0;
  for (Member& member : members) {
    member.weight /= divisor;
    max_weight = std::max(max_weight, member.weight);
    member.next = static_cast<uint32_t>(siphash13_u64(kOffsetKey, member.identity) % modulus);
    member.skip = static_cast<uint32_t>(siphash13_u64(kSkipKey, member.identity) % (modulus - 1)) + 1;
  }

  std::vector<uint64_t> taken((size + 63) / 64, 0);
  size_t filled = 0;
  for (;;) {
    for (Member& member : members) {
      member.credit += member.weight;
      if (member.credit < max_weight) continue;
      member.credit -= max_weight;
      uint32_t slot = member.next;
      while (taken[slot >> 6] & (uint64_t{1} << (slot & 63))) {
        slot += member.skip;
        if (slot >= modulus) slot -= modulus;
      }
      taken[slot >> 6] |= uint64_t{1} << (slot & 63);
      table[slot] = static_cast<int32_t>(member.index);
      member.next = slot + member.skip;
      if (member.next >= modulus) member.next -= modulus;
      if (++filled == size) return true;
    }
  }
}

std::unique_ptr<MaglevScheduler> MaglevScheduler::build(std::span<const BackendSpec> backends,
                                                        const MaglevOptions& options, BuildError* error,
                                                        const MaglevScheduler* previous,
                                                        std::vector<uint32_t>* changed) {
  if (changed) changed->clear();
  if (!validate_backends(backends, error)) return nullptr;
  std::unique_ptr<MaglevScheduler> scheduler(new MaglevScheduler(backends));
  scheduler->table_.resize(options.table_size);
  if (!maglev_fill(backends, scheduler->table_, error)) return nullptr;
  if (previous && changed) changed_slots(*previous, *scheduler, changed);
  return scheduler;
}

size_t MaglevScheduler::changed_slots(const MaglevScheduler& before, const MaglevScheduler& after,
                                      std::vector<uint32_t>* out) {
  const size_t size = std::max(before.table_.size(), after.table_.size());
  if (out) out->clear();
  size_t count = 0;
  for (size_t slot = 0; slot < size; ++slot) {
    bool same = false;
    if (before.table_.size() == after.table_.size()) {
      const int32_t old_index = before.table_[slot];
      const int32_t new_index = after.table_[slot];
      if (old_index == kNoBackend || new_index == kNoBackend) {
        same = old_index == new_index;
      } else {
        same = before.backends_[old_index].identity == after.backends_[new_index].identity;
      }
    }
    if (!same) {
      ++count;
      if (out) out->push_back(static_cast<uint32_t>(slot));
    }
  }
  return count;
}

int32_t MaglevScheduler::pick(const PickInput& input, PickState&) const {
  return table_[slot_of(input.flow_hash)];
}

PickExplanation MaglevScheduler::explain(const PickInput& input) const {
  PickExplanation out;
  out.by_hash = true;
  out.slot = slot_of(input.flow_hash);
  out.table_size = static_cast<uint32_t>(table_.size());
  out.backend = table_[out.slot];
  return out;
}

}  // namespace l4lb::core::sched
