// The arithmetic of one MTAdamV2 step, shared by the CPU and CUDA kernels.
//
// `V` is either an opmath scalar (CUDA threads, CPU tails) or an at::vec::Vectorized of it (CPU
// main loops); the formulas are written once so both backends compute the same thing.
#pragma once

#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <type_traits>

#if !defined(__CUDACC__)
#include <ATen/cpu/vec/vec.h>
#endif

namespace mtbench {

// The most tasks one fused call takes (it bounds per-tensor tables passed by value to CUDA kernels).
constexpr int kMaxTasks = 8;

// A running norm at or below this counts as zero: such a task is never the anchor and keeps its
// weight unscaled (DESIGN §3, steps 2 and 3).
constexpr double kNormFloor = 1e-10;

C10_HOST_DEVICE inline float vsqrt(float x) { return ::sqrtf(x); }
C10_HOST_DEVICE inline double vsqrt(double x) { return ::sqrt(x); }
C10_HOST_DEVICE inline float vmax(float a, float b) { return a < b ? b : a; }
C10_HOST_DEVICE inline double vmax(double a, double b) { return a < b ? b : a; }

#if !defined(__CUDACC__)
template <typename T>
inline at::vec::Vectorized<T> vsqrt(const at::vec::Vectorized<T>& x) { return x.sqrt(); }
template <typename T>
inline at::vec::Vectorized<T> vmax(const at::vec::Vectorized<T>& a, const at::vec::Vectorized<T>& b) {
  return at::vec::maximum(a, b);
}
#endif

// Steps 1-3 for one parameter: fold this step's gradient norms into the running norms and
// return each task's gradient scale.
//   grad_norm[t]: ||g_t|| where given[t]; norm_avg[t] < 0 means task t has not reached p yet.
template <typename T>
C10_HOST_DEVICE inline void update_task_scales(int num_tasks, const T* grad_norm, const bool* given,
                                               const T* weights, T norm_beta, T* norm_avg, T* scale) {
  for (int t = 0; t < num_tasks; ++t) {
    if (given[t]) {
      norm_avg[t] = norm_avg[t] < T(0) ? grad_norm[t]
                                        : norm_beta * norm_avg[t] + (T(1) - norm_beta) * grad_norm[t];
    }
  }
  int anchor = -1;
  for (int t = 0; t < num_tasks && anchor < 0; ++t) {
    if (given[t] && norm_avg[t] > T(kNormFloor)) anchor = t;
  }
  for (int t = 0; t < num_tasks; ++t) {
    scale[t] = (anchor >= 0 && norm_avg[t] > T(kNormFloor)) ? weights[t] * norm_avg[anchor] / norm_avg[t]
                                                             : weights[t];
  }
}

// Step 4, first half, for one task: the moments of the scaled gradient.
template <typename V>
C10_HOST_DEVICE inline void update_moments(V& exp_avg, V& exp_avg_sq, const V& grad, const V& scale,
                                           const V& beta1, const V& one_minus_beta1, const V& beta2,
                                           const V& one_minus_beta2) {
  const V g = grad * scale;
  exp_avg = exp_avg * beta1 + g * one_minus_beta1;
  exp_avg_sq = exp_avg_sq * beta2 + g * g * one_minus_beta2;
}

// Steps 4 (second half) and 5: the new parameter from the summed first moments and the largest
// second moment over the tasks.
// NOTE [max before sqrt]: D = max_t (sqrt(v_t) / sqrt(bc2) + eps) equals sqrt(max_t v_t) / sqrt(bc2)
// + eps exactly, since sqrt, the scaling by a positive number and the addition are monotonic and
// correctly rounded; taking the max first costs one square root per element instead of T. The
// scaling multiplies by 1 / sqrt(bc2) rather than dividing: square roots and divisions share
// one slow unit on CPUs, and this kernel would otherwise spend as long there as on memory.
template <typename V>
C10_HOST_DEVICE inline V updated_param(const V& param, const V& sum_exp_avg, const V& max_exp_avg_sq,
                                       const V& decay, const V& step_size, const V& inv_bias_correction2_sqrt,
                                       const V& eps) {
  const V denom = vsqrt(max_exp_avg_sq) * inv_bias_correction2_sqrt + eps;
  return param * decay - step_size * sum_exp_avg / denom;
}

// Calls f(std::integral_constant<int, T>()) for T = num_tasks in 1..kMaxTasks, so that kernels
// unroll their loops over the tasks and keep per-task values (pointers, scales, the Gramian's
// T(T+1)/2 accumulators) in registers. Host code only.
template <typename F>
inline void dispatch_num_tasks(int64_t num_tasks, const F& f) {
  static_assert(kMaxTasks == 8, "one case per task count");
  switch (num_tasks) {
    case 1: return f(std::integral_constant<int, 1>());
    case 2: return f(std::integral_constant<int, 2>());
    case 3: return f(std::integral_constant<int, 3>());
    case 4: return f(std::integral_constant<int, 4>());
    case 5: return f(std::integral_constant<int, 5>());
    case 6: return f(std::integral_constant<int, 6>());
    case 7: return f(std::integral_constant<int, 7>());
    case 8: return f(std::integral_constant<int, 8>());
  }
  TORCH_INTERNAL_ASSERT(false, "num_tasks ", num_tasks, " was not checked");
}

}  // namespace mtbench
