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

enum class Symlinks { kFollow, kRefuse };

// The whole of a regular file of at most max_bytes. A larger one is
// kResourceExhausted ("<path>: <size_words><size> bytes, over the limit of
// <max_bytes>"); anything but a regular file is kFailedPrecondition (a FIFO
// is refused without blocking), and so is a symbolic link with
// Symlinks::kRefuse. A failed open, fstat or read has the code
// errno_code(errno). A file that shrinks while it is read gives the bytes
// that were there.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          uint64_t max_bytes,
                                          Symlinks symlinks,
                                          ErrnoCodeFn errno_code,
                                          absl::string_view size_words);

}  // namespace backprop

#endif  // BACKPROP_CORE_FILES_H_
