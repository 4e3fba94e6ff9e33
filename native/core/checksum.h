// Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//
// Every rewrite of an existing header updates its checksums incrementally, so
// a checksum that arrived wrong leaves wrong by the same amount (the balancer
// never "repairs" a corrupt packet into a valid one). Full computation is only
// for headers the balancer creates itself.
#pragma once

#include <cstddef>
#include <cstdint>

namespace l4lb::core {

// One's-complement sum of `len` bytes, folded to 32 bits but not inverted.
// Bytes are summed as big-endian 16-bit words; an odd final byte is padded
// with zero (RFC 1071 §4.1). `initial` lets callers chain partial sums.
uint32_t checksum_partial(const uint8_t* data, size_t len, uint32_t initial = 0);

// Folds a partial sum to 16 bits and complements it: the value to store in a
// header's checksum field (host order; store it big-endian).
uint16_t checksum_finish(uint32_t partial);

// Convenience: checksum_finish(checksum_partial(data, len)).
uint16_t checksum(const uint8_t* data, size_t len);

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a 16-bit field changing from
// `old_word` to `new_word`. All values in host order.
inline uint16_t checksum_update16(uint16_t old_checksum, uint16_t old_word, uint16_t new_word) {
  uint32_t sum = static_cast<uint16_t>(~old_checksum);
  sum += static_cast<uint16_t>(~old_word);
  sum += new_word;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// The same for a 32-bit field (an IPv4 address), as two 16-bit halves.
inline uint16_t checksum_update32(uint16_t old_checksum, uint32_t old_value, uint32_t new_value) {
  uint16_t c = checksum_update16(old_checksum, static_cast<uint16_t>(old_value >> 16),
                                 static_cast<uint16_t>(new_value >> 16));
  return checksum_update16(c, static_cast<uint16_t>(old_value & 0xffff),
                           static_cast<uint16_t>(new_value & 0xffff));
}

// Big-endian loads and stores; every on-the-wire field goes through these so
// that no code depends on host byte order or alignment.
inline uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t load_be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | p[3];
}
inline void store_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void store_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

}  // namespace l4lb::core
