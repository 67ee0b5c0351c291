// DecodeDataset on arbitrary bytes. Whatever it accepts must encode back to
// the same bytes, and be a dataset that passes its own validation.
//
// Each input is also decoded "resealed" (last 4 bytes replaced by the CRC-32
// of the rest) so that the checks behind the checksum get fuzzed too.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"

#include "core/model_file.h"
#include <zlib.h>

namespace {

void Check(absl::string_view bytes) {
  std::string metadata;
  absl::StatusOr<backprop::Dataset> d =
      backprop::DecodeDataset(bytes, &metadata);
  if (d.ok()) {
    if (!d->Validate().ok()) abort();
    if (backprop::EncodeDataset(*d, metadata) != bytes) abort();
  } else if (d.status().code() != absl::StatusCode::kDataLoss) {
    abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes);
  if (size >= 4) {
    const uint32_t crc =
        static_cast<uint32_t>(crc32(0, data, static_cast<uInt>(size - 4)));
    std::memcpy(&bytes[size - 4], &crc, 4);
    Check(bytes);
  }
  return 0;
}
