// The model file format and the dataset file format, and atomic file writes.
//
// Model file (little-endian; offsets in bytes):
//   0  "BPMODEL\0" magic (8)
//   8  u32 format version (1)
//   12 u32 header length H
//   16 header (H bytes):
//        u32 layer count, u32 x count layer sizes,
//        u8 hidden activation, u8 output activation, u8 cost, u8 initializer,
//        u8 dtype (enum values of spec.h), 3 reserved bytes (0),
//        u64 seed, u64 epochs_trained, u32 metadata length + metadata bytes
//        (opaque to core)
//   16+H parameters: for l = 1..L, w(l) column-major then b(l), in the dtype
//   end-4 u32 CRC-32 (zlib) over every byte before it.
// Loading checks magic, version, the checksum, every length against the real
// file size before allocating, the spec (ValidateSpec), and finiteness.
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

// Dataset file (little-endian): "BPDATA\0\0" magic | u32 version (1) |
// u32 metadata length | metadata | u64 n | u32 features | u32 class_count |
// u32 target rows (exactly one of the two is > 0) | inputs (f64, features x n
// column-major) | labels (u32 x n) or targets (f64, rows x n) | u32 CRC-32.
// EncodeDataset expects a dataset that passes Dataset::Validate().
// DecodeDataset: kDataLoss for anything malformed (as DecodeModel); every
// allocation is bounded by the file's size. metadata may be null.
std::string EncodeDataset(const Dataset& d, absl::string_view metadata);
absl::StatusOr<Dataset> DecodeDataset(absl::string_view bytes,
                                      std::string* metadata);

// Writes bytes to path atomically: a temp file in the same folder, fsync,
// rename over path, fsync the folder. On failure the old file (if any) is
// untouched and the temp file (".NAME.tmp.XXXXXX" next to it) is removed.
// The file gets mode 0600. Errors: kResourceExhausted for ENOSPC/EDQUOT,
// kPermissionDenied for EACCES/EPERM/EROFS, kInternal otherwise; each names
// the path and the OS error. If only the final fsync of the folder fails,
// the new file is already in place and the error says so.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes);

// Reads a whole regular file (O_NOFOLLOW: a symlink is refused), at most
// max_bytes. kNotFound, kFailedPrecondition (a symlink, or not a regular
// file: folders and FIFOs are refused without blocking), kPermissionDenied,
// kResourceExhausted (too big).
absl::StatusOr<std::string> ReadFileNoFollow(const std::string& path,
                                             uint64_t max_bytes);

}  // namespace backprop

#endif  // BACKPROP_CORE_MODEL_FILE_H_
