// Readers for the data files users bring: IDX (MNIST / Fashion-MNIST, plain or
// gzip) and CSV. Every malformed file gives a precise status; no allocation is
// sized from a header before the header is checked against the real data size.
#ifndef BACKPROP_CORE_READERS_H_
#define BACKPROP_CORE_READERS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

#include "core/dataset.h"

namespace backprop {

// Limit on the decompressed size of any one file (guards against gzip bombs).
inline constexpr uint64_t kDefaultMaxFileBytes = uint64_t{1} << 30;

// The bytes of a file, gunzipped when they start with the gzip magic.
// kNotFound / kPermissionDenied / kDataLoss (corrupt gzip) /
// kResourceExhausted (over max_bytes, compressed or once decompressed:
// inflation stops at the limit), kFailedPrecondition (not a regular file).
// Concatenated gzip members are read as one stream.
absl::StatusOr<std::string> ReadMaybeGzipFile(
    const std::string& path, uint64_t max_bytes = kDefaultMaxFileBytes);

struct IdxArray {
  uint8_t type = 0;  // 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
  std::vector<uint32_t> dims;  // dims[0] is the item count
  std::vector<double> values;  // all items, row-major, as double
};

// Parses an IDX buffer (already gunzipped). kInvalidArgument for bad magic,
// an unknown type, no dimensions or a zero one, a size that disagrees with
// the header (truncated or trailing bytes), NaN/Inf floats.
absl::StatusOr<IdxArray> ParseIdx(absl::string_view bytes);

// An images file (IDX, items of any rank, flattened) and a labels file (IDX,
// rank 1, u8 or i32). Pixels of u8 images are scaled to [0, 1] (x / 255).
// kInvalidArgument when counts disagree or a label >= class_count
// (class_count 0: max label + 1); errors name the file. Labels file is read
// first, so a mismatch costs no decoding of the images.
absl::StatusOr<Dataset> ReadIdxDataset(const std::string& images_path,
                                       const std::string& labels_path,
                                       uint32_t class_count = 10);

struct CsvOptions {
  // Column holding the class label (labels mode), or -1 for "last column".
  int label_column = 0;
  bool has_labels = true;    // false: every column is a feature
  uint32_t class_count = 0;  // 0: max label + 1
  bool skip_header = false;  // true: first line is column names
  double scale = 1.0;        // features are multiplied by this
};

// CSV: one example per line, comma-separated numbers. kInvalidArgument (with
// line and column) for a non-numeric field, NaN/Inf, a ragged row, a label
// that is not a non-negative integer or >= class_count, or no rows.
absl::StatusOr<Dataset> ParseCsv(absl::string_view text, const CsvOptions& o);
absl::StatusOr<Dataset> ReadCsvFile(const std::string& path,
                                    const CsvOptions& o);

// Fashion-MNIST as Debian's dataset-fashion-mnist installs it.
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";
absl::StatusOr<Dataset> ReadFashionMnist(const std::string& dir, bool train);

}  // namespace backprop

#endif  // BACKPROP_CORE_READERS_H_
