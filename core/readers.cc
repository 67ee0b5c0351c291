// IDX and CSV readers. Sizes taken from a file are checked (with overflow
// checks) against the number of bytes actually present before anything is
// allocated from them.
#include "core/readers.h"

#include <errno.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

#include "core/files.h"
#include <zlib.h>

namespace backprop {
namespace {

absl::Status Annotate(const absl::Status& s, absl::string_view path) {
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

// A missing file or folder, or one we may not read, is the user's to fix.
absl::StatusCode UserFileErrnoCode(int err) {
  if (err == ENOENT || err == ENOTDIR) return absl::StatusCode::kNotFound;
  if (err == EACCES || err == EPERM) return absl::StatusCode::kPermissionDenied;
  return absl::StatusCode::kInternal;
}

// Reads a whole regular file of at most max_bytes (symlinks are followed:
// these are files the user names).
absl::StatusOr<std::string> ReadRegularFile(const std::string& path,
                                            uint64_t max_bytes) {
  return ReadWholeFile(path, max_bytes, Symlinks::kFollow, UserFileErrnoCode,
                       "file is ");
}

bool IsGzip(absl::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

// Inflates one or more concatenated gzip members, failing as soon as the
// output would exceed max_bytes (a gzip bomb never gets fully expanded).
absl::StatusOr<std::string> Gunzip(absl::string_view in, uint64_t max_bytes,
                                   absl::string_view path) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
    return absl::InternalError(absl::StrCat(path, ": inflateInit2 failed"));
  }
  std::string out;
  char buf[1 << 16];
  size_t pos = 0;
  absl::Status status;
  while (true) {
    if (zs.avail_in == 0) {
      size_t chunk = std::min<size_t>(in.size() - pos, 1u << 30);
      zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + pos));
      zs.avail_in = static_cast<uInt>(chunk);
      pos += chunk;
    }
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    int rc = inflate(&zs, Z_NO_FLUSH);
    size_t produced = sizeof(buf) - zs.avail_out;
    if (produced > 0) {
      if (out.size() + produced > max_bytes) {
        status = absl::ResourceExhaustedError(absl::StrCat(
            path, ": more than ", max_bytes, " bytes once decompressed"));
        break;
      }
      out.append(buf, produced);
    }
    if (rc == Z_STREAM_END) {
      // Another gzip member may follow (RFC 1952 allows concatenation).
      if (zs.avail_in == 0 && pos == in.size()) break;
      if (inflateReset(&zs) != Z_OK) {
        status = absl::InternalError(absl::StrCat(path, ": inflateReset"));
        break;
      }
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && pos == in.size()) {
      status =
          absl::DataLossError(absl::StrCat(path, ": gzip data is truncated"));
      break;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      status = absl::DataLossError(absl::StrCat(
          path, ": corrupt gzip data (", zs.msg ? zs.msg : "zlib error", ")"));
      break;
    }
  }
  inflateEnd(&zs);
  if (!status.ok()) return status;
  return out;
}

uint32_t LoadBe32(const char* p) {
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) |
         (uint32_t{u[2]} << 8) | uint32_t{u[3]};
}

uint64_t LoadBe64(const char* p) {
  return (uint64_t{LoadBe32(p)} << 32) | LoadBe32(p + 4);
}

size_t IdxElementSize(uint8_t type) {
  switch (type) {
    case 0x08:  // u8
    case 0x09:  // i8
      return 1;
    case 0x0B:  // i16
      return 2;
    case 0x0C:  // i32
    case 0x0D:  // f32
      return 4;
    case 0x0E:  // f64
      return 8;
    default:
      return 0;
  }
}

// An IDX header checked against the buffer: data_offset + count * element
// size == bytes.size(), computed without overflow.
struct IdxHeader {
  uint8_t type = 0;
  std::vector<uint32_t> dims;
  uint64_t count = 0;  // product of dims
  size_t data_offset = 0;
};

absl::StatusOr<IdxHeader> ParseIdxHeader(absl::string_view bytes) {
  if (bytes.size() < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("IDX: truncated magic (", bytes.size(), " of 4 bytes)"));
  }
  if (bytes[0] != 0 || bytes[1] != 0) {
    return absl::InvalidArgumentError(
        "IDX: bad magic (the first two bytes must be zero)");
  }
  IdxHeader h;
  h.type = static_cast<uint8_t>(bytes[2]);
  const size_t element_size = IdxElementSize(h.type);
  if (element_size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "IDX: unknown element type 0x", absl::Hex(h.type, absl::kZeroPad2)));
  }
  const size_t rank = static_cast<uint8_t>(bytes[3]);
  if (rank == 0) {
    return absl::InvalidArgumentError("IDX: zero dimensions");
  }
  h.data_offset = 4 + 4 * rank;
  if (bytes.size() < h.data_offset) {
    return absl::InvalidArgumentError(
        absl::StrCat("IDX: truncated header (", bytes.size(), " bytes, need ",
                     h.data_offset, " for ", rank, " dimensions)"));
  }
  h.dims.reserve(rank);
  uint64_t count = 1;
  for (size_t i = 0; i < rank; ++i) {
    uint32_t d = LoadBe32(bytes.data() + 4 + 4 * i);
    if (d == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("IDX: dimension ", i, " is zero"));
    }
    // The data can never exceed the buffer, so a product above it is an
    // error whether or not it would overflow 64 bits.
    if (count > bytes.size() / d) {
      return absl::InvalidArgumentError(absl::StrCat(
          "IDX: truncated: the header's dimensions need more data than the ",
          bytes.size(), " bytes present"));
    }
    count *= d;
    h.dims.push_back(d);
  }
  h.count = count;
  const uint64_t available = bytes.size() - h.data_offset;
  if (count > available / element_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "IDX: truncated: the header promises ", count, " values of ",
        element_size, " bytes but only ", available, " data bytes follow"));
  }
  const uint64_t need = count * element_size;
  if (need != available) {
    return absl::InvalidArgumentError(
        absl::StrCat("IDX: ", available - need, " trailing bytes after the ",
                     count, " values the header declares"));
  }
  return h;
}

// Calls out[i] = get(i) for every value; float types are checked for NaN/Inf
// (integer types cannot hold them). One loop per type keeps the switch out of
// the per-value path (60,000 Fashion-MNIST images are 47 million values).
template <bool kCheckFinite, typename Get>
absl::Status DecodeLoop(uint64_t count, double* out, Get get) {
  for (uint64_t i = 0; i < count; ++i) {
    const double v = get(i);
    if (kCheckFinite && !std::isfinite(v)) {
      return absl::InvalidArgumentError(
          absl::StrCat("IDX: value ", i, " is NaN or infinite"));
    }
    out[i] = v;
  }
  return absl::OkStatus();
}

// Decodes the h.count values after the header into out[0..count).
absl::Status DecodeIdxValues(absl::string_view bytes, const IdxHeader& h,
                             double* out) {
  const char* p = bytes.data() + h.data_offset;
  const auto* u = reinterpret_cast<const uint8_t*>(p);
  switch (h.type) {
    case 0x08:
      return DecodeLoop<false>(
          h.count, out, [u](uint64_t i) { return static_cast<double>(u[i]); });
    case 0x09:
      return DecodeLoop<false>(h.count, out, [u](uint64_t i) {
        return static_cast<double>(static_cast<int8_t>(u[i]));
      });
    case 0x0B:
      return DecodeLoop<false>(h.count, out, [u](uint64_t i) {
        return static_cast<double>(static_cast<int16_t>(
            static_cast<uint16_t>((u[2 * i] << 8) | u[2 * i + 1])));
      });
    case 0x0C:
      return DecodeLoop<false>(h.count, out, [p](uint64_t i) {
        return static_cast<double>(static_cast<int32_t>(LoadBe32(p + 4 * i)));
      });
    case 0x0D:
      return DecodeLoop<true>(h.count, out, [p](uint64_t i) {
        uint32_t bits = LoadBe32(p + 4 * i);
        float f;
        std::memcpy(&f, &bits, sizeof(f));
        return static_cast<double>(f);
      });
    case 0x0E:
      return DecodeLoop<true>(h.count, out, [p](uint64_t i) {
        uint64_t bits = LoadBe64(p + 8 * i);
        double v;
        std::memcpy(&v, &bits, sizeof(v));
        return v;
      });
  }
  return absl::InternalError("IDX: unchecked element type");
}

absl::StatusOr<std::pair<IdxHeader, std::string>> ReadIdxFile(
    const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadMaybeGzipFile(path);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<IdxHeader> h = ParseIdxHeader(*bytes);
  if (!h.ok()) return Annotate(h.status(), path);
  return std::make_pair(*std::move(h), *std::move(bytes));
}

absl::Status CsvError(size_t line, size_t column, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("line ", line, ", column ", column, ": ", what));
}

}  // namespace

absl::StatusOr<std::string> ReadMaybeGzipFile(const std::string& path,
                                              uint64_t max_bytes) {
  absl::StatusOr<std::string> raw = ReadRegularFile(path, max_bytes);
  if (!raw.ok() || !IsGzip(*raw)) return raw;
  return Gunzip(*raw, max_bytes, path);
}

absl::StatusOr<IdxArray> ParseIdx(absl::string_view bytes) {
  absl::StatusOr<IdxHeader> h = ParseIdxHeader(bytes);
  if (!h.ok()) return h.status();
  IdxArray a;
  a.type = h->type;
  a.dims = h->dims;
  a.values.resize(h->count);
  if (absl::Status s = DecodeIdxValues(bytes, *h, a.values.data()); !s.ok()) {
    return s;
  }
  return a;
}

absl::StatusOr<Dataset> ReadIdxDataset(const std::string& images_path,
                                       const std::string& labels_path,
                                       uint32_t class_count) {
  // Labels first: they are small, and a mismatch is found before the big
  // images buffer is decoded.
  auto labels = ReadIdxFile(labels_path);
  if (!labels.ok()) return labels.status();
  const IdxHeader& lh = labels->first;
  if (lh.dims.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        labels_path, ": labels must have 1 dimension, not ", lh.dims.size()));
  }
  if (lh.type != 0x08 && lh.type != 0x0C) {
    return absl::InvalidArgumentError(
        absl::StrCat(labels_path, ": labels must be u8 or i32"));
  }
  auto images = ReadIdxFile(images_path);
  if (!images.ok()) return images.status();
  const IdxHeader& ih = images->first;
  const uint64_t n = ih.dims[0];
  if (n != lh.count) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_path, " has ", n, " items but ", labels_path,
                     " has ", lh.count, " labels"));
  }
  const uint64_t features = ih.count / n;
  if (features > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(images_path, ": ", features, " values per item"));
  }

  Dataset d;
  std::vector<double> label_values(lh.count);
  if (absl::Status s = DecodeIdxValues(labels->second, lh, label_values.data());
      !s.ok()) {
    return Annotate(s, labels_path);
  }
  uint32_t max_label = 0;
  d.labels.resize(n);
  for (uint64_t i = 0; i < n; ++i) {
    double v = label_values[i];
    if (v < 0 || (class_count > 0 && v >= class_count)) {
      return absl::InvalidArgumentError(
          absl::StrCat(labels_path, ": label ", i, " is ", v, ", outside [0, ",
                       class_count, ")"));
    }
    d.labels[i] = static_cast<uint32_t>(v);
    max_label = std::max(max_label, d.labels[i]);
  }
  d.class_count = class_count > 0 ? class_count : max_label + 1;

  // One item is one example: the row-major items are exactly the columns of
  // a features x n column-major matrix.
  d.inputs.set_size(static_cast<arma::uword>(features),
                    static_cast<arma::uword>(n));
  if (absl::Status s = DecodeIdxValues(images->second, ih, d.inputs.memptr());
      !s.ok()) {
    return Annotate(s, images_path);
  }
  if (ih.type == 0x08) d.inputs /= 255.0;
  return d;
}

absl::StatusOr<Dataset> ParseCsv(absl::string_view text, const CsvOptions& o) {
  if (!std::isfinite(o.scale)) {
    return absl::InvalidArgumentError("CSV: scale must be finite");
  }
  if (o.has_labels && o.label_column < -1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CSV: label_column ", o.label_column, " is invalid"));
  }
  std::vector<double> features;  // row-major, one example per row
  std::vector<uint32_t> labels;
  size_t width = 0;        // fields per row, from the first data row
  size_t label_index = 0;  // 0-based field index of the label
  size_t line_no = 0;
  bool header_pending = o.skip_header;
  uint32_t max_label = 0;

  // A UTF-8 byte order mark, as spreadsheet exports write, is not data.
  absl::ConsumePrefix(&text, "\xEF\xBB\xBF");
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    if (header_pending) {
      header_pending = false;
      continue;
    }
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (width == 0) {
      width = fields.size();
      if (o.has_labels) {
        if (o.label_column == -1) {
          label_index = width - 1;
        } else if (static_cast<size_t>(o.label_column) >= width) {
          return CsvError(line_no, 1,
                          absl::StrCat("label column ", o.label_column + 1,
                                       " is past the ", width, " fields"));
        } else {
          label_index = static_cast<size_t>(o.label_column);
        }
        if (width < 2) {
          return CsvError(line_no, 1, "a row needs a label and a feature");
        }
      }
    } else if (fields.size() != width) {
      return CsvError(line_no, std::min(fields.size(), width) + 1,
                      absl::StrCat("row has ", fields.size(),
                                   " fields, the first row has ", width));
    }
    for (size_t c = 0; c < fields.size(); ++c) {
      absl::string_view f = absl::StripAsciiWhitespace(fields[c]);
      double v;
      if (f.empty() || !absl::SimpleAtod(f, &v)) {
        return CsvError(
            line_no, c + 1,
            absl::StrCat("'", f.substr(0, 32), "' is not a number"));
      }
      if (!std::isfinite(v)) {
        return CsvError(
            line_no, c + 1,
            absl::StrCat("'", f.substr(0, 32), "' is NaN or infinite"));
      }
      if (o.has_labels && c == label_index) {
        if (v < 0 || v != std::floor(v) ||
            v > std::numeric_limits<uint32_t>::max()) {
          return CsvError(line_no, c + 1,
                          absl::StrCat("label '", f.substr(0, 32),
                                       "' is not a non-negative integer"));
        }
        if (o.class_count > 0 && v >= o.class_count) {
          return CsvError(line_no, c + 1,
                          absl::StrCat("label ", v, " is not below class ",
                                       "count ", o.class_count));
        }
        labels.push_back(static_cast<uint32_t>(v));
        max_label = std::max(max_label, labels.back());
        continue;
      }
      v *= o.scale;
      if (!std::isfinite(v)) {
        return CsvError(line_no, c + 1, "value overflows once scaled");
      }
      features.push_back(v);
    }
  }
  if (width == 0) return absl::InvalidArgumentError("CSV: no data rows");

  const size_t feature_count = o.has_labels ? width - 1 : width;
  const size_t n = features.size() / feature_count;
  Dataset d;
  d.inputs = arma::mat(features.data(), feature_count, n);
  if (o.has_labels) {
    if (max_label == std::numeric_limits<uint32_t>::max() &&
        o.class_count == 0) {
      return absl::InvalidArgumentError("CSV: label too large");
    }
    d.class_count = o.class_count > 0 ? o.class_count : max_label + 1;
    d.labels = std::move(labels);
  }
  return d;
}

absl::StatusOr<Dataset> ReadCsvFile(const std::string& path,
                                    const CsvOptions& o) {
  absl::StatusOr<std::string> text = ReadMaybeGzipFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<Dataset> d = ParseCsv(*text, o);
  if (!d.ok()) return Annotate(d.status(), path);
  return d;
}

absl::StatusOr<Dataset> ReadFashionMnist(const std::string& dir, bool train) {
  const std::string prefix = absl::StrCat(dir, train ? "/train" : "/t10k");
  return ReadIdxDataset(prefix + "-images-idx3-ubyte.gz",
                        prefix + "-labels-idx1-ubyte.gz", 10);
}

}  // namespace backprop
