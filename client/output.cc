#include "client/output.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>

namespace backprop::client {
namespace {

// Numbers, and "-" for a number that is absent, are right-aligned.
bool LooksNumeric(const std::string& s) {
  return !s.empty() && (std::isdigit(static_cast<unsigned char>(s[0])) ||
                        s[0] == '-' || s[0] == '+');
}

}  // namespace

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(header_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::FormatRow(const std::vector<std::string>& cells,
                             const std::vector<size_t>& widths) {
  std::string line;
  for (size_t i = 0; i < cells.size(); ++i) {
    const size_t width = i < widths.size() ? widths[i] : cells[i].size();
    const size_t pad = width > cells[i].size() ? width - cells[i].size() : 0;
    if (i > 0) line += "  ";
    if (LooksNumeric(cells[i])) {
      line += std::string(pad, ' ') + cells[i];
    } else {
      line += cells[i];
      if (i + 1 < cells.size()) line += std::string(pad, ' ');
    }
  }
  return line;
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(header_.size());
  for (size_t i = 0; i < header_.size(); ++i) widths[i] = header_[i].size();
  for (const auto& row : rows_) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  // Headers of numeric columns line up with their (right-aligned) numbers.
  std::vector<std::string> header = header_;
  for (size_t i = 0; i < header.size(); ++i) {
    bool numeric = !rows_.empty();
    for (const auto& row : rows_) numeric = numeric && LooksNumeric(row[i]);
    if (numeric) {
      header[i] = std::string(widths[i] - header[i].size(), ' ') + header[i];
    }
  }
  out << FormatRow(header, widths) << "\n";
  for (const auto& row : rows_) out << FormatRow(row, widths) << "\n";
}

std::string Fixed(double value, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, value);
  return buf;
}

std::string Percent(double fraction) {
  return Fixed(100.0 * fraction, 2) + "%";
}

std::string Scientific(double value) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.3e", value);
  return buf;
}

std::string Bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return (u == 0 ? std::to_string(bytes) : Fixed(v, 1)) + " " + units[u];
}

std::string Rate(double per_second) {
  if (!std::isfinite(per_second) || per_second < 0) return "-";
  const auto n = static_cast<uint64_t>(std::llround(per_second));
  std::string digits = std::to_string(n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string Timestamp(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  const std::time_t seconds = static_cast<std::time_t>(t.seconds());
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool StderrIsTerminal() { return isatty(STDERR_FILENO) == 1; }

void ProgressBar::Update(double fraction, const std::string& text, bool force) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && drawn_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  fraction = std::clamp(fraction, 0.0, 1.0);
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(std::lround(fraction * kWidth));
  std::string bar = "\r[" + std::string(filled, '#') +
                    std::string(kWidth - filled, '.') + "] " +
                    Fixed(100.0 * fraction, 1) + "%  " + text + "\x1b[K";
  std::cerr << bar << std::flush;
  drawn_ = true;
}

void ProgressBar::Clear() {
  if (!enabled_ || !drawn_) return;
  std::cerr << "\r\x1b[K" << std::flush;
  drawn_ = false;
}

}  // namespace backprop::client
