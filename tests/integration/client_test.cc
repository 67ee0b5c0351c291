// Unit tests of the CLI's own pieces that need no server: its IDX/CSV
// reader, the hand-encoded grpc.health.v1 messages, the SVG plot's ticks,
// and table layout. Expected values are worked out by hand from the IDX
// layout (big-endian magic 0x000008NN, dims, data), the protobuf wire
// format (tag = field << 3 | wire type), and 1-2-5 tick steps.
#include <cstdio>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "client/data_files.h"
#include "client/health.h"
#include "client/output.h"
#include "client/svg_plot.h"
#include <zlib.h>

namespace backprop::client {
namespace {

std::string Idx(unsigned char type, std::vector<uint32_t> dims,
                const std::string& data) {
  std::string out = {0, 0, static_cast<char>(type),
                     static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      out.push_back(static_cast<char>((d >> shift) & 0xFF));
    }
  }
  return out + data;
}

TEST(ParseIdxTest, ScalesBytePixelsAndReadsLabels) {
  const std::string images =
      Idx(0x08, {2, 2, 2}, std::string("\x00\xff\x33\x66\x99\xcc\x01\x02", 8));
  const std::string labels = Idx(0x08, {2}, std::string("\x07\x03", 2));
  absl::StatusOr<ExampleSet> set = ParseIdx(images, &labels, 0);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->rows, 2u);
  EXPECT_EQ(set->cols, 4u);
  ASSERT_EQ(set->inputs.size(), 8u);
  // 0x33 = 51 and 51 / 255 = 0.2 exactly in decimal; doubles to 1e-15.
  EXPECT_NEAR(set->inputs[1], 1.0, 1e-15);
  EXPECT_NEAR(set->inputs[2], 0.2, 1e-15);
  EXPECT_NEAR(set->inputs[7], 2.0 / 255.0, 1e-15);
  EXPECT_EQ(set->labels, (std::vector<uint32_t>{7, 3}));
  EXPECT_EQ(set->max_label(), 7u);
}

TEST(ParseIdxTest, LimitKeepsTheFirstExamples) {
  const std::string images = Idx(0x08, {3, 1}, std::string("\x01\x02\x03", 3));
  absl::StatusOr<ExampleSet> set = ParseIdx(images, nullptr, 2);
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->rows, 2u);
  EXPECT_EQ(set->inputs.size(), 2u);
  EXPECT_FALSE(set->has_labels());
}

TEST(ParseIdxTest, RejectsSizesThatDisagreeWithTheHeader) {
  // One byte short, one byte too many, and dims whose product overflows
  // 64 bits (must be refused before anything is allocated).
  EXPECT_EQ(ParseIdx(Idx(0x08, {2, 2}, "abc"), nullptr, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIdx(Idx(0x08, {2, 2}, "abcde"), nullptr, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIdx(Idx(0x08, {0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, "ab"),
                     nullptr, 0)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseIdx(Idx(0x08, {0}, ""), nullptr, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ParseIdxTest, RejectsBadMagicTypeAndLabelMismatch) {
  EXPECT_FALSE(ParseIdx(std::string("\x01\x00\x08\x01", 4), nullptr, 0).ok());
  EXPECT_FALSE(ParseIdx(Idx(0x07, {1}, "a"), nullptr, 0).ok());
  const std::string images = Idx(0x08, {2, 1}, "ab");
  const std::string three_labels = Idx(0x08, {3}, "abc");
  EXPECT_EQ(ParseIdx(images, &three_labels, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::string float_labels = Idx(0x0D, {2}, std::string(8, '\0'));
  EXPECT_FALSE(ParseIdx(images, &float_labels, 0).ok());
}

TEST(ParseIdxTest, RejectsNonFiniteFloats) {
  // 0x7FC00000 is a float NaN.
  const std::string images = Idx(0x0D, {1, 1}, std::string("\x7f\xc0\0\0", 4));
  EXPECT_EQ(ParseIdx(images, nullptr, 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

class ReadFileMaybeGzipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/client_test.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    std::remove((dir_ + "/plain").c_str());
    std::remove((dir_ + "/z.gz").c_str());
    std::remove((dir_ + "/cut.gz").c_str());
    std::remove(dir_.c_str());
  }
  std::string Write(const std::string& name, const std::string& bytes,
                    bool gzip) {
    const std::string path = dir_ + "/" + name;
    if (gzip) {
      gzFile f = gzopen(path.c_str(), "wb");
      gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
      gzclose(f);
    } else {
      FILE* f = std::fopen(path.c_str(), "wb");
      std::fwrite(bytes.data(), 1, bytes.size(), f);
      std::fclose(f);
    }
    return path;
  }
  std::string dir_;
};

TEST_F(ReadFileMaybeGzipTest, ReadsPlainAndGzipFilesAlike) {
  const std::string text(100000, 'x');
  absl::StatusOr<std::string> plain =
      ReadFileMaybeGzip(Write("plain", text, false));
  absl::StatusOr<std::string> gz = ReadFileMaybeGzip(Write("z.gz", text, true));
  ASSERT_TRUE(plain.ok() && gz.ok());
  EXPECT_EQ(*plain, text);
  EXPECT_EQ(*gz, text);
}

TEST_F(ReadFileMaybeGzipTest, RejectsTruncatedGzipAndOversizedFiles) {
  std::string text;
  for (int i = 0; i < 50000; ++i) text += std::to_string(i * 7919 % 10007);
  const std::string path = Write("z.gz", text, true);
  FILE* f = std::fopen(path.c_str(), "rb");
  std::string gz(1 << 20, '\0');
  gz.resize(std::fread(gz.data(), 1, gz.size(), f));
  std::fclose(f);
  const std::string cut = Write("cut.gz", gz.substr(0, gz.size() / 2), false);
  EXPECT_EQ(ReadFileMaybeGzip(cut).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadFileMaybeGzip(path, 1000).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadFileMaybeGzip(dir_ + "/missing").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ParseCsvTest, ReadsFeaturesAndALabelColumn) {
  CsvOptions o;
  o.has_label = true;
  o.label_column = -1;
  o.skip_header = true;
  absl::StatusOr<ExampleSet> set =
      ParseCsv("a,b,label\n0.5, 1e-3 ,2\n\n-1,4,0\r\n", o, 0);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->rows, 2u);
  EXPECT_EQ(set->cols, 2u);
  EXPECT_EQ(set->inputs, (std::vector<double>{0.5, 1e-3, -1, 4}));
  EXPECT_EQ(set->labels, (std::vector<uint32_t>{2, 0}));
}

TEST(ParseCsvTest, NamesTheLineAndColumnOfABadField) {
  absl::StatusOr<ExampleSet> set = ParseCsv("1,2\n3,x\n", CsvOptions{}, 0);
  ASSERT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(set.status().message()).find("line 2, column 2"),
            std::string::npos);
  EXPECT_FALSE(ParseCsv("1,2\n3\n", CsvOptions{}, 0).ok());  // ragged
  EXPECT_FALSE(ParseCsv("1,inf\n", CsvOptions{}, 0).ok());   // not finite
  EXPECT_FALSE(ParseCsv("\n\n", CsvOptions{}, 0).ok());      // no rows
  CsvOptions labelled;
  labelled.has_label = true;
  EXPECT_FALSE(ParseCsv("-1,2\n", labelled, 0).ok());   // negative label
  EXPECT_FALSE(ParseCsv("1.5,2\n", labelled, 0).ok());  // fractional label
}

TEST(HealthCodecTest, EncodesTheServiceName) {
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(EncodeHealthCheckRequest("").Dump(&slices).ok());
  size_t size = 0;
  for (const auto& s : slices) size += s.size();
  EXPECT_EQ(size, 0u);  // proto3: an empty string field is not sent

  slices.clear();
  ASSERT_TRUE(EncodeHealthCheckRequest("svc").Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  EXPECT_EQ(bytes, std::string("\x0a\x03svc", 5));  // field 1, length 3
}

TEST(HealthCodecTest, DecodesTheStatusAndRejectsTruncatedBytes) {
  auto decode = [](const std::string& bytes, ServingStatus* status) {
    grpc::Slice slice(bytes);
    return DecodeHealthCheckResponse(grpc::ByteBuffer(&slice, 1), status);
  };
  ServingStatus status = ServingStatus::kServing;
  EXPECT_TRUE(decode("", &status));
  EXPECT_EQ(status, ServingStatus::kUnknown);
  EXPECT_TRUE(decode(std::string("\x08\x01", 2), &status));
  EXPECT_EQ(status, ServingStatus::kServing);
  EXPECT_TRUE(
      decode(std::string("\x08\x02\x12\x01z", 5), &status));  // + field 2
  EXPECT_EQ(status, ServingStatus::kNotServing);
  EXPECT_FALSE(decode(std::string("\x08", 1), &status));
  EXPECT_FALSE(decode(std::string("\x12\x05z", 3), &status));
}

TEST(NiceTicksTest, UsesOneTwoFiveStepsCoveringTheRange) {
  // range 0.024 / 5 intervals = 0.0048 -> step 0.005, from 0.12 to 0.15.
  const std::vector<double> t = NiceTicks(0.123, 0.147, 6);
  ASSERT_EQ(t.size(), 7u);
  EXPECT_NEAR(t.front(), 0.12, 1e-12);
  EXPECT_NEAR(t[1] - t[0], 0.005, 1e-12);
  EXPECT_NEAR(t.back(), 0.15, 1e-12);
  // 1..30 epochs: 29 / 5 = 5.8 -> step 10: 0, 10, 20, 30.
  EXPECT_EQ(NiceTicks(1, 30, 6), (std::vector<double>{0, 10, 20, 30}));
}

TEST(RenderSvgTest, DrawsEverySeriesAndEscapesText) {
  PlotPanel panel{"Cost <train>", "epoch", "cost", false, {}};
  panel.series.push_back({"a&b", "#000", {1, 2, 3}, {0.3, 0.2, 0.1}});
  panel.series.push_back({"empty", "#111", {}, {}});
  const std::string svg = RenderSvg("t", {panel, panel});
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("Cost &lt;train&gt;"), std::string::npos);
  EXPECT_NE(svg.find("a&amp;b"), std::string::npos);
  EXPECT_EQ(svg.find("<train>"), std::string::npos);
  size_t lines = 0;
  for (size_t p = svg.find("<polyline points=\"7"); p != std::string::npos;
       p = svg.find("<polyline points=\"7", p + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 2u);  // one series with points per panel
}

// The y coordinate of the <text> element whose content is `label`.
double TextY(const std::string& svg, const std::string& label) {
  const size_t end = svg.find(">" + label + "</text>");
  const size_t y = svg.rfind(" y=\"", end);
  return std::stod(svg.substr(y + 4));
}

TEST(RenderSvgTest, PutsTheLegendInTheCornerTheCurvesLeaveFree) {
  // Panel height 360 starting at 36: the plot area spans y 70..346, so its
  // middle is 208. A rising curve ends at the top: legend below the middle.
  PlotPanel rising{"acc", "epoch", "accuracy", true, {}};
  rising.series.push_back({"up", "#000", {1, 2, 3}, {0.1, 0.5, 0.9}});
  PlotPanel falling{"cost", "epoch", "cost", false, {}};
  falling.series.push_back({"down", "#000", {1, 2, 3}, {0.9, 0.5, 0.1}});
  const std::string svg = RenderSvg("t", {rising, falling});
  EXPECT_GT(TextY(svg, "up"), 208);
  EXPECT_LT(TextY(svg, "down"), 208);
}

TEST(TableTest, RightAlignsNumbersUnderTheirHeaders) {
  Table table({"NAME", "N"});
  table.AddRow({"alpha", "5"});
  table.AddRow({"b", "123"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(), "NAME     N\nalpha    5\nb      123\n");
}

}  // namespace
}  // namespace backprop::client
