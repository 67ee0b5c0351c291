// Model and dataset ids (API.md: [a-z0-9][a-z0-9._-]{0,62}) and list page
// tokens. An id is validated BEFORE it is used to build a path, so a valid id
// can never name anything outside its directory ("." and "/" cannot lead).
#ifndef BACKPROP_SERVER_IDS_H_
#define BACKPROP_SERVER_IDS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace backprop::server {

inline constexpr size_t kMaxIdLength = 63;

// True when id matches ^[a-z0-9][a-z0-9._-]{0,62}$.
bool IsValidId(absl::string_view id);

// kInvalidArgument naming `field` (e.g. "model_id") unless IsValidId(id).
absl::Status ValidateId(absl::string_view field, absl::string_view id);

// A fresh id "<prefix>-<16 hex digits>" (random; callers retry on a clash).
std::string NewId(absl::string_view prefix);

// Page tokens are web-safe base64 of "<kind>:<last id>"; opaque to clients.
std::string EncodePageToken(absl::string_view kind, absl::string_view last_id);
// The last id of the previous page. kInvalidArgument for a token that is not
// one of ours for this kind of list.
absl::StatusOr<std::string> DecodePageToken(absl::string_view kind,
                                            absl::string_view token);

}  // namespace backprop::server

#endif  // BACKPROP_SERVER_IDS_H_
