// DecodeDataset on arbitrary bytes. Whatever it accepts must encode back to
// the same bytes, and be a dataset that passes its own validation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"

#include "core/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  std::string metadata;
  absl::StatusOr<backprop::Dataset> d =
      backprop::DecodeDataset(bytes, &metadata);
  if (d.ok()) {
    if (!d->Validate().ok()) abort();
    if (backprop::EncodeDataset(*d, metadata) != bytes) abort();
  } else if (d.status().code() != absl::StatusCode::kDataLoss) {
    abort();
  }
  return 0;
}
