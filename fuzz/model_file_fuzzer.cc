// DecodeModel on arbitrary bytes. Whatever it accepts must encode back to the
// same bytes (the format has exactly one encoding of a model).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"

#include "core/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  // A small limit: the fuzzer must not be able to make decoding allocate
  // much, whatever the header claims.
  absl::StatusOr<backprop::ModelRecord> r =
      backprop::DecodeModel(bytes, /*max_parameters=*/4096);
  if (r.ok() && backprop::EncodeModel(*r) != bytes) abort();
  if (!r.ok() && r.status().code() != absl::StatusCode::kDataLoss) abort();
  return 0;
}
