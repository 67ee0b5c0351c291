#include "core/files.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

#include <fcntl.h>
#include <sys/stat.h>

namespace backprop {

absl::Status ErrnoStatus(int err, absl::string_view what,
                         absl::string_view path, ErrnoCodeFn code_for) {
  return absl::Status(code_for(err),
                      absl::StrCat(path, ": ", what, ": ", strerror(err)));
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          uint64_t max_bytes,
                                          Symlinks symlinks,
                                          ErrnoCodeFn errno_code,
                                          absl::string_view size_words) {
  const bool refuse_links = symlinks == Symlinks::kRefuse;
  // O_NONBLOCK so that opening a FIFO cannot hang; it is refused below.
  const int flags =
      O_RDONLY | O_CLOEXEC | O_NONBLOCK | (refuse_links ? O_NOFOLLOW : 0);
  int fd = open(path.c_str(), flags);
  if (fd < 0) {
    const int err = errno;
    if (err == ELOOP && refuse_links) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": is a symbolic link, refused"));
    }
    return ErrnoStatus(err, "cannot open", path, errno_code);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoStatus(err, "cannot stat", path, errno_code);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrCat(path, ": ", size_words, st.st_size,
                     " bytes, over the limit of ", max_bytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = read(fd, &out[done], out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      close(fd);
      return ErrnoStatus(err, "read failed", path, errno_code);
    }
    if (n == 0) break;  // the file shrank while we read it
    done += static_cast<size_t>(n);
  }
  close(fd);
  out.resize(done);
  return out;
}

}  // namespace backprop
