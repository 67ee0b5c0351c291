// The model file format and the dataset file format, and atomic file writes.
//
// Model file (little-endian):
//   "BPMODEL\0" magic (8) | u32 format version (1) | u32 header length |
//   header: spec (layer count, sizes, enums, seed, dtype), u64 epochs_trained,
//           u32 metadata length + metadata bytes (opaque to core) |
//   parameters: for l = 1..L, w(l) column-major then b(l), in the dtype |
//   u32 CRC-32 (zlib) over every byte before it.
// Loading checks magic, version, every length against the real file size
// before allocating, the spec (ValidateSpec), the checksum, and finiteness.
#ifndef BACKPROP_CORE_MODEL_FILE_H_
#define BACKPROP_CORE_MODEL_FILE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/dataset.h"
#include "core/network.h"

namespace backprop {

struct ModelRecord {
  AnyNetwork network;
  uint64_t epochs_trained = 0;
  std::string metadata;  // opaque: the server stores its own fields here
};

std::string EncodeModel(const ModelRecord& record);
// kDataLoss for anything malformed (bad magic, version, truncation, checksum,
// an invalid spec, a non-finite weight). max_parameters bounds allocation.
absl::StatusOr<ModelRecord> DecodeModel(absl::string_view bytes,
                                        uint64_t max_parameters);

// Dataset file: "BPDATA\0\0" magic | u32 version | u32 metadata length |
// metadata | u64 n | u32 features | u32 class_count | u32 target rows |
// inputs (f64) | labels (u32) or targets (f64) | u32 CRC-32.
std::string EncodeDataset(const Dataset& d, absl::string_view metadata);
absl::StatusOr<Dataset> DecodeDataset(absl::string_view bytes,
                                      std::string* metadata);

// Writes bytes to path atomically: a temp file in the same folder, fsync,
// rename over path, fsync the folder. On failure the old file (if any) is
// untouched and the temp file is removed. Errors: kResourceExhausted for
// ENOSPC/EDQUOT, kPermissionDenied, kInternal otherwise; each names the path.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes);

// Reads a whole regular file (O_NOFOLLOW: a symlink is refused), at most
// max_bytes. kNotFound, kFailedPrecondition (not a regular file / symlink),
// kResourceExhausted (too big).
absl::StatusOr<std::string> ReadFileNoFollow(const std::string& path,
                                             uint64_t max_bytes);

}  // namespace backprop

#endif  // BACKPROP_CORE_MODEL_FILE_H_
