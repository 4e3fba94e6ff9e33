// Fuzz target: for any buffer and any 16-bit field rewrite inside it, the
// RFC 1624 incremental update must equal a full recomputation.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/checksum.h"

using namespace l4lb::core;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint16_t new_word = load_be16(data);
  std::vector<uint8_t> buffer(data + 2, data + size);
  if (buffer.size() < 2) return 0;
  const size_t offset = (new_word % (buffer.size() / 2)) * 2;
  const uint16_t before = checksum(buffer.data(), buffer.size());
  const uint16_t old_word = load_be16(buffer.data() + offset);
  store_be16(buffer.data() + offset, new_word);
  const uint16_t incremental = checksum_update16(before, old_word, new_word);
  const uint16_t full = checksum(buffer.data(), buffer.size());
  // One's complement has two zeros; the incremental form may yield 0xffff where
  // the full sum yields 0x0000 only when the data is all zeros (RFC 1624 §3).
  if (incremental != full && !(incremental == 0xffff && full == 0x0000) &&
      !(incremental == 0x0000 && full == 0xffff)) {
    abort();
  }
  return 0;
}
