// Keyed hashing for the packet core: SipHash (Aumasson & Bernstein, 2012).
//
// Flow-table buckets and scheduler picks are chosen from attacker-controlled
// header fields, so an unkeyed hash would let a client aim every flow at one
// bucket. SipHash is a PRF under a 128-bit secret key: without the key, a
// client cannot predict which tuples collide.
//
// SipHash-1-3 (one compression round, three finalisation rounds) is the
// hash-table variant used by CPython and Rust's HashMap; SipHash-2-4 is the
// conservative PRF, kept for identities that must never collide by accident
// and for checking the implementation against the reference test vectors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace l4lb::core {

// The 128-bit key, as in the reference implementation: k0 is bytes 0..7 of the
// key read little-endian, k1 bytes 8..15.
struct SipHashKey {
  uint64_t k0 = 0;
  uint64_t k1 = 0;
};

// Builds a key from 16 bytes (reference byte order: little-endian halves).
SipHashKey sip_hash_key_from_bytes(const uint8_t bytes[16]);

// Message bytes are read little-endian, as the reference does, so results are
// the same on every host.
uint64_t siphash13(const SipHashKey& key, const void* data, size_t len);
uint64_t siphash24(const SipHashKey& key, const void* data, size_t len);

// A 64-bit value hashed as its 8 little-endian bytes.
uint64_t siphash13_u64(const SipHashKey& key, uint64_t value);

// Derives an independent key from `key` for another purpose (for example the
// client-address hash of `sh` next to the flow hash), so that one secret per
// process is enough and the two hashes are not correlated.
SipHashKey derive_sip_hash_key(const SipHashKey& key, uint64_t purpose);

// Stable 64-bit identity of a backend from a caller-chosen name such as
// "198.18.1.2:8080". Fixed key: identical in every process and after restarts,
// which Maglev needs for its tables to agree across balancers (NSDI'16 §3.4).
uint64_t backend_identity(std::string_view name);

}  // namespace l4lb::core
