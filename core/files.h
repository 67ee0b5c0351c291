// File reading and errno reporting shared by the readers of users' data
// files (readers.cc) and the model and dataset store (model_file.cc).
#ifndef BACKPROP_CORE_FILES_H_
#define BACKPROP_CORE_FILES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace backprop {

// Which status code an errno value stands for; each caller decides which
// errors are the user's to fix (kNotFound, kPermissionDenied, ...).
using ErrnoCodeFn = absl::StatusCode (*)(int err);

// "<path>: <what>: <strerror(err)>" with the code code_for(err).
absl::Status ErrnoStatus(int err, absl::string_view what,
                         absl::string_view path, ErrnoCodeFn code_for);

struct ReadFileOptions {
  uint64_t max_bytes = 0;  // a larger file is kResourceExhausted
  // false: a symbolic link is refused (kFailedPrecondition) at open.
  bool follow_symlinks = true;
  // The code of a failed open, fstat or read.
  ErrnoCodeFn errno_code = nullptr;
  // Words before the size in the kResourceExhausted message, e.g. "file is ".
  absl::string_view size_words;
};

// The whole of a regular file. kFailedPrecondition for anything else (a
// FIFO is refused without blocking). A file that shrinks while it is read
// gives the bytes that were there.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          const ReadFileOptions& options);

}  // namespace backprop

#endif  // BACKPROP_CORE_FILES_H_
