#include "core/hash.h"

#include <bit>
#include <cstring>

namespace l4lb::core {

namespace {

inline uint64_t load_le64(const uint8_t* p) {
  uint64_t value;
  std::memcpy(&value, p, sizeof(value));
  if constexpr (std::endian::native == std::endian::big) value = __builtin_bswap64(value);
  return value;
}

inline uint64_t rotl(uint64_t x, int bits) { return (x << bits) | (x >> (64 - bits)); }

struct SipState {
  uint64_t v0, v1, v2, v3;

  explicit SipState(const SipHashKey& key)
      : v0(0x736f6d6570736575ull ^ key.k0),
        v1(0x646f72616e646f6dull ^ key.k1),
        v2(0x6c7967656e657261ull ^ key.k0),
        v3(0x7465646279746573ull ^ key.k1) {}

  void round() {
    v0 += v1;
    v1 = rotl(v1, 13);
    v1 ^= v0;
    v0 = rotl(v0, 32);
    v2 += v3;
    v3 = rotl(v3, 16);
    v3 ^= v2;
    v0 += v3;
    v3 = rotl(v3, 21);
    v3 ^= v0;
    v2 += v1;
    v1 = rotl(v1, 17);
    v1 ^= v2;
    v2 = rotl(v2, 32);
  }
};

void store_le64(uint8_t* p, uint64_t value) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(value >> (8 * i));
}

template <int CompressionRounds, int FinalizationRounds>
uint64_t siphash(const SipHashKey& key, const void* data, size_t len) {
  const uint8_t* in = static_cast<const uint8_t*>(data);
  SipState s(key);
  const size_t whole = len & ~size_t{7};
  for (size_t i = 0; i < whole; i += 8) {
    const uint64_t m = load_le64(in + i);
    s.v3 ^= m;
    for (int r = 0; r < CompressionRounds; ++r) s.round();
    s.v0 ^= m;
  }
  // Last block: the remaining bytes little-endian, the length's low byte on top
  // (SipHash paper §2, "b = len mod 256").
  uint64_t last = static_cast<uint64_t>(len) << 56;
  for (size_t i = 0; i < (len & 7); ++i) last |= static_cast<uint64_t>(in[whole + i]) << (8 * i);
  s.v3 ^= last;
  for (int r = 0; r < CompressionRounds; ++r) s.round();
  s.v0 ^= last;
  s.v2 ^= 0xff;
  for (int r = 0; r < FinalizationRounds; ++r) s.round();
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

}  // namespace

SipHashKey sip_hash_key_from_bytes(const uint8_t bytes[16]) {
  return SipHashKey{load_le64(bytes), load_le64(bytes + 8)};
}

uint64_t siphash13(const SipHashKey& key, const void* data, size_t len) {
  return siphash<1, 3>(key, data, len);
}

uint64_t siphash24(const SipHashKey& key, const void* data, size_t len) {
  return siphash<2, 4>(key, data, len);
}

uint64_t siphash13_u64(const SipHashKey& key, uint64_t value) {
  uint8_t bytes[8];
  store_le64(bytes, value);
  return siphash<1, 3>(key, bytes, sizeof(bytes));
}

SipHashKey derive_sip_hash_key(const SipHashKey& key, uint64_t purpose) {
  uint8_t bytes[8];
  store_le64(bytes, purpose);
  const uint64_t k0 = siphash<2, 4>(key, bytes, sizeof(bytes));
  store_le64(bytes, ~purpose);
  const uint64_t k1 = siphash<2, 4>(key, bytes, sizeof(bytes));
  return SipHashKey{k0, k1};
}

uint64_t backend_identity(std::string_view name) {
  // "l4lb backend id" as ASCII: any fixed value works, it only has to never change.
  static constexpr SipHashKey kIdentityKey{0x6b6162206276346cull, 0x6469206465646e65ull};
  return siphash24(kIdentityKey, name.data(), name.size());
}

}  // namespace l4lb::core
