// Tables and progress bars for humans; --json output is built with
// nlohmann::json in each command instead.
#ifndef BACKPROP_CLIENT_OUTPUT_H_
#define BACKPROP_CLIENT_OUTPUT_H_

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include <google/protobuf/timestamp.pb.h>

namespace backprop::client {

// A text table: a header row, then rows of cells. Numbers are right-aligned
// (a cell is taken as a number when it starts with a digit, '-' or '+';
// "-" alone stands for an absent number).
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  void AddRow(std::vector<std::string> cells);
  void Print(std::ostream& out) const;
  // One row formatted with the column widths implied by the header alone
  // (for tables printed a row at a time, e.g. epochs as they finish).
  static std::string FormatRow(const std::vector<std::string>& cells,
                               const std::vector<size_t>& widths);

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

std::string Fixed(double value, int digits);  // "0.1235" for (0.12345, 4)
std::string Percent(double fraction);         // "87.31%" for 0.8731
std::string Scientific(double value);         // "1.23e-07"
std::string Bytes(uint64_t bytes);            // "12.3 MiB"
std::string Rate(double per_second);          // "12,345"
std::string Timestamp(const google::protobuf::Timestamp& t);  // RFC 3339, UTC

bool StderrIsTerminal();

// A one-line progress bar redrawn on stderr at most every 100 ms.
class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  // fraction in [0, 1]; text follows the bar.
  void Update(double fraction, const std::string& text, bool force = false);
  // Erases the bar so that the next line starts clean.
  void Clear();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace backprop::client

#endif  // BACKPROP_CLIENT_OUTPUT_H_
