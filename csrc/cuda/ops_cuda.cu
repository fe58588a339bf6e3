// CUDA kernels of the mtbench operators: multi-tensor launches on the current stream, math in
// opmath (float32 for bfloat16/float16 tensors), no host synchronisation. The kernels of the
// Gramian route live in gramian_cuda.cu; this file registers every CUDA kernel.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../mtadamv2_math.h"
#include "cuda_kernels.cuh"

namespace mtbench {
namespace {

using namespace gpu;

template <typename scalar_t, typename opmath_t>
struct TensorTable {
  scalar_t* params[kTensorsPerLaunch];
  const scalar_t* grads[kTensorsPerLaunch][kMaxTasks];
  opmath_t* exp_avg[kTensorsPerLaunch];
  opmath_t* exp_avg_sq[kTensorsPerLaunch];
  opmath_t* norm_avg[kTensorsPerLaunch];
  int64_t numel[kTensorsPerLaunch];
  opmath_t step_size[kTensorsPerLaunch];
  opmath_t inv_bias_correction2_sqrt[kTensorsPerLaunch];
  unsigned given[kTensorsPerLaunch];  // bit t: task t hands in a gradient
  int chunk_begin[kTensorsPerLaunch + 1];
  int num_tensors;
  int num_tasks;
};
static_assert(sizeof(TensorTable<double, double>) < 4000, "kernel arguments are limited to 4 KiB");

template <typename opmath_t>
struct Coefficients {
  opmath_t weights[kMaxTasks];
  opmath_t norm_beta, beta1, one_minus_beta1, beta2, one_minus_beta2, decay, eps;
};

// Pass 1: partials[block * num_tasks + t] = sum of squares of task t's gradient over the block's chunk.
template <typename scalar_t, typename opmath_t>
__global__ void __launch_bounds__(kThreads) partial_sums_kernel(TensorTable<scalar_t, opmath_t> table,
                                                                double* partials) {
  const int s = tensor_of_block(table, blockIdx.x);
  const int64_t begin = (blockIdx.x - table.chunk_begin[s]) * kChunkSize;
  const int64_t end = begin + kChunkSize < table.numel[s] ? begin + kChunkSize : table.numel[s];
  for (int t = 0; t < table.num_tasks; ++t) {
    opmath_t sum = 0;
    if (table.given[s] >> t & 1u) {
      const scalar_t* grad = table.grads[s][t];
      for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
        const opmath_t g = static_cast<opmath_t>(grad[i]);
        sum += g * g;
      }
    }
    const double total = block_sum(static_cast<double>(sum));
    if (threadIdx.x == 0) partials[blockIdx.x * table.num_tasks + t] = total;
  }
}

template <typename scalar_t, typename opmath_t>
__device__ inline double tensor_sum(const TensorTable<scalar_t, opmath_t>& table, const double* partials, int s,
                                    int t) {
  double sum = 0;
  for (int c = table.chunk_begin[s]; c < table.chunk_begin[s + 1]; ++c) sum += partials[c * table.num_tasks + t];
  return sum;
}

// sq_norms: out[s] = the tensor's sum of squares; one thread per tensor.
template <typename scalar_t, typename opmath_t>
__global__ void sq_norms_kernel(TensorTable<scalar_t, opmath_t> table, const double* partials, opmath_t* out) {
  const int s = threadIdx.x;
  if (s < table.num_tensors) out[s] = static_cast<opmath_t>(tensor_sum(table, partials, s, 0));
}

// Steps 1-3 of DESIGN §3: running norms and scales[s * kMaxTasks + t]; one thread per tensor.
template <typename scalar_t, typename opmath_t>
__global__ void task_scales_kernel(TensorTable<scalar_t, opmath_t> table, const double* partials,
                                   Coefficients<opmath_t> c, opmath_t* scales) {
  const int s = threadIdx.x;
  if (s >= table.num_tensors) return;
  opmath_t grad_norm[kMaxTasks];
  bool given[kMaxTasks];
  for (int t = 0; t < table.num_tasks; ++t) {
    given[t] = table.given[s] >> t & 1u;
    grad_norm[t] = static_cast<opmath_t>(::sqrt(tensor_sum(table, partials, s, t)));
  }
  update_task_scales<opmath_t>(table.num_tasks, grad_norm, given, c.weights, c.norm_beta, table.norm_avg[s],
                               scales + s * kMaxTasks);
}

// Steps 4-5: moments and parameters over the block's chunk; T = table.num_tasks, a template
// parameter so that the loop over the tasks unrolls (dispatch_num_tasks).
template <int T, typename scalar_t, typename opmath_t>
__global__ void __launch_bounds__(kThreads) update_kernel(TensorTable<scalar_t, opmath_t> table,
                                                          Coefficients<opmath_t> c, const opmath_t* scales) {
  const int s = tensor_of_block(table, blockIdx.x);
  const int64_t n = table.numel[s];
  const int64_t begin = (blockIdx.x - table.chunk_begin[s]) * kChunkSize;
  const int64_t end = begin + kChunkSize < n ? begin + kChunkSize : n;
  scalar_t* param = table.params[s];
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    opmath_t sum_exp_avg = 0;
    opmath_t max_exp_avg_sq = 0;
#pragma unroll
    for (int t = 0; t < T; ++t) {
      opmath_t& m = table.exp_avg[s][t * n + i];
      opmath_t& v = table.exp_avg_sq[s][t * n + i];
      opmath_t exp_avg = m;
      opmath_t exp_avg_sq = v;
      const opmath_t g = (table.given[s] >> t & 1u) ? static_cast<opmath_t>(table.grads[s][t][i]) : opmath_t(0);
      update_moments(exp_avg, exp_avg_sq, g, scales[s * kMaxTasks + t], c.beta1, c.one_minus_beta1, c.beta2,
                     c.one_minus_beta2);
      m = exp_avg;
      v = exp_avg_sq;
      sum_exp_avg += exp_avg;
      max_exp_avg_sq = vmax(max_exp_avg_sq, exp_avg_sq);
    }
    param[i] = static_cast<scalar_t>(updated_param(static_cast<opmath_t>(param[i]), sum_exp_avg, max_exp_avg_sq,
                                                   c.decay, table.step_size[s], table.inv_bias_correction2_sqrt[s],
                                                   c.eps));
  }
}

at::Tensor sq_norms_cuda(at::TensorList tensors) {
  check_sq_norms_args(tensors, at::kCUDA);
  const c10::cuda::CUDAGuard guard(tensors[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::ScalarType dtype = tensors[0].scalar_type();
  std::vector<at::Tensor> inputs;
  std::vector<int64_t> items, numels;
  for (const at::Tensor& t : tensors) {
    items.push_back(static_cast<int64_t>(inputs.size()));
    inputs.push_back(t.contiguous());
    numels.push_back(t.numel());
  }
  at::Tensor out = at::empty({static_cast<int64_t>(inputs.size())}, tensors[0].options().dtype(opmath_dtype(dtype)));
  int max_chunks = 0;
  const auto launches = launches_of(items, numels, &max_chunks);
  // NOTE [workspace]: one buffer of per-chunk partial sums, reused by every launch: the launches
  // run in stream order, so one finishes with it before the next starts.
  at::Tensor partials = at::empty({std::max(max_chunks, 1)}, tensors[0].options().dtype(at::kDouble));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "sq_norms_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    int64_t offset = 0;
    for (const auto& launch : launches) {
      TensorTable<scalar_t, opmath_t> table{};
      table.num_tasks = 1;
      table.num_tensors = static_cast<int>(launch.size());
      for (int s = 0; s < table.num_tensors; ++s) {
        table.grads[s][0] = inputs[launch[s]].const_data_ptr<scalar_t>();
        table.numel[s] = numels[launch[s]];
        table.given[s] = 1u;
        table.chunk_begin[s + 1] = table.chunk_begin[s] + num_chunks(table.numel[s]);
      }
      const int blocks = table.chunk_begin[table.num_tensors];
      if (blocks > 0) {
        partial_sums_kernel<<<blocks, kThreads, 0, stream>>>(table, partials.mutable_data_ptr<double>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      sq_norms_kernel<<<1, kTensorsPerLaunch, 0, stream>>>(table, partials.const_data_ptr<double>(),
                                                            out.mutable_data_ptr<opmath_t>() + offset);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      offset += table.num_tensors;
    }
  });
  return out;
}

template <typename scalar_t>
void mtadamv2_kernel(at::TensorList params, const c10::List<std::optional<at::Tensor>>& grads,
                     at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList norm_avgs,
                     at::IntArrayRef steps, double lr, double beta1, double beta2, double norm_beta, double eps,
                     double weight_decay, at::ArrayRef<double> task_weights, cudaStream_t stream) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t num_params = static_cast<int64_t>(params.size());
  const int num_tasks = static_cast<int>(task_weights.size());

  // Parameters with at least one gradient; the others are left as they are, state included.
  std::vector<int64_t> items, numels;
  for (int64_t i = 0; i < num_params; ++i) {
    numels.push_back(params[i].numel());
    for (int t = 0; t < num_tasks; ++t) {
      const std::optional<at::Tensor> g = grads.get(t * num_params + i);
      if (g.has_value() && g->defined()) {
        items.push_back(i);
        break;
      }
    }
  }
  if (items.empty()) return;
  int max_chunks = 0;
  const auto launches = launches_of(items, numels, &max_chunks);
  // See NOTE [workspace]; the scales follow the partial sums in the same buffer.
  const int64_t partials_size = static_cast<int64_t>(std::max(max_chunks, 1)) * num_tasks;
  at::Tensor workspace = at::empty({partials_size + kTensorsPerLaunch * kMaxTasks}, params[0].options().dtype(at::kDouble));
  double* partials = workspace.mutable_data_ptr<double>();
  opmath_t* scales = reinterpret_cast<opmath_t*>(partials + partials_size);

  Coefficients<opmath_t> c{};
  for (int t = 0; t < num_tasks; ++t) c.weights[t] = static_cast<opmath_t>(task_weights[t]);
  c.norm_beta = static_cast<opmath_t>(norm_beta);
  c.beta1 = static_cast<opmath_t>(beta1);
  c.one_minus_beta1 = static_cast<opmath_t>(1.0 - beta1);
  c.beta2 = static_cast<opmath_t>(beta2);
  c.one_minus_beta2 = static_cast<opmath_t>(1.0 - beta2);
  c.decay = static_cast<opmath_t>(1.0 - lr * weight_decay);
  c.eps = static_cast<opmath_t>(eps);

  for (const auto& launch : launches) {
    TensorTable<scalar_t, opmath_t> table{};
    table.num_tasks = num_tasks;
    table.num_tensors = static_cast<int>(launch.size());
    for (int s = 0; s < table.num_tensors; ++s) {
      const int64_t i = launch[s];
      table.params[s] = params[i].mutable_data_ptr<scalar_t>();
      for (int t = 0; t < num_tasks; ++t) {
        const std::optional<at::Tensor> g = grads.get(t * num_params + i);
        if (g.has_value() && g->defined()) {
          table.grads[s][t] = g->const_data_ptr<scalar_t>();
          table.given[s] |= 1u << t;
        }
      }
      table.exp_avg[s] = exp_avgs[i].mutable_data_ptr<opmath_t>();
      table.exp_avg_sq[s] = exp_avg_sqs[i].mutable_data_ptr<opmath_t>();
      table.norm_avg[s] = norm_avgs[i].mutable_data_ptr<opmath_t>();
      table.numel[s] = numels[i];
      const BiasCorrection bc = bias_correction(steps[i], lr, beta1, beta2);
      table.step_size[s] = static_cast<opmath_t>(bc.step_size);
      table.inv_bias_correction2_sqrt[s] = static_cast<opmath_t>(bc.inv_bias_correction2_sqrt);
      table.chunk_begin[s + 1] = table.chunk_begin[s] + num_chunks(numels[i]);
    }
    const int blocks = table.chunk_begin[table.num_tensors];
    if (blocks > 0) {
      partial_sums_kernel<<<blocks, kThreads, 0, stream>>>(table, partials);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    task_scales_kernel<<<1, kTensorsPerLaunch, 0, stream>>>(table, partials, c, scales);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (blocks > 0) {
      dispatch_num_tasks(num_tasks, [&](auto tasks) {
        update_kernel<decltype(tasks)::value><<<blocks, kThreads, 0, stream>>>(table, c, scales);
      });
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
}

void mtadamv2_cuda(at::TensorList params, const c10::List<std::optional<at::Tensor>>& grads,
                   at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList norm_avgs,
                   at::IntArrayRef steps, double lr, double beta1, double beta2, double norm_beta, double eps,
                   double weight_decay, at::ArrayRef<double> task_weights) {
  check_mtadamv2_args(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta, eps,
                      weight_decay, task_weights, at::kCUDA);
  if (params.empty()) return;
  const c10::cuda::CUDAGuard guard(params[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, params[0].scalar_type(), "mtadamv2_cuda", [&] {
    mtadamv2_kernel<scalar_t>(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta,
                              eps, weight_decay, task_weights, stream);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(mtbench, CUDA, m) {
  m.impl("sq_norms", &sq_norms_cuda);
  m.impl("mtadamv2_", &mtadamv2_cuda);
  m.impl("gramian", &gramian_cuda);
  m.impl("weighted_sum_", &weighted_sum_cuda);
}

}  // namespace mtbench
