// The arithmetic of the Gramian route (gramian, weighted_sum_), shared by the CPU and CUDA kernels.
//
// As in mtadamv2_math.h, `V` is an opmath scalar (CUDA threads, CPU tails) or an
// at::vec::Vectorized of it (CPU main loops).
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <type_traits>

#include "mtadamv2_math.h"

namespace mtbench {

// The entries of the upper triangle (diagonal included) of a T x T Gramian.
C10_HOST_DEVICE constexpr int num_pairs(int num_tasks) { return num_tasks * (num_tasks + 1) / 2; }
constexpr int kMaxPairs = num_pairs(kMaxTasks);

// Pair p in the order the kernels accumulate them: (0,0), (0,1), ..., (0,T-1), (1,1), (1,2), ...
C10_HOST_DEVICE inline void pair_rows(int num_tasks, int pair, int* a, int* b) {
  int row = 0;
  while (pair >= num_tasks - row) {
    pair -= num_tasks - row;
    ++row;
  }
  *a = row;
  *b = row + pair;
}

C10_HOST_DEVICE inline float vfmadd(float a, float b, float c) { return a * b + c; }
C10_HOST_DEVICE inline double vfmadd(double a, double b, double c) { return a * b + c; }
#if !defined(__CUDACC__)
template <typename T>
inline at::vec::Vectorized<T> vfmadd(const at::vec::Vectorized<T>& a, const at::vec::Vectorized<T>& b,
                                     const at::vec::Vectorized<T>& c) {
  return at::vec::fmadd(a, b, c);
}
#endif

// acc[p] += x[a] * x[b] for every pair (a, b) of the upper triangle: one element of all T rows
// read once feeds all T(T+1)/2 products.
template <int T, typename V>
C10_HOST_DEVICE inline void add_pair_products(const V* x, V* acc) {
  int p = 0;
#pragma unroll
  for (int a = 0; a < T; ++a) {
#pragma unroll
    for (int b = a; b < T; ++b) {
      acc[p] = vfmadd(x[a], x[b], acc[p]);
      ++p;
    }
  }
}

}  // namespace mtbench
