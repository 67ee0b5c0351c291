// ParseIdx on arbitrary bytes: must return a status, never crash, and never
// allocate more than the input justifies.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"

#include "core/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<backprop::IdxArray> a = backprop::ParseIdx(
      absl::string_view(reinterpret_cast<const char*>(data), size));
  if (a.ok()) {
    // A parsed array accounts for its values exactly.
    size_t count = 1;
    for (uint32_t d : a->dims) count *= d;
    if (a->dims.empty() || count != a->values.size()) abort();
  }
  return 0;
}
