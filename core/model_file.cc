// Model and dataset file formats (layouts in model_file.h) and atomic writes.
//
// Decoding trusts nothing: every length is checked against the bytes really
// present before anything is allocated from it, and the checksum is verified
// before any field is interpreted beyond the fixed prefix.
#include "core/model_file.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

#include "core/files.h"
#include "core/spec.h"
#include <fcntl.h>
#include <zlib.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "model files store raw little-endian floats; port Append/Load first"
#endif

namespace backprop {
namespace {

constexpr char kModelMagic[8] = {'B', 'P', 'M', 'O', 'D', 'E', 'L', '\0'};
constexpr char kDatasetMagic[8] = {'B', 'P', 'D', 'A', 'T', 'A', '\0', '\0'};
constexpr uint32_t kModelVersion = 1;
constexpr uint32_t kDatasetVersion = 1;
constexpr size_t kCrcSize = 4;

void AppendU8(std::string* out, uint8_t v) {
  out->push_back(static_cast<char>(v));
}

void AppendU32(std::string* out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);  // little-endian host (checked above)
  out->append(b, 4);
}

void AppendU64(std::string* out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out->append(b, 8);
}

template <typename T>
void AppendArray(std::string* out, const T* p, size_t n) {
  static_assert(std::is_trivially_copyable<T>::value, "raw bytes");
  out->append(reinterpret_cast<const char*>(p), n * sizeof(T));
}

uint32_t Crc32(absl::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  const auto* p = reinterpret_cast<const Bytef*>(bytes.data());
  size_t left = bytes.size();
  while (left > 0) {  // crc32() takes a uInt length
    uInt chunk = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    left -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

void AppendCrc(std::string* out) { AppendU32(out, Crc32(*out)); }

// Sequential reads that fail (return false) instead of running past the end.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}
  size_t remaining() const { return bytes_.size() - pos_; }
  size_t position() const { return pos_; }
  bool U8(uint8_t* v) {
    if (remaining() < 1) return false;
    *v = static_cast<uint8_t>(bytes_[pos_++]);
    return true;
  }
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool Bytes(size_t n, absl::string_view* v) {
    if (remaining() < n) return false;
    *v = bytes_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // Copies n elements; the caller has checked n * sizeof(T) <= remaining().
  template <typename T>
  bool Array(T* dst, size_t n) {
    if (n > remaining() / sizeof(T)) return false;
    if (n == 0) return true;
    std::memcpy(dst, bytes_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return true;
  }

 private:
  bool Raw(void* v, size_t n) {
    if (remaining() < n) return false;
    std::memcpy(v, bytes_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  absl::string_view bytes_;
  size_t pos_ = 0;
};

absl::Status Corrupt(absl::string_view kind, absl::string_view what) {
  return absl::DataLossError(absl::StrCat(kind, " file: ", what));
}

// Checks magic, version and checksum. Returns the body: everything between
// the version field and the CRC.
absl::StatusOr<absl::string_view> CheckFrame(absl::string_view bytes,
                                             const char (&magic)[8],
                                             uint32_t version,
                                             absl::string_view kind) {
  constexpr size_t kMin = sizeof(magic) + 4 + kCrcSize;
  if (bytes.size() < kMin) {
    return Corrupt(kind, absl::StrCat("truncated (", bytes.size(),
                                      " bytes, the minimum is ", kMin, ")"));
  }
  if (std::memcmp(bytes.data(), magic, sizeof(magic)) != 0) {
    return Corrupt(kind, "bad magic (not a backprop file of this kind)");
  }
  Reader r(bytes.substr(sizeof(magic)));
  uint32_t v = 0;
  r.U32(&v);
  if (v != version) {
    return Corrupt(kind, absl::StrCat("unsupported format version ", v,
                                      " (this build reads ", version, ")"));
  }
  const size_t crc_at = bytes.size() - kCrcSize;
  uint32_t stored = 0;
  std::memcpy(&stored, bytes.data() + crc_at, kCrcSize);
  const uint32_t actual = Crc32(bytes.substr(0, crc_at));
  if (stored != actual) {
    return Corrupt(kind, "checksum mismatch (truncated or corrupted)");
  }
  const size_t body_at = sizeof(magic) + 4;
  return bytes.substr(body_at, crc_at - body_at);
}

template <typename T>
bool AllFinite(const T* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) return false;
  }
  return true;
}

template <typename T>
void AppendParameters(const Network<T>& net, std::string* out) {
  for (size_t l = 1; l < net.num_layers(); ++l) {
    AppendArray(out, net.w(l).memptr(), net.w(l).n_elem);
    AppendArray(out, net.b(l).memptr(), net.b(l).n_elem);
  }
}

// Reads the parameters of spec (whose sizes were already checked to fill r
// exactly) and builds the network.
template <typename T>
absl::StatusOr<AnyNetwork> DecodeParameters(const ModelSpec& spec, Reader* r) {
  const size_t L = spec.layer_sizes.size() - 1;
  std::vector<arma::Mat<T>> w;
  std::vector<arma::Col<T>> b;
  w.reserve(L);
  b.reserve(L);
  for (size_t l = 1; l <= L; ++l) {
    const uint32_t rows = spec.layer_sizes[l];
    const uint32_t cols = spec.layer_sizes[l - 1];
    w.emplace_back(rows, cols, arma::fill::none);
    b.emplace_back(rows, arma::fill::none);
    if (!r->Array(w.back().memptr(), w.back().n_elem) ||
        !r->Array(b.back().memptr(), b.back().n_elem)) {
      return Corrupt("model", "parameters are truncated");
    }
    if (!AllFinite(w.back().memptr(), w.back().n_elem) ||
        !AllFinite(b.back().memptr(), b.back().n_elem)) {
      return Corrupt("model",
                     absl::StrCat("layer ", l, " has a NaN or infinite value"));
    }
  }
  absl::StatusOr<Network<T>> net =
      Network<T>::FromParameters(spec, std::move(w), std::move(b));
  if (!net.ok()) return Corrupt("model", net.status().message());
  return AnyNetwork(*std::move(net));
}

// A full disk or a store we may not write to is the operator's to fix;
// anything else (a missing folder included) is internal.
absl::StatusCode WriteErrnoCode(int err) {
  if (err == ENOSPC || err == EDQUOT) {
    return absl::StatusCode::kResourceExhausted;
  }
  if (err == EACCES || err == EPERM || err == EROFS) {
    return absl::StatusCode::kPermissionDenied;
  }
  return absl::StatusCode::kInternal;
}

absl::Status WriteError(int err, absl::string_view what,
                        absl::string_view path) {
  return ErrnoStatus(err, what, path, WriteErrnoCode);
}

// Reading the store: a file that went away, or one we may not read.
absl::StatusCode StoreReadErrnoCode(int err) {
  if (err == ENOENT) return absl::StatusCode::kNotFound;
  if (err == EACCES || err == EPERM) return absl::StatusCode::kPermissionDenied;
  return absl::StatusCode::kInternal;
}

}  // namespace

std::string EncodeModel(const ModelRecord& record) {
  return std::visit(
      [&record](const auto& net) {
        const ModelSpec& spec = net.spec();
        std::string header;
        AppendU32(&header, static_cast<uint32_t>(spec.layer_sizes.size()));
        for (uint32_t n : spec.layer_sizes) AppendU32(&header, n);
        AppendU8(&header, static_cast<uint8_t>(spec.hidden_activation));
        AppendU8(&header, static_cast<uint8_t>(spec.output_activation));
        AppendU8(&header, static_cast<uint8_t>(spec.cost));
        AppendU8(&header, static_cast<uint8_t>(spec.initializer));
        AppendU8(&header, static_cast<uint8_t>(spec.dtype));
        AppendU8(&header, 0);  // reserved
        AppendU8(&header, 0);
        AppendU8(&header, 0);
        AppendU64(&header, spec.seed);
        AppendU64(&header, record.epochs_trained);
        AppendU32(&header, static_cast<uint32_t>(record.metadata.size()));
        header.append(record.metadata);

        using T = typename std::decay_t<decltype(net)>::Mat::elem_type;
        size_t parameter_bytes = 0;
        for (size_t l = 1; l < net.num_layers(); ++l) {
          parameter_bytes += (net.w(l).n_elem + net.b(l).n_elem) * sizeof(T);
        }
        std::string out;
        out.reserve(sizeof(kModelMagic) + 8 + header.size() + parameter_bytes +
                    kCrcSize);
        out.append(kModelMagic, sizeof(kModelMagic));
        AppendU32(&out, kModelVersion);
        AppendU32(&out, static_cast<uint32_t>(header.size()));
        out.append(header);
        AppendParameters(net, &out);
        AppendCrc(&out);
        return out;
      },
      record.network);
}

absl::StatusOr<ModelRecord> DecodeModel(absl::string_view bytes,
                                        uint64_t max_parameters) {
  absl::StatusOr<absl::string_view> body =
      CheckFrame(bytes, kModelMagic, kModelVersion, "model");
  if (!body.ok()) return body.status();
  Reader r(*body);
  uint32_t header_len = 0;
  absl::string_view header_bytes;
  if (!r.U32(&header_len) || !r.Bytes(header_len, &header_bytes)) {
    return Corrupt("model", "header length is past the end of the file");
  }

  Reader h(header_bytes);
  ModelSpec spec;
  uint32_t layer_count = 0;
  if (!h.U32(&layer_count) || layer_count > h.remaining() / 4) {
    return Corrupt("model", "layer count is past the end of the header");
  }
  spec.layer_sizes.resize(layer_count);
  h.Array(spec.layer_sizes.data(), layer_count);
  uint8_t hidden = 0, output = 0, cost = 0, init = 0, dtype = 0;
  uint8_t reserved[3] = {1, 1, 1};
  uint64_t epochs = 0;
  uint32_t metadata_len = 0;
  absl::string_view metadata;
  if (!h.U8(&hidden) || !h.U8(&output) || !h.U8(&cost) || !h.U8(&init) ||
      !h.U8(&dtype) || !h.U8(&reserved[0]) || !h.U8(&reserved[1]) ||
      !h.U8(&reserved[2]) || !h.U64(&spec.seed) || !h.U64(&epochs) ||
      !h.U32(&metadata_len) || !h.Bytes(metadata_len, &metadata)) {
    return Corrupt("model", "header is truncated");
  }
  if (h.remaining() != 0) {
    return Corrupt("model", absl::StrCat(h.remaining(),
                                         " unexpected bytes after the header"));
  }
  if (reserved[0] != 0 || reserved[1] != 0 || reserved[2] != 0) {
    return Corrupt("model", "reserved header bytes are not zero");
  }
  spec.hidden_activation = static_cast<Activation>(hidden);
  spec.output_activation = static_cast<Activation>(output);
  spec.cost = static_cast<Cost>(cost);
  spec.initializer = static_cast<Initializer>(init);
  spec.dtype = static_cast<DType>(dtype);
  if (absl::Status s = ValidateSpec(spec, max_parameters); !s.ok()) {
    return Corrupt("model", absl::StrCat("invalid spec: ", s.message()));
  }
  absl::StatusOr<uint64_t> count = ParameterCount(spec);
  if (!count.ok()) return Corrupt("model", count.status().message());
  const size_t element_size = spec.dtype == DType::kFloat32 ? 4 : 8;
  if (*count > r.remaining() / element_size ||
      *count * element_size != r.remaining()) {
    return Corrupt("model",
                   absl::StrCat("the spec has ", *count, " parameters but ",
                                r.remaining(), " parameter bytes follow"));
  }

  absl::StatusOr<AnyNetwork> net = spec.dtype == DType::kFloat32
                                       ? DecodeParameters<float>(spec, &r)
                                       : DecodeParameters<double>(spec, &r);
  if (!net.ok()) return net.status();
  return ModelRecord{*std::move(net), epochs, std::string(metadata)};
}

std::string EncodeDataset(const Dataset& d, absl::string_view metadata) {
  std::string out;
  // One allocation: datasets can be hundreds of MB.
  out.reserve(sizeof(kDatasetMagic) + 4 + 4 + metadata.size() + 8 + 3 * 4 +
              d.inputs.n_elem * 8 + d.labels.size() * 4 + d.targets.n_elem * 8 +
              kCrcSize);
  out.append(kDatasetMagic, sizeof(kDatasetMagic));
  AppendU32(&out, kDatasetVersion);
  AppendU32(&out, static_cast<uint32_t>(metadata.size()));
  out.append(metadata.data(), metadata.size());
  const bool labels = d.class_count > 0;
  AppendU64(&out, d.inputs.n_cols);
  AppendU32(&out, static_cast<uint32_t>(d.inputs.n_rows));
  AppendU32(&out, d.class_count);
  AppendU32(&out, labels ? 0 : static_cast<uint32_t>(d.targets.n_rows));
  AppendArray(&out, d.inputs.memptr(), d.inputs.n_elem);
  if (labels) {
    AppendArray(&out, d.labels.data(), d.labels.size());
  } else {
    AppendArray(&out, d.targets.memptr(), d.targets.n_elem);
  }
  AppendCrc(&out);
  return out;
}

absl::StatusOr<Dataset> DecodeDataset(absl::string_view bytes,
                                      std::string* metadata) {
  absl::StatusOr<absl::string_view> body =
      CheckFrame(bytes, kDatasetMagic, kDatasetVersion, "dataset");
  if (!body.ok()) return body.status();
  Reader r(*body);
  uint32_t metadata_len = 0;
  absl::string_view meta;
  uint64_t n = 0;
  uint32_t features = 0, class_count = 0, target_rows = 0;
  if (!r.U32(&metadata_len) || !r.Bytes(metadata_len, &meta) || !r.U64(&n) ||
      !r.U32(&features) || !r.U32(&class_count) || !r.U32(&target_rows)) {
    return Corrupt("dataset", "header is truncated");
  }
  if (n == 0 || features == 0) {
    return Corrupt("dataset", "no examples or no features");
  }
  if ((class_count > 0) == (target_rows > 0)) {
    return Corrupt("dataset",
                   "exactly one of class count and target rows must be set");
  }
  // Sizes in elements, each checked against the bytes left before use.
  const size_t left = r.remaining();
  if (n > left / 8 / features) {
    return Corrupt("dataset", "inputs are past the end of the file");
  }
  const uint64_t input_count = n * features;
  const size_t after_inputs = left - input_count * 8;
  uint64_t target_bytes;
  if (class_count > 0) {
    if (n > after_inputs / 4) {
      return Corrupt("dataset", "labels are past the end of the file");
    }
    target_bytes = n * 4;
  } else {
    if (n > after_inputs / 8 / target_rows) {
      return Corrupt("dataset", "targets are past the end of the file");
    }
    target_bytes = n * target_rows * 8;
  }
  if (target_bytes != after_inputs) {
    return Corrupt("dataset", absl::StrCat(after_inputs - target_bytes,
                                           " unexpected trailing bytes"));
  }

  Dataset d;
  d.inputs.set_size(features, n);
  r.Array(d.inputs.memptr(), d.inputs.n_elem);
  if (!AllFinite(d.inputs.memptr(), d.inputs.n_elem)) {
    return Corrupt("dataset", "an input is NaN or infinite");
  }
  if (class_count > 0) {
    d.class_count = class_count;
    d.labels.resize(n);
    r.Array(d.labels.data(), d.labels.size());
    for (uint64_t i = 0; i < n; ++i) {
      if (d.labels[i] >= class_count) {
        return Corrupt("dataset", absl::StrCat("label ", i, " is ", d.labels[i],
                                               ", not below ", class_count));
      }
    }
  } else {
    d.targets.set_size(target_rows, n);
    r.Array(d.targets.memptr(), d.targets.n_elem);
    if (!AllFinite(d.targets.memptr(), d.targets.n_elem)) {
      return Corrupt("dataset", "a target is NaN or infinite");
    }
  }
  if (metadata != nullptr) metadata->assign(meta.data(), meta.size());
  return d;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const std::string base =
      slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a file name"));
  }
  std::string tmp = absl::StrCat(dir, "/.", base, ".tmp.XXXXXX");
  // mkostemp creates the file with mode 0600: stored models are private to
  // the service.
  int fd = mkostemp(&tmp[0], O_CLOEXEC);
  if (fd < 0) return WriteError(errno, "cannot create a temporary file", path);

  auto fail = [&](int err, absl::string_view what) {
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    return WriteError(err, what, path);
  };
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, "write failed");
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0) return fail(errno, "fsync failed");
  int rc = close(fd);
  fd = -1;
  if (rc != 0) return fail(errno, "close failed");
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(errno, "rename failed");
  }
  // Make the rename itself durable. The new file is already in place, so a
  // failure here is reported but nothing is removed.
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return WriteError(errno, "renamed, but cannot open the folder to fsync",
                      path);
  }
  if (fsync(dfd) != 0 && errno != EINVAL) {
    int err = errno;
    close(dfd);
    return WriteError(err, "renamed, but fsync of the folder failed", path);
  }
  close(dfd);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFileNoFollow(const std::string& path,
                                             uint64_t max_bytes) {
  return ReadWholeFile(path, max_bytes, Symlinks::kRefuse, StoreReadErrnoCode,
                       /*size_words=*/"");
}

}  // namespace backprop
