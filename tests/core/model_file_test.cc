// Tests of the model and dataset file formats and of the atomic file helpers.
// Corruption tests flip bits, truncate and reseal (recompute the CRC of)
// files produced by the encoder itself, so every case is derived from a file
// known to be valid.
#include "core/model_file.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

namespace backprop {
namespace {

using ::testing::HasSubstr;

// Byte offsets of the model layout documented in model_file.h.
constexpr size_t kHeaderLenAt = 12;  // after magic (8) and version (4)
constexpr size_t kHeaderAt = 16;
constexpr size_t kLargeLimit = 1'000'000;

uint32_t LoadU32(const std::string& s, size_t at) {
  uint32_t v;
  std::memcpy(&v, s.data() + at, 4);  // little-endian file, x86 host
  return v;
}

void StoreU32(std::string* s, size_t at, uint32_t v) {
  std::memcpy(&(*s)[at], &v, 4);
}

// Recomputes the trailing CRC-32 so that a deliberate edit reaches the checks
// behind the checksum.
std::string Reseal(std::string s) {
  const size_t body = s.size() - 4;
  StoreU32(&s, body,
           static_cast<uint32_t>(
               crc32(0, reinterpret_cast<const Bytef*>(s.data()), body)));
  return s;
}

ModelSpec SmallSpec(DType dtype) {
  ModelSpec spec;
  spec.layer_sizes = {3, 4, 2};
  spec.hidden_activation = Activation::kTanh;
  spec.output_activation = Activation::kSigmoid;
  spec.cost = Cost::kCrossEntropy;
  spec.initializer = Initializer::kStandardNormal;
  spec.seed = 0x0123456789ABCDEFull;
  spec.dtype = dtype;
  return spec;
}

template <typename T>
ModelRecord SmallRecord() {
  const DType dtype =
      std::is_same<T, float>::value ? DType::kFloat32 : DType::kFloat64;
  absl::StatusOr<Network<T>> net = Network<T>::Create(SmallSpec(dtype));
  EXPECT_TRUE(net.ok()) << net.status();
  // Metadata is opaque bytes, including NUL and high bytes.
  return ModelRecord{*std::move(net), 42,
                     std::string("server\0fields\xff", 14)};
}

template <typename T>
class ModelFileTest : public ::testing::Test {};
using ElementTypes = ::testing::Types<float, double>;
TYPED_TEST_SUITE(ModelFileTest, ElementTypes);

TYPED_TEST(ModelFileTest, EncodeDecodeIsBitwise) {
  using T = TypeParam;
  const ModelRecord in = SmallRecord<T>();
  const std::string bytes = EncodeModel(in);
  absl::StatusOr<ModelRecord> out = DecodeModel(bytes, kLargeLimit);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->epochs_trained, 42u);
  EXPECT_EQ(out->metadata, in.metadata);
  const auto& a = std::get<Network<T>>(in.network);
  ASSERT_TRUE(std::holds_alternative<Network<T>>(out->network));
  const auto& b = std::get<Network<T>>(out->network);
  EXPECT_TRUE(a.spec() == b.spec());
  ASSERT_EQ(a.num_layers(), b.num_layers());
  for (size_t l = 1; l < a.num_layers(); ++l) {
    ASSERT_EQ(a.w(l).n_elem, b.w(l).n_elem);
    ASSERT_EQ(b.w(l).n_rows, a.spec().layer_sizes[l]);
    ASSERT_EQ(a.b(l).n_elem, b.b(l).n_elem);
    EXPECT_EQ(std::memcmp(a.w(l).memptr(), b.w(l).memptr(),
                          a.w(l).n_elem * sizeof(T)),
              0);
    EXPECT_EQ(std::memcmp(a.b(l).memptr(), b.b(l).memptr(),
                          a.b(l).n_elem * sizeof(T)),
              0);
  }
  EXPECT_EQ(EncodeModel(*out), bytes);  // and back to the same bytes
  // 16 prefix + header + (3*4 + 4 + 4*2 + 2) parameters + 4 CRC.
  const size_t header = LoadU32(bytes, kHeaderLenAt);
  EXPECT_EQ(bytes.size(), kHeaderAt + header + 26 * sizeof(T) + 4);
}

TYPED_TEST(ModelFileTest, RejectsEveryHeaderBitFlip) {
  const std::string bytes = EncodeModel(SmallRecord<TypeParam>());
  const size_t header_end = kHeaderAt + LoadU32(bytes, kHeaderLenAt);
  for (size_t bit = 0; bit < header_end * 8; ++bit) {
    std::string bad = bytes;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_EQ(DecodeModel(bad, kLargeLimit).status().code(),
              absl::StatusCode::kDataLoss)
        << "bit " << bit;
  }
}

TYPED_TEST(ModelFileTest, RejectsPayloadAndChecksumBitFlips) {
  const std::string bytes = EncodeModel(SmallRecord<TypeParam>());
  const size_t header_end = kHeaderAt + LoadU32(bytes, kHeaderLenAt);
  // Every 5th bit of the parameters, and every bit of the CRC itself.
  for (size_t bit = header_end * 8; bit < bytes.size() * 8; ++bit) {
    if (bit < (bytes.size() - 4) * 8 && bit % 5 != 0) continue;
    std::string bad = bytes;
    bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
    EXPECT_EQ(DecodeModel(bad, kLargeLimit).status().code(),
              absl::StatusCode::kDataLoss)
        << "bit " << bit;
  }
}

TYPED_TEST(ModelFileTest, RejectsTruncationAtEveryOffsetAndTrailingBytes) {
  const std::string bytes = EncodeModel(SmallRecord<TypeParam>());
  for (size_t k = 0; k < bytes.size(); ++k) {
    EXPECT_EQ(DecodeModel(bytes.substr(0, k), kLargeLimit).status().code(),
              absl::StatusCode::kDataLoss)
        << "truncated to " << k;
  }
  // An extra byte, even with a correct CRC over everything before it.
  EXPECT_EQ(DecodeModel(Reseal(bytes + "xxxx"), kLargeLimit).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(DecodeModelTest, RejectsNonFiniteWeightBehindAValidChecksum) {
  std::string bytes = EncodeModel(SmallRecord<double>());
  const size_t header_end = kHeaderAt + LoadU32(bytes, kHeaderLenAt);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double v : {nan, inf}) {
    for (size_t at : {header_end, bytes.size() - 4 - 8}) {  // first and last
      std::string bad = bytes;
      std::memcpy(&bad[at], &v, 8);
      EXPECT_EQ(DecodeModel(Reseal(bad), kLargeLimit).status().code(),
                absl::StatusCode::kDataLoss);
    }
  }
}

TEST(DecodeModelTest, RejectsSpecOverTheParameterLimit) {
  const std::string bytes = EncodeModel(SmallRecord<float>());
  // [3, 4, 2] has 3*4 + 4 + 4*2 + 2 = 26 parameters.
  EXPECT_TRUE(DecodeModel(bytes, 26).ok());
  EXPECT_EQ(DecodeModel(bytes, 25).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(DecodeModelTest, RejectsHugeLayerSizesWithoutAllocating) {
  // Resealed header claiming [2^32-1, 2^32-1, 2]: ValidateSpec must refuse
  // it from arithmetic alone (an allocation would be 2^67 bytes).
  std::string bytes = EncodeModel(SmallRecord<double>());
  StoreU32(&bytes, kHeaderAt + 4, 0xFFFFFFFF);
  StoreU32(&bytes, kHeaderAt + 8, 0xFFFFFFFF);
  EXPECT_EQ(DecodeModel(Reseal(bytes), std::numeric_limits<uint64_t>::max())
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  // A layer count far beyond the header length.
  std::string many = EncodeModel(SmallRecord<double>());
  StoreU32(&many, kHeaderAt, 0x40000000);
  EXPECT_EQ(DecodeModel(Reseal(many), kLargeLimit).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(DecodeModelTest, RejectsUnknownEnumVersionAndReservedBytes) {
  const std::string bytes = EncodeModel(SmallRecord<double>());
  const size_t enums_at = kHeaderAt + 4 + 3 * 4;  // after count and 3 sizes
  std::string bad_enum = bytes;
  bad_enum[enums_at] = 9;  // hidden activation 9 does not exist
  std::string softmax_hidden = bytes;
  softmax_hidden[enums_at] = static_cast<char>(Activation::kSoftmax);
  std::string wrong_dtype = bytes;  // a float64 payload labelled float32
  wrong_dtype[enums_at + 4] = static_cast<char>(DType::kFloat32);
  std::string reserved = bytes;
  reserved[enums_at + 6] = 1;
  std::string version = bytes;
  version[8] = 2;
  for (const std::string& s :
       {bad_enum, softmax_hidden, wrong_dtype, reserved, version}) {
    EXPECT_EQ(DecodeModel(Reseal(s), kLargeLimit).status().code(),
              absl::StatusCode::kDataLoss);
  }
  absl::Status v = DecodeModel(Reseal(version), kLargeLimit).status();
  EXPECT_THAT(std::string(v.message()), HasSubstr("version 2"));
}

Dataset LabelDataset() {
  Dataset d;
  d.inputs = {{0.5, -1.25, 3.0}, {1e-300, 7.0, -0.0}};  // 2 features x 3
  d.class_count = 4;
  d.labels = {3, 0, 2};
  return d;
}

Dataset TargetDataset() {
  Dataset d;
  d.inputs = {{1.0, 2.0}};
  d.targets = {{0.25, 0.75}, {-1.0, 1.0}, {0.0, 1.0 / 3.0}};  // 3 x 2
  return d;
}

void ExpectSameDoubles(const arma::mat& a, const arma::mat& b) {
  ASSERT_EQ(a.n_rows, b.n_rows);
  ASSERT_EQ(a.n_cols, b.n_cols);
  if (a.n_elem == 0) return;  // memcmp must not see an empty matrix's null
  EXPECT_EQ(std::memcmp(a.memptr(), b.memptr(), a.n_elem * sizeof(double)), 0);
}

TEST(DatasetFileTest, EncodeDecodeIsBitwiseForLabelsAndTargets) {
  const std::string meta("desc\0ription", 12);
  for (const Dataset& in : {LabelDataset(), TargetDataset()}) {
    const std::string bytes = EncodeDataset(in, meta);
    std::string got_meta;
    absl::StatusOr<Dataset> out = DecodeDataset(bytes, &got_meta);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(got_meta, meta);
    ExpectSameDoubles(in.inputs, out->inputs);
    EXPECT_EQ(out->class_count, in.class_count);
    EXPECT_EQ(out->labels, in.labels);
    ExpectSameDoubles(in.targets, out->targets);
    EXPECT_EQ(EncodeDataset(*out, meta), bytes);
    EXPECT_TRUE(DecodeDataset(bytes, nullptr).ok());
  }
}

TEST(DatasetFileTest, RejectsTruncationBitFlipsAndTrailingBytes) {
  for (const Dataset& in : {LabelDataset(), TargetDataset()}) {
    const std::string bytes = EncodeDataset(in, "m");
    for (size_t k = 0; k < bytes.size(); ++k) {
      EXPECT_EQ(DecodeDataset(bytes.substr(0, k), nullptr).status().code(),
                absl::StatusCode::kDataLoss)
          << "truncated to " << k;
    }
    for (size_t bit = 0; bit < bytes.size() * 8; bit += 3) {
      std::string bad = bytes;
      bad[bit / 8] ^= static_cast<char>(1 << (bit % 8));
      EXPECT_EQ(DecodeDataset(bad, nullptr).status().code(),
                absl::StatusCode::kDataLoss)
          << "bit " << bit;
    }
    EXPECT_EQ(DecodeDataset(Reseal(bytes + "1234"), nullptr).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

TEST(DatasetFileTest, RejectsBadContentBehindAValidChecksum) {
  // Layout: magic 8 | version 4 | metadata length 4 | "m" | n 8 | features 4 |
  // class_count 4 | target rows 4 | inputs | labels | CRC.
  const std::string bytes = EncodeDataset(LabelDataset(), "m");
  const size_t n_at = 17, class_at = 29, rows_at = 33, inputs_at = 37;
  const size_t labels_at = inputs_at + 6 * 8;
  std::string label = bytes;
  StoreU32(&label, labels_at, 4);  // label 4 with class_count 4
  std::string both = bytes;
  StoreU32(&both, rows_at, 1);  // labels and targets at once
  std::string nan = bytes;
  const double v = std::numeric_limits<double>::quiet_NaN();
  std::memcpy(&nan[inputs_at + 8], &v, 8);
  std::string huge_n = bytes;
  const uint64_t n = uint64_t{1} << 62;
  std::memcpy(&huge_n[n_at], &n, 8);
  std::string no_classes = bytes;
  StoreU32(&no_classes, class_at, 0);
  for (const std::string& s : {label, both, nan, huge_n, no_classes}) {
    EXPECT_EQ(DecodeDataset(Reseal(s), nullptr).status().code(),
              absl::StatusCode::kDataLoss);
  }
}

// A fresh directory under the test temp dir, removed at the end of the test.
class AtomicFileTest : public ::testing::Test {
 protected:
  AtomicFileTest() {
    std::string tmpl = ::testing::TempDir() + "model_file_test.XXXXXX";
    dir_ = mkdtemp(&tmpl[0]);
  }
  ~AtomicFileTest() override { std::filesystem::remove_all(dir_); }

  std::string File(const std::string& name) const {
    return absl::StrCat(dir_, "/", name);
  }
  std::set<std::string> Entries() const {
    std::set<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      names.insert(e.path().filename().string());
    }
    return names;
  }
  static std::string Slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

  std::string dir_;
};

TEST_F(AtomicFileTest, WritesAndReplacesLeavingNoTempFile) {
  const std::string path = File("m.bin");
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  EXPECT_EQ(Slurp(path), "first");
  const std::string second(100000, 'x');
  ASSERT_TRUE(WriteFileAtomically(path, second).ok());
  EXPECT_EQ(Slurp(path), second);
  ASSERT_TRUE(WriteFileAtomically(path, "").ok());
  EXPECT_EQ(Slurp(path), "");
  EXPECT_EQ(Entries(), (std::set<std::string>{"m.bin"}));
}

TEST_F(AtomicFileTest, FailsWhenTheFolderDoesNotExist) {
  absl::Status s = WriteFileAtomically(File("missing/m.bin"), "data");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing/m.bin"));
  EXPECT_TRUE(Entries().empty());
}

TEST_F(AtomicFileTest, FailsOnADirectoryInPlaceOfTheFileAndCleansUp) {
  const std::string path = File("m.bin");
  ASSERT_TRUE(std::filesystem::create_directory(path));
  ASSERT_TRUE(WriteFileAtomically(path + "/inner", "old").ok());
  absl::Status s = WriteFileAtomically(path, "new");
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_TRUE(std::filesystem::is_directory(path));
  EXPECT_EQ(Slurp(path + "/inner"), "old");
  EXPECT_EQ(Entries(), (std::set<std::string>{"m.bin"}));  // no temp file
}

TEST_F(AtomicFileTest, FailedWriteLeavesTheOldFileIntact) {
  // RLIMIT_FSIZE makes write() fail with EFBIG even for root. The limit is
  // per process and gtest_discover_tests runs each test in its own process;
  // it is restored before the test ends anyway.
  const std::string path = File("m.bin");
  ASSERT_TRUE(WriteFileAtomically(path, "old contents").ok());
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  struct rlimit small = saved;
  small.rlim_cur = 1000;
  ASSERT_NE(signal(SIGXFSZ, SIG_IGN), SIG_ERR);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  absl::Status s = WriteFileAtomically(path, std::string(5000, 'n'));
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, SIG_DFL);
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_EQ(Slurp(path), "old contents");
  EXPECT_EQ(Entries(), (std::set<std::string>{"m.bin"}));
}

TEST_F(AtomicFileTest, UnwritableFolderIsPermissionDenied) {
  // Root ignores folder permissions (and CI runs as root), so the write is
  // attempted by a forked child that first drops to the unprivileged uid/gid
  // 65534 ("nobody"); the child reports through its exit code.
  ASSERT_EQ(chmod(dir_.c_str(), 0555), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) {
      _exit(3);
    }
    const absl::Status s = WriteFileAtomically(File("m.bin"), "x");
    _exit(s.code() == absl::StatusCode::kPermissionDenied ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  chmod(dir_.c_str(), 0700);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "1: another code than kPermissionDenied; 3: could not drop root";
  EXPECT_TRUE(Entries().empty());
}

TEST_F(AtomicFileTest, ReadFileNoFollowReadsRegularFilesOnly) {
  const std::string path = File("m.bin");
  ASSERT_TRUE(WriteFileAtomically(path, std::string("a\0b", 3)).ok());
  EXPECT_EQ(ReadFileNoFollow(path, 3).value(), std::string("a\0b", 3));
  EXPECT_EQ(ReadFileNoFollow(path, 2).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadFileNoFollow(File("none"), 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadFileNoFollow(dir_, 10).status().code(),
            absl::StatusCode::kFailedPrecondition);

  ASSERT_EQ(symlink(path.c_str(), File("link").c_str()), 0);
  absl::Status s = ReadFileNoFollow(File("link"), 10).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("link"));

  // A FIFO must be refused, not block the reader forever.
  ASSERT_EQ(mkfifo(File("fifo").c_str(), 0600), 0);
  EXPECT_EQ(ReadFileNoFollow(File("fifo"), 10).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace backprop
