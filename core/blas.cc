// OpenBLAS's thread controls, found with dlsym so that core does not link
// OpenBLAS by name: Debian selects the BLAS through libblas.so.3.
#include "core/blas.h"

#include <dlfcn.h>

namespace backprop {

bool SetBlasThreads(int threads) {
  if (threads < 1) return false;
  using SetFn = void (*)(int);
  auto set = reinterpret_cast<SetFn>(
      dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (set == nullptr) return false;
  set(threads);
  return true;
}

int BlasThreads() {
  using GetFn = int (*)();
  auto get =
      reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get == nullptr ? 0 : get();
}

}  // namespace backprop
