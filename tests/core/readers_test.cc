// Tests of the IDX and CSV readers. Every input is built here, byte by byte,
// so each expected value is known from the construction itself.
#include "core/readers.h"

#include <stdlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <zlib.h>

namespace backprop {
namespace {

using ::testing::HasSubstr;

void PutBe32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xFF));
  }
}

std::string IdxHeader(uint8_t type, const std::vector<uint32_t>& dims) {
  std::string out;
  out.push_back('\0');
  out.push_back('\0');
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(dims.size()));
  for (uint32_t d : dims) PutBe32(&out, d);
  return out;
}

std::string U8Idx(const std::vector<uint32_t>& dims,
                  const std::vector<uint8_t>& data) {
  std::string out = IdxHeader(0x08, dims);
  out.append(data.begin(), data.end());
  return out;
}

// A fresh directory under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "readers_test.XXXXXX";
    path_ = mkdtemp(&tmpl[0]);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const {
    return absl::StrCat(path_, "/", name);
  }

 private:
  std::string path_;
};

void WritePlain(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), bytes.size());
  ASSERT_TRUE(f.good()) << path;
}

void WriteGzip(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// 3 items of 2x2 pixels: item i holds 10*i + 0..3.
const std::vector<uint8_t> kPixels = {0,  1,  2,  3,  10, 11,
                                      12, 13, 20, 21, 22, 255};

TEST(ParseIdxTest, ParsesSmallU8Array) {
  absl::StatusOr<IdxArray> a = ParseIdx(U8Idx({3, 2, 2}, kPixels));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->type, 0x08);
  EXPECT_EQ(a->dims, (std::vector<uint32_t>{3, 2, 2}));
  ASSERT_EQ(a->values.size(), kPixels.size());
  for (size_t i = 0; i < kPixels.size(); ++i) {
    EXPECT_EQ(a->values[i], kPixels[i]) << i;  // small integers: exact
  }
}

TEST(ParseIdxTest, ParsesSignedAndFloatTypesBigEndian) {
  // i16 -2 = 0xFFFE and 258 = 0x0102; i32 -70000 = 0xFFFEEE90;
  // f32 1.5 = 0x3FC00000; f64 -0.25 = 0xBFD0000000000000.
  std::string i16 = IdxHeader(0x0B, {2}) + std::string("\xFF\xFE\x01\x02", 4);
  std::string i32 = IdxHeader(0x0C, {1}) + std::string("\xFF\xFE\xEE\x90", 4);
  std::string f32 = IdxHeader(0x0D, {1}) + std::string("\x3F\xC0\x00\x00", 4);
  std::string f64 =
      IdxHeader(0x0E, {1}) + std::string("\xBF\xD0\0\0\0\0\0\0", 8);
  std::string i8 = IdxHeader(0x09, {1}) + std::string("\x80", 1);
  EXPECT_EQ(ParseIdx(i16).value().values, (std::vector<double>{-2, 258}));
  EXPECT_EQ(ParseIdx(i32).value().values, (std::vector<double>{-70000}));
  EXPECT_EQ(ParseIdx(f32).value().values, (std::vector<double>{1.5}));
  EXPECT_EQ(ParseIdx(f64).value().values, (std::vector<double>{-0.25}));
  EXPECT_EQ(ParseIdx(i8).value().values, (std::vector<double>{-128}));
}

TEST(ParseIdxTest, RejectsTruncationAtEveryOffset) {
  const std::string full = U8Idx({3, 2, 2}, kPixels);
  for (size_t k = 0; k < full.size(); ++k) {
    absl::StatusOr<IdxArray> a = ParseIdx(full.substr(0, k));
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument)
        << "truncated to " << k << " bytes";
  }
}

TEST(ParseIdxTest, RejectsTrailingBytes) {
  absl::StatusOr<IdxArray> a = ParseIdx(U8Idx({3, 2, 2}, kPixels) + "x");
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("trailing"));
}

TEST(ParseIdxTest, RejectsBadMagicTypeAndRank) {
  std::string bad_magic = U8Idx({3, 2, 2}, kPixels);
  bad_magic[1] = 1;
  std::string bad_type = U8Idx({3, 2, 2}, kPixels);
  bad_type[2] = 0x0A;
  std::string zero_rank = IdxHeader(0x08, {});
  std::string zero_dim = U8Idx({0, 2}, {});
  for (const std::string& s : {bad_magic, bad_type, zero_rank, zero_dim}) {
    EXPECT_EQ(ParseIdx(s).status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ParseIdxTest, RejectsHugeDimensionsWithoutAllocating) {
  // 2^32-1 cubed overflows 64 bits; the parser must refuse from the header.
  std::string s = IdxHeader(0x0E, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}) + "ab";
  EXPECT_EQ(ParseIdx(s).status().code(), absl::StatusCode::kInvalidArgument);
  std::string t = IdxHeader(0x0E, {0x10000000}) + "12345678";
  EXPECT_EQ(ParseIdx(t).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ParseIdxTest, RejectsNanAndInfinity) {
  // f32 NaN 0x7FC00000, f64 +Inf 0x7FF0000000000000.
  std::string nan = IdxHeader(0x0D, {1}) + std::string("\x7F\xC0\0\0", 4);
  std::string inf =
      IdxHeader(0x0E, {1}) + std::string("\x7F\xF0\0\0\0\0\0\0", 8);
  EXPECT_EQ(ParseIdx(nan).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIdx(inf).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReadMaybeGzipFileTest, GzipRoundTripAndPlainPassThrough) {
  TempDir dir;
  std::string bytes = U8Idx({3, 2, 2}, kPixels);
  WriteGzip(dir.File("a.gz"), bytes);
  WritePlain(dir.File("a"), bytes);
  EXPECT_NE(ReadAll(dir.File("a.gz")), bytes);  // really compressed
  EXPECT_EQ(ReadMaybeGzipFile(dir.File("a.gz")).value(), bytes);
  EXPECT_EQ(ReadMaybeGzipFile(dir.File("a")).value(), bytes);
}

TEST(ReadMaybeGzipFileTest, StopsAGzipBombAtMaxBytes) {
  TempDir dir;
  WriteGzip(dir.File("bomb.gz"), std::string(1 << 20, '\0'));
  // 1 MiB of zeros compresses to about 1 KiB, well under the limit.
  ASSERT_LT(ReadAll(dir.File("bomb.gz")).size(), 4096u);
  EXPECT_EQ(ReadMaybeGzipFile(dir.File("bomb.gz"), 4096).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadMaybeGzipFile(dir.File("bomb.gz"), 1 << 20).value().size(),
            size_t{1} << 20);
}

TEST(ReadMaybeGzipFileTest, RejectsCorruptAndTruncatedGzip) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 2000; ++i) absl::StrAppend(&text, i, ",");
  WriteGzip(dir.File("ok.gz"), text);
  std::string gz = ReadAll(dir.File("ok.gz"));
  ASSERT_GT(gz.size(), 40u);
  WritePlain(dir.File("short.gz"), gz.substr(0, gz.size() / 2));
  std::string corrupt = gz;
  corrupt[gz.size() - 6] ^= 0x55;  // inside the CRC-32 / size trailer
  WritePlain(dir.File("corrupt.gz"), corrupt);
  EXPECT_EQ(ReadMaybeGzipFile(dir.File("short.gz")).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadMaybeGzipFile(dir.File("corrupt.gz")).status().code(),
            absl::StatusCode::kDataLoss);
}

TEST(ReadMaybeGzipFileTest, ReportsMissingFileAndDirectory) {
  TempDir dir;
  absl::StatusOr<std::string> missing = ReadMaybeGzipFile(dir.File("nope"));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("nope"));
  EXPECT_FALSE(ReadMaybeGzipFile(dir.File("")).ok());  // the folder itself
}

class ReadIdxDatasetTest : public ::testing::Test {
 protected:
  TempDir dir_;
  std::string images_ = dir_.File("images.gz");
  std::string labels_ = dir_.File("labels");
};

TEST_F(ReadIdxDatasetTest, ReadsGzipImagesAndScalesPixels) {
  WriteGzip(images_, U8Idx({3, 2, 2}, kPixels));
  WritePlain(labels_, U8Idx({3}, {7, 0, 9}));
  absl::StatusOr<Dataset> d = ReadIdxDataset(images_, labels_, 10);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size(), 3u);
  EXPECT_EQ(d->feature_count(), 4u);
  EXPECT_EQ(d->class_count, 10u);
  EXPECT_EQ(d->labels, (std::vector<uint32_t>{7, 0, 9}));
  // Column j is item j; x / 255 is the documented scaling (tolerance: one
  // rounding of a division).
  for (size_t j = 0; j < 3; ++j) {
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_NEAR(d->inputs(i, j), kPixels[4 * j + i] / 255.0, 1e-15);
    }
  }
  EXPECT_EQ(d->inputs(3, 2), 1.0);
}

TEST_F(ReadIdxDatasetTest, KeepsNonByteImagesUnscaledAndReadsI32Labels) {
  // f32 images 2 items x 1 value: 1.5 = 0x3FC00000, -300 = 0xC3960000.
  WritePlain(images_, IdxHeader(0x0D, {2, 1}) +
                          std::string("\x3F\xC0\0\0\xC3\x96\0\0", 8));
  std::string labels = IdxHeader(0x0C, {2});
  PutBe32(&labels, 1);
  PutBe32(&labels, 0);
  WritePlain(labels_, labels);
  absl::StatusOr<Dataset> d = ReadIdxDataset(images_, labels_, 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->class_count, 2u);  // 0 means max label + 1
  EXPECT_EQ(d->labels, (std::vector<uint32_t>{1, 0}));
  EXPECT_EQ(d->inputs(0, 0), 1.5);  // exactly representable, not divided
  EXPECT_EQ(d->inputs(0, 1), -300.0);
  // A negative i32 label (0xFFFFFFFF = -1) is out of range.
  std::string negative = IdxHeader(0x0C, {2});
  PutBe32(&negative, 0xFFFFFFFF);
  PutBe32(&negative, 0);
  WritePlain(labels_, negative);
  EXPECT_EQ(ReadIdxDataset(images_, labels_, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ReadIdxDatasetTest, RejectsCountMismatchNamingBothFiles) {
  WriteGzip(images_, U8Idx({3, 2, 2}, kPixels));
  WritePlain(labels_, U8Idx({2}, {1, 2}));
  absl::Status s = ReadIdxDataset(images_, labels_, 10).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(images_));
  EXPECT_THAT(std::string(s.message()), HasSubstr(labels_));
}

TEST_F(ReadIdxDatasetTest, RejectsLabelOutOfRange) {
  WriteGzip(images_, U8Idx({3, 2, 2}, kPixels));
  WritePlain(labels_, U8Idx({3}, {1, 10, 2}));
  absl::Status s = ReadIdxDataset(images_, labels_, 10).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(labels_));
}

TEST_F(ReadIdxDatasetTest, RejectsMalformedFileNamingIt) {
  WriteGzip(images_, U8Idx({3, 2, 2}, kPixels).substr(0, 20));
  WritePlain(labels_, U8Idx({3}, {1, 2, 3}));
  absl::Status s = ReadIdxDataset(images_, labels_, 10).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(images_));
}

TEST_F(ReadIdxDatasetTest, RejectsLabelsOfRankTwo) {
  WriteGzip(images_, U8Idx({3, 2, 2}, kPixels));
  WritePlain(labels_, U8Idx({3, 1}, {1, 2, 3}));
  EXPECT_EQ(ReadIdxDataset(images_, labels_, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseCsvTest, ParsesLabelsFirstWithHeaderAndScale) {
  CsvOptions o;
  o.skip_header = true;
  o.scale = 0.5;
  absl::StatusOr<Dataset> d =
      ParseCsv("label,a,b\r\n1, 2,4\r\n0,6 ,8\r\n\r\n", o);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->size(), 2u);
  EXPECT_EQ(d->feature_count(), 2u);
  EXPECT_EQ(d->class_count, 2u);  // max label + 1
  EXPECT_EQ(d->labels, (std::vector<uint32_t>{1, 0}));
  // Halves of small integers are exact in binary floating point.
  EXPECT_EQ(d->inputs(0, 0), 1.0);
  EXPECT_EQ(d->inputs(1, 0), 2.0);
  EXPECT_EQ(d->inputs(0, 1), 3.0);
  EXPECT_EQ(d->inputs(1, 1), 4.0);
}

TEST(ParseCsvTest, SkipsAByteOrderMark) {
  absl::StatusOr<Dataset> d = ParseCsv(
      "\xEF\xBB\xBF"
      "3,1.5\n",
      CsvOptions());
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->labels, (std::vector<uint32_t>{3}));
  EXPECT_EQ(d->inputs(0, 0), 1.5);
}

TEST(ParseCsvTest, LastColumnLabelsAndFeaturesOnly) {
  CsvOptions last;
  last.label_column = -1;
  last.class_count = 5;
  absl::StatusOr<Dataset> d = ParseCsv("0.25,-1e2,4\n", last);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->labels, (std::vector<uint32_t>{4}));
  EXPECT_EQ(d->class_count, 5u);
  EXPECT_EQ(d->inputs(0, 0), 0.25);
  EXPECT_EQ(d->inputs(1, 0), -100.0);

  CsvOptions none;
  none.has_labels = false;
  absl::StatusOr<Dataset> x = ParseCsv("1,2\n3,4", none);
  ASSERT_TRUE(x.ok()) << x.status();
  EXPECT_FALSE(x->has_labels());
  EXPECT_EQ(x->feature_count(), 2u);
  EXPECT_EQ(x->inputs(1, 1), 4.0);
}

void ExpectCsvError(absl::string_view text, const CsvOptions& o,
                    absl::string_view where) {
  absl::Status s = ParseCsv(text, o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
  EXPECT_THAT(std::string(s.message()), HasSubstr(std::string(where))) << text;
}

TEST(ParseCsvTest, RejectsBadFieldsWithLineAndColumn) {
  CsvOptions o;
  ExpectCsvError("1,2,3\n0,4,x5\n", o, "line 2, column 3");  // non-numeric
  ExpectCsvError("1,2,3\n0,,5\n", o, "line 2, column 2");    // empty
  ExpectCsvError("1,2,3\n0,nan,5\n", o, "line 2, column 2");
  ExpectCsvError("1,2,3\n0,4,-inf\n", o, "line 2, column 3");
  ExpectCsvError("1,2,3\n0,4\n", o, "line 2");         // ragged
  ExpectCsvError("1,2,3\n0,4,5,6\n", o, "line 2");     // ragged
  ExpectCsvError("1.5,2,3\n", o, "line 1, column 1");  // label not integer
  ExpectCsvError("-1,2,3\n", o, "line 1, column 1");   // negative label
  CsvOptions three;
  three.class_count = 3;
  ExpectCsvError("2,0\n3,0\n", three, "line 2, column 1");  // label >= 3
}

TEST(ParseCsvTest, RejectsNoRowsAndBadOptions) {
  CsvOptions o;
  EXPECT_EQ(ParseCsv("", o).status().code(),
            absl::StatusCode::kInvalidArgument);
  CsvOptions header;
  header.skip_header = true;
  EXPECT_EQ(ParseCsv("a,b\n", header).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCsv("1\n", o).status().code(),  // a label but no feature
            absl::StatusCode::kInvalidArgument);
  CsvOptions far;
  far.label_column = 5;
  EXPECT_EQ(ParseCsv("1,2\n", far).status().code(),
            absl::StatusCode::kInvalidArgument);
  CsvOptions big;
  big.scale = 1e300;
  EXPECT_EQ(ParseCsv("1,1e300\n", big).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ReadCsvFileTest, NamesTheFileInErrors) {
  TempDir dir;
  WritePlain(dir.File("d.csv"), "1,2\n0,oops\n");
  absl::Status s = ReadCsvFile(dir.File("d.csv"), CsvOptions()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(dir.File("d.csv")));
  EXPECT_THAT(std::string(s.message()), HasSubstr("line 2, column 2"));
  WriteGzip(dir.File("d.csv.gz"), "1,2\n0,3\n");
  EXPECT_EQ(ReadCsvFile(dir.File("d.csv.gz"), CsvOptions()).value().size(), 2u);
}

// Reads the real files of Debian's dataset-fashion-mnist. Fashion-MNIST is
// balanced: 6,000 (train) and 1,000 (test) examples of each of 10 classes
// (the data set's README).
TEST(ReadFashionMnistTest, ReadsDebianFiles) {
  ASSERT_TRUE(std::filesystem::exists(std::string(kFashionMnistDir) +
                                      "/t10k-labels-idx1-ubyte.gz"))
      << "dataset-fashion-mnist is not installed (scripts/install-deps.sh)";
  for (bool train : {false, true}) {
    absl::StatusOr<Dataset> d = ReadFashionMnist(kFashionMnistDir, train);
    ASSERT_TRUE(d.ok()) << d.status();
    const uint64_t n = train ? 60000 : 10000;
    EXPECT_EQ(d->size(), n);
    EXPECT_EQ(d->feature_count(), 784u);
    EXPECT_EQ(d->class_count, 10u);
    EXPECT_GE(d->inputs.min(), 0.0);
    EXPECT_LE(d->inputs.max(), 1.0);
    EXPECT_GT(d->inputs.max(), 0.99);  // some pixel is (near) white
    std::vector<uint64_t> per_class(10, 0);
    for (uint32_t label : d->labels) ++per_class.at(label);
    for (uint64_t c : per_class) EXPECT_EQ(c, n / 10);
  }
}

TEST(ReadFashionMnistTest, MissingDirIsNotFound) {
  EXPECT_EQ(ReadFashionMnist("/nonexistent-dir", true).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace backprop
