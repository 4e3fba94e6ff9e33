// Reader of native/test/fixtures/packets.txt (exported by
// tools/export-fixtures.ts from the TypeScript fixture table).
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace l4lb::test {

struct FixtureFrame {
  uint32_t port = 0;
  std::vector<uint8_t> bytes;
};

struct FixtureStep {
  uint64_t now_ms = 0;
  std::vector<uint8_t> publish;  // empty: no new snapshot
  bool has_inject = false;
  uint32_t inject_flags = 0;
  FixtureFrame inject;
  std::vector<FixtureFrame> expect;
  std::vector<std::pair<std::string, uint64_t>> drops;
  std::vector<std::pair<std::string, uint64_t>> counters;
};

struct Fixture {
  std::string name;
  std::string description;
  uint32_t ports = 0;
  std::vector<uint8_t> snapshot;
  std::vector<FixtureStep> steps;
};

inline std::vector<uint8_t> from_hex(const std::string& hex) {
  if (hex.size() % 2 != 0) throw std::runtime_error("odd hex length");
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

inline std::vector<Fixture> read_fixtures(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<Fixture> fixtures;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string verb;
    words >> verb;
    if (verb == "fixture") {
      fixtures.emplace_back();
      words >> fixtures.back().name;
      continue;
    }
    if (fixtures.empty()) throw std::runtime_error("line before the first fixture: " + line);
    Fixture& f = fixtures.back();
    if (verb == "description") {
      f.description = line.substr(12);
    } else if (verb == "ports") {
      words >> f.ports;
    } else if (verb == "snapshot") {
      std::string hex;
      words >> hex;
      f.snapshot = from_hex(hex);
    } else if (verb == "step") {
      f.steps.emplace_back();
      words >> f.steps.back().now_ms;
    } else if (verb == "publish") {
      std::string hex;
      words >> hex;
      f.steps.back().publish = from_hex(hex);
    } else if (verb == "inject") {
      std::string hex;
      FixtureStep& s = f.steps.back();
      words >> s.inject.port >> s.inject_flags >> hex;
      s.inject.bytes = from_hex(hex);
      s.has_inject = true;
    } else if (verb == "expect") {
      FixtureFrame frame;
      std::string hex;
      words >> frame.port >> hex;
      frame.bytes = from_hex(hex);
      f.steps.back().expect.push_back(std::move(frame));
    } else if (verb == "drop" || verb == "counter") {
      std::string name;
      uint64_t value = 0;
      words >> name >> value;
      (verb == "drop" ? f.steps.back().drops : f.steps.back().counters).emplace_back(name, value);
    } else if (verb != "end") {
      throw std::runtime_error("unknown line: " + line);
    }
  }
  return fixtures;
}

}  // namespace l4lb::test
