#include "io/driver_factory.h"

namespace l4lb::io {

std::shared_ptr<Driver> make_driver(const DriverSpec& spec, PortError* error) {
  if (spec.name == "memory") return std::make_shared<MemoryDriver>(spec.interfaces, spec.memory);
  if (spec.name == "af_packet") return std::make_shared<AfPacketDriver>(spec.af_packet);
  error->code = "EDRIVER_UNAVAILABLE";
  error->message = "no driver named '" + spec.name + "' in this build";
  error->error_number = 0;
  return nullptr;
}

}  // namespace l4lb::io
