// The BLAS library's own thread pool. Armadillo calls whatever BLAS
// libblas.so.3 resolves to (OpenBLAS on our Debian images); OpenBLAS starts
// one thread per core and uses them inside a single GEMM/GEMV. In a server
// that already runs several trainings and the gRPC threads side by side,
// that second pool oversubscribes the cores, wakes threads for every small
// Predict, and makes results depend on the thread count (RELIABILITY.md
// N5/N6). One threading layer: set it to 1 and scale with concurrent calls.
#ifndef BACKPROP_CORE_BLAS_H_
#define BACKPROP_CORE_BLAS_H_

namespace backprop {

// Asks OpenBLAS (looked up at run time, so any BLAS links) to use `threads`
// threads per call. Returns false when the loaded BLAS is not OpenBLAS (or
// threads < 1); nothing changes then.
bool SetBlasThreads(int threads);

// OpenBLAS's current thread count, or 0 when the BLAS is not OpenBLAS.
int BlasThreads();

}  // namespace backprop

#endif  // BACKPROP_CORE_BLAS_H_
