#include "core/checksum.h"

namespace l4lb::core {

uint32_t checksum_partial(const uint8_t* data, size_t len, uint32_t initial) {
  // Accumulate in 64 bits so that no carry is lost before the final fold,
  // whatever the length.
  uint64_t sum = initial;
  size_t i = 0;
  for (; i + 1 < len; i += 2) sum += load_be16(data + i);
  if (i < len) sum += static_cast<uint64_t>(data[i]) << 8;
  while (sum >> 32) sum = (sum & 0xffffffffu) + (sum >> 32);
  return static_cast<uint32_t>(sum);
}

uint16_t checksum_finish(uint32_t partial) {
  uint32_t sum = partial;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint16_t checksum(const uint8_t* data, size_t len) {
  return checksum_finish(checksum_partial(data, len));
}

}  // namespace l4lb::core
