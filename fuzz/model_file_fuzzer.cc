// DecodeModel on arbitrary bytes. Whatever it accepts must encode back to the
// same bytes (the format has exactly one encoding of a model).
//
// Random bytes almost never carry a correct CRC-32, so each input is also
// decoded "resealed" (its last 4 bytes replaced by the checksum of the rest):
// that copy reaches the header, spec and parameter checks behind the CRC.
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
  // A small limit: the fuzzer must not be able to make decoding allocate
  // much, whatever the header claims.
  absl::StatusOr<backprop::ModelRecord> r =
      backprop::DecodeModel(bytes, /*max_parameters=*/4096);
  if (r.ok() && backprop::EncodeModel(*r) != bytes) abort();
  if (!r.ok() && r.status().code() != absl::StatusCode::kDataLoss) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes);
  if (size >= 4) {
    const uint32_t crc =
        static_cast<uint32_t>(crc32(0, data, static_cast<uInt>(size - 4)));
    std::memcpy(&bytes[size - 4], &crc, 4);  // little-endian, as the format
    Check(bytes);
  }
  return 0;
}
