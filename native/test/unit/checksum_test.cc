#include <gtest/gtest.h>

#include <array>
#include <cstdint>

#include "core/checksum.h"

using namespace l4lb::core;

// RFC 1071 §3 worked example: the words 0x0001 0xf203 0xf4f5 0xf6f7 sum to
// 0xddf2 (one's complement), so the checksum is ~0xddf2 = 0x220d.
TEST(Checksum, Rfc1071Example) {
  const std::array<uint8_t, 8> data{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(checksum_partial(data.data(), data.size()), 0x2ddf0u);
  EXPECT_EQ(checksum(data.data(), data.size()), 0x220d);
}

// A real IPv4 header (checksum field 0xb861) verifies to zero.
TEST(Checksum, Ipv4HeaderVerifiesToZero) {
  const std::array<uint8_t, 20> header{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                       0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(checksum(header.data(), header.size()), 0);
}

TEST(Checksum, OddLengthPadsWithZero) {
  const std::array<uint8_t, 3> data{0x12, 0x34, 0x56};
  EXPECT_EQ(checksum(data.data(), data.size()), static_cast<uint16_t>(~(0x1234 + 0x5600)));
}

// RFC 1624 §4: changing a word incrementally gives the same result as a full
// recomputation, including the -0/+0 corner that eqn. 2 gets wrong.
TEST(Checksum, IncrementalMatchesFull) {
  std::array<uint8_t, 20> header{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                 0x00, 0x00, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x64};
  store_be16(header.data() + 10, checksum(header.data(), header.size()));
  const uint16_t before = load_be16(header.data() + 10);
  const uint32_t old_dst = load_be32(header.data() + 16);
  const uint32_t new_dst = 0xc6120102;
  store_be32(header.data() + 16, new_dst);
  const uint16_t incremental = checksum_update32(before, old_dst, new_dst);
  store_be16(header.data() + 10, 0);
  EXPECT_EQ(incremental, checksum(header.data(), header.size()));
}

TEST(Checksum, IncrementalPreservesAWrongChecksum) {
  std::array<uint8_t, 4> words{0x12, 0x34, 0xab, 0xcd};
  const uint16_t correct = checksum(words.data(), words.size());
  const uint16_t wrong = static_cast<uint16_t>(correct + 7);
  const uint16_t updated = checksum_update16(wrong, 0x1234, 0x4321);
  store_be16(words.data(), 0x4321);
  EXPECT_NE(updated, checksum(words.data(), words.size()));
}
