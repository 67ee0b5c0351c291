// ParseCsv on arbitrary text, with the options taken from the first byte.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/strings/string_view.h"

#include "core/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  backprop::CsvOptions o;
  o.has_labels = (flags & 1) == 0;
  o.skip_header = (flags & 2) != 0;
  o.label_column = (flags & 4) != 0 ? -1 : (flags >> 5) & 3;
  o.class_count = (flags & 8) != 0 ? 10 : 0;
  o.scale = (flags & 16) != 0 ? 1.0 / 255 : 1.0;
  absl::StatusOr<backprop::Dataset> d = backprop::ParseCsv(
      absl::string_view(reinterpret_cast<const char*>(data + 1), size - 1), o);
  if (d.ok()) {
    // What the parser accepts is a well-formed dataset.
    if (d->size() == 0 || d->feature_count() == 0) abort();
    if (!d->inputs.is_finite()) abort();
    if (o.has_labels) {
      if (d->labels.size() != d->size() || d->class_count == 0) abort();
      for (uint32_t label : d->labels) {
        if (label >= d->class_count) abort();
      }
    }
  }
  return 0;
}
