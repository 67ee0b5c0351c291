#include "client/data_files.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#include <zlib.h>

namespace backprop::client {
namespace {

uint32_t ReadBigEndian32(const unsigned char* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Size in bytes of one IDX element of the given type code, or 0 if unknown.
size_t IdxElementSize(unsigned char type) {
  switch (type) {
    case 0x08:  // unsigned byte
    case 0x09:  // signed byte
      return 1;
    case 0x0B:  // short
      return 2;
    case 0x0C:  // int
    case 0x0D:  // float
      return 4;
    case 0x0E:  // double
      return 8;
    default:
      return 0;
  }
}

// Element i of an IDX payload as a double (IDX is big-endian).
double IdxElement(const unsigned char* data, unsigned char type, uint64_t i) {
  switch (type) {
    case 0x08:
      return data[i];
    case 0x09:
      return static_cast<int8_t>(data[i]);
    case 0x0B: {
      const unsigned char* p = data + 2 * i;
      return static_cast<int16_t>((uint16_t{p[0]} << 8) | p[1]);
    }
    case 0x0C:
      return static_cast<int32_t>(ReadBigEndian32(data + 4 * i));
    case 0x0D: {
      const uint32_t bits = ReadBigEndian32(data + 4 * i);
      float f;
      std::memcpy(&f, &bits, sizeof(f));
      return f;
    }
    default: {  // 0x0E
      const unsigned char* p = data + 8 * i;
      const uint64_t bits =
          (uint64_t{ReadBigEndian32(p)} << 32) | ReadBigEndian32(p + 4);
      double d;
      std::memcpy(&d, &bits, sizeof(d));
      return d;
    }
  }
}

struct IdxView {
  unsigned char type = 0;
  std::vector<uint32_t> dims;
  const unsigned char* data = nullptr;
  uint64_t items = 0;      // dims[0]
  uint64_t item_size = 1;  // product of dims[1..], in elements
};

absl::StatusOr<IdxView> ViewIdx(const std::string& bytes,
                                const std::string& what) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() < 4 || b[0] != 0 || b[1] != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not an IDX file (bad magic number)"));
  }
  IdxView v;
  v.type = b[2];
  const size_t element = IdxElementSize(v.type);
  if (element == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": unknown IDX element type 0x",
                     absl::Hex(v.type, absl::kZeroPad2)));
  }
  const size_t rank = b[3];
  if (rank == 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": IDX rank is 0"));
  }
  const size_t header = 4 + 4 * rank;
  if (bytes.size() < header) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": truncated IDX header"));
  }
  // Sizes are multiplied with overflow checks; the product is compared with
  // the bytes actually present before anything is allocated from it.
  const uint64_t available = bytes.size() - header;
  uint64_t elements = 1;
  for (size_t d = 0; d < rank; ++d) {
    const uint32_t dim = ReadBigEndian32(b + 4 + 4 * d);
    v.dims.push_back(dim);
    if (dim == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": IDX dimension ", d, " is 0"));
    }
    if (elements > available / dim) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": IDX header promises more data than the file holds"));
    }
    elements *= dim;
    if (d > 0) v.item_size *= dim;
  }
  if (elements > available / element || elements * element != available) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": IDX data size (", available, " bytes) does not match the ",
        "header (", elements, " elements of ", element, " bytes)"));
  }
  v.items = v.dims[0];
  v.data = b + header;
  return v;
}

absl::Status ParseNumber(const std::string& field, size_t line, size_t column,
                         double* out) {
  const char* begin = field.c_str();
  while (*begin == ' ' || *begin == '\t') ++begin;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(begin, &end);
  while (end != nullptr && (*end == ' ' || *end == '\t' || *end == '\r')) {
    ++end;
  }
  if (end == begin || end == nullptr || *end != '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat("line ", line, ", column ", column + 1, ": '",
                     field.substr(0, 40), "' is not a number"));
  }
  if (!std::isfinite(v)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "line ", line, ", column ", column + 1, ": value is not finite"));
  }
  *out = v;
  return absl::OkStatus();
}

std::vector<std::string> SplitFields(const std::string& line) {
  std::vector<std::string> fields;
  size_t start = 0;
  while (true) {
    const size_t comma = line.find(',', start);
    fields.push_back(line.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return fields;
}

bool IsBlank(const std::string& line) {
  return line.find_first_not_of(" \t\r") == std::string::npos;
}

}  // namespace

uint32_t ExampleSet::max_label() const {
  uint32_t m = 0;
  for (uint32_t l : labels) m = std::max(m, l);
  return m;
}

absl::StatusOr<std::string> ReadFileMaybeGzip(const std::string& path,
                                              uint64_t max_bytes) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open (", std::strerror(errno), ")"));
  }
  std::string out;
  char buf[1 << 16];
  while (true) {
    const int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int errnum = 0;
      const std::string message = gzerror(f, &errnum);
      gzclose(f);
      return absl::DataLossError(
          absl::StrCat(path, ": corrupt gzip data (", message, ")"));
    }
    if (n == 0) break;
    if (out.size() + static_cast<uint64_t>(n) > max_bytes) {
      gzclose(f);
      return absl::ResourceExhaustedError(absl::StrCat(
          path, ": larger than ", max_bytes, " bytes once decompressed"));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  // Z_BUF_ERROR here means the gzip stream ended early (a truncated file).
  if (gzclose(f) != Z_OK) {
    return absl::DataLossError(absl::StrCat(path, ": truncated gzip data"));
  }
  return out;
}

absl::StatusOr<ExampleSet> ParseIdx(const std::string& images,
                                    const std::string* labels, uint64_t limit) {
  absl::StatusOr<IdxView> x = ViewIdx(images, "images");
  if (!x.ok()) return x.status();
  ExampleSet set;
  set.cols = x->item_size;
  set.rows = limit > 0 ? std::min<uint64_t>(limit, x->items) : x->items;
  if (labels != nullptr) {
    absl::StatusOr<IdxView> y = ViewIdx(*labels, "labels");
    if (!y.ok()) return y.status();
    if (y->dims.size() != 1 || y->type == 0x0D || y->type == 0x0E) {
      return absl::InvalidArgumentError(
          "labels: expected a rank-1 IDX file of integers");
    }
    if (y->items != x->items) {
      return absl::InvalidArgumentError(
          absl::StrCat("images file has ", x->items, " examples but labels ",
                       "file has ", y->items));
    }
    set.labels.resize(set.rows);
    for (uint64_t i = 0; i < set.rows; ++i) {
      const double label = IdxElement(y->data, y->type, i);
      if (label < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("labels: label ", i, " is negative"));
      }
      set.labels[i] = static_cast<uint32_t>(label);
    }
  }
  const uint64_t n = set.rows * set.cols;
  set.inputs.resize(n);
  // u8 images are pixels: scaled to [0, 1] as the server's reader does.
  const double scale = x->type == 0x08 ? 1.0 / 255.0 : 1.0;
  for (uint64_t i = 0; i < n; ++i) {
    const double v = IdxElement(x->data, x->type, i) * scale;
    if (!std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("images: value ", i, " is not finite"));
    }
    set.inputs[i] = v;
  }
  return set;
}

absl::StatusOr<ExampleSet> LoadIdx(const std::string& images_path,
                                   const std::string& labels_path,
                                   uint64_t limit) {
  absl::StatusOr<std::string> images = ReadFileMaybeGzip(images_path);
  if (!images.ok()) return images.status();
  if (labels_path.empty()) return ParseIdx(*images, nullptr, limit);
  absl::StatusOr<std::string> labels = ReadFileMaybeGzip(labels_path);
  if (!labels.ok()) return labels.status();
  absl::StatusOr<ExampleSet> set = ParseIdx(*images, &*labels, limit);
  if (!set.ok()) {
    return absl::Status(set.status().code(),
                        absl::StrCat(images_path, " + ", labels_path, ": ",
                                     set.status().message()));
  }
  return set;
}

absl::StatusOr<ExampleSet> ParseCsv(const std::string& text,
                                    const CsvOptions& options, uint64_t limit) {
  ExampleSet set;
  size_t line_number = 0;
  size_t pos = 0;
  bool header_skipped = !options.skip_header;
  std::vector<double> row;
  while (pos < text.size() && (limit == 0 || set.rows < limit)) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (IsBlank(line)) continue;
    if (!header_skipped) {
      header_skipped = true;
      continue;
    }
    const std::vector<std::string> fields = SplitFields(line);
    int label_column = -1;
    if (options.has_label) {
      label_column =
          options.label_column >= 0
              ? options.label_column
              : static_cast<int>(fields.size()) + options.label_column;
      if (label_column < 0 || label_column >= static_cast<int>(fields.size())) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", line_number, ": no label column ", options.label_column,
            " in ", fields.size(), " columns"));
      }
    }
    const uint64_t width = fields.size() - (options.has_label ? 1 : 0);
    if (width == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": no feature columns"));
    }
    if (set.rows == 0) {
      set.cols = width;
    } else if (width != set.cols) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": ", width,
                       " features, but earlier rows ", "have ", set.cols));
    }
    for (size_t c = 0; c < fields.size(); ++c) {
      double v = 0;
      if (absl::Status s = ParseNumber(fields[c], line_number, c, &v);
          !s.ok()) {
        return s;
      }
      if (static_cast<int>(c) == label_column) {
        if (v < 0 || v != std::floor(v) || v > 1e9) {
          return absl::InvalidArgumentError(
              absl::StrCat("line ", line_number, ", column ", c + 1,
                           ": a label must be a non-negative integer"));
        }
        set.labels.push_back(static_cast<uint32_t>(v));
      } else {
        set.inputs.push_back(v);
      }
    }
    ++set.rows;
  }
  if (set.rows == 0) return absl::InvalidArgumentError("no rows in the CSV");
  return set;
}

absl::StatusOr<ExampleSet> LoadCsv(const std::string& path,
                                   const CsvOptions& options, uint64_t limit) {
  absl::StatusOr<std::string> text = ReadFileMaybeGzip(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<ExampleSet> set = ParseCsv(*text, options, limit);
  if (!set.ok()) {
    return absl::Status(set.status().code(),
                        absl::StrCat(path, ": ", set.status().message()));
  }
  return set;
}

absl::StatusOr<ExampleSet> ParseValueRows(
    const std::vector<std::string>& rows) {
  std::string text;
  for (const std::string& r : rows) {
    if (r.find('\n') != std::string::npos) {
      return absl::InvalidArgumentError("--values must be one row each");
    }
    text += r + "\n";
  }
  absl::StatusOr<ExampleSet> set = ParseCsv(text, CsvOptions{}, 0);
  if (!set.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--values: ", set.status().message()));
  }
  return set;
}

}  // namespace backprop::client
