#include "server/ids.h"

#include <cstdint>
#include <mutex>
#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace backprop::server {
namespace {

bool IsLeadChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool IsTailChar(char c) {
  return IsLeadChar(c) || c == '.' || c == '_' || c == '-';
}

}  // namespace

bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength || !IsLeadChar(id[0])) {
    return false;
  }
  for (char c : id.substr(1)) {
    if (!IsTailChar(c)) return false;
  }
  return true;
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (IsValidId(id)) return absl::OkStatus();
  if (id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, " is empty"));
  }
  // Echo at most a prefix, escaped, so a hostile id cannot flood the trailer.
  return absl::InvalidArgumentError(absl::StrCat(
      field, " '", absl::CHexEscape(id.substr(0, 80)),
      "' is not a valid id: use 1 to 63 characters from [a-z0-9._-], "
      "starting with a letter or digit"));
}

std::string NewId(absl::string_view prefix) {
  static std::mutex mu;
  static std::mt19937_64* rng = nullptr;  // guarded by mu
  uint64_t r;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (rng == nullptr) rng = new std::mt19937_64(std::random_device{}());
    r = (*rng)();
  }
  return absl::StrFormat("%s-%016x", prefix, r);
}

std::string EncodePageToken(absl::string_view kind, absl::string_view last_id) {
  return absl::WebSafeBase64Escape(absl::StrCat(kind, ":", last_id));
}

absl::StatusOr<std::string> DecodePageToken(absl::string_view kind,
                                            absl::string_view token) {
  std::string raw;
  const std::string prefix = absl::StrCat(kind, ":");
  if (token.size() > 256 || !absl::WebSafeBase64Unescape(token, &raw) ||
      raw.compare(0, prefix.size(), prefix) != 0 ||
      !IsValidId(absl::string_view(raw).substr(prefix.size()))) {
    return absl::InvalidArgumentError(
        "page_token is not one returned by this list; pass the "
        "next_page_token of the previous response, or empty for the first "
        "page");
  }
  return raw.substr(prefix.size());
}

}  // namespace backprop::server
