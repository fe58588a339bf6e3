// CUDA kernels of the Gramian route: gramian and weighted_sum_ (registered in ops_cuda.cu).
// Multi-tensor launches on the current stream, math in opmath, no host synchronisation.

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <vector>

#include "../checks.h"
#include "../gramian_math.h"
#include "cuda_kernels.cuh"

namespace mtbench {
namespace {

using namespace gpu;

// The tensors of one launch, each seen as T rows of n elements (NOTE [dense rows]).
template <typename scalar_t>
struct RowTable {
  const scalar_t* rows[kTensorsPerLaunch];  // row 0; row t starts t * row_stride elements later
  scalar_t* out[kTensorsPerLaunch];         // weighted_sum_ only
  int64_t row_stride[kTensorsPerLaunch];
  int64_t numel[kTensorsPerLaunch];  // n, the elements of one row
  int chunk_begin[kTensorsPerLaunch + 1];
  int num_tensors;
};
static_assert(sizeof(RowTable<double>) < 4000, "kernel arguments are limited to 4 KiB");

// NOTE [two-stage gramian]: each block sums the T(T+1)/2 pair products over its chunk (kChunkSize
// elements of every row, so each element of all T rows is read once) and writes them to its own
// slot of `partials`; a second kernel adds the slots up in a fixed order. No atomics: the result
// is bit-reproducible from run to run. Per thread, products are summed in opmath over the
// kChunkSize / kThreads = 64 elements it visits, then in double (as NOTE [gramian accumulation]
// in gramian_cpu.cpp does per block of 1024).
template <typename scalar_t, int T>
__global__ void __launch_bounds__(kThreads) gramian_partials_kernel(RowTable<scalar_t> table, double* partials) {
  using opmath_t = at::opmath_type<scalar_t>;
  constexpr int kPairs = num_pairs(T);
  const int s = tensor_of_block(table, blockIdx.x);
  const int64_t begin = (blockIdx.x - table.chunk_begin[s]) * kChunkSize;
  const int64_t end = begin + kChunkSize < table.numel[s] ? begin + kChunkSize : table.numel[s];
  const scalar_t* rows = table.rows[s];
  const int64_t row_stride = table.row_stride[s];
  opmath_t acc[kPairs];
#pragma unroll
  for (int p = 0; p < kPairs; ++p) acc[p] = opmath_t(0);
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    opmath_t x[T];
#pragma unroll
    for (int t = 0; t < T; ++t) x[t] = static_cast<opmath_t>(rows[t * row_stride + i]);
    add_pair_products<T>(x, acc);
  }
#pragma unroll
  for (int p = 0; p < kPairs; ++p) {
    const double total = block_sum(static_cast<double>(acc[p]));
    if (threadIdx.x == 0) partials[static_cast<int64_t>(blockIdx.x) * kPairs + p] = total;
  }
}

// Block p: gramian[a, b] = gramian[b, a] = the sum of pair p = (a, b) over the num_slots slots.
template <typename opmath_t>
__global__ void __launch_bounds__(kThreads) gramian_reduce_kernel(const double* partials, int num_slots,
                                                                  int num_tasks, opmath_t* gramian) {
  const int pairs = num_pairs(num_tasks);
  const int p = blockIdx.x;
  double sum = 0;
  for (int slot = threadIdx.x; slot < num_slots; slot += kThreads) {
    sum += partials[static_cast<int64_t>(slot) * pairs + p];
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) {
    int a = 0, b = 0;
    pair_rows(num_tasks, p, &a, &b);
    gramian[a * num_tasks + b] = static_cast<opmath_t>(sum);
    gramian[b * num_tasks + a] = static_cast<opmath_t>(sum);
  }
}

// out[i] = sum_t weights[t] * rows[t][i] over the block's chunk; weights has num_tasks entries.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) weighted_sum_kernel(RowTable<scalar_t> table, int num_tasks,
                                                                const at::opmath_type<scalar_t>* weights) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int s = tensor_of_block(table, blockIdx.x);
  const int64_t begin = (blockIdx.x - table.chunk_begin[s]) * kChunkSize;
  const int64_t end = begin + kChunkSize < table.numel[s] ? begin + kChunkSize : table.numel[s];
  const scalar_t* rows = table.rows[s];
  const int64_t row_stride = table.row_stride[s];
  scalar_t* out = table.out[s];
  // Loops over all kMaxTasks slots with a guard, so that w stays in registers.
  opmath_t w[kMaxTasks];
#pragma unroll
  for (int t = 0; t < kMaxTasks; ++t) w[t] = t < num_tasks ? weights[t] : opmath_t(0);
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) {
    opmath_t sum = static_cast<opmath_t>(rows[i]) * w[0];
#pragma unroll
    for (int t = 1; t < kMaxTasks; ++t) {
      if (t < num_tasks) sum = vfmadd(static_cast<opmath_t>(rows[t * row_stride + i]), w[t], sum);
    }
    out[i] = static_cast<scalar_t>(sum);
  }
}

// The table of one launch over inputs[launch[k]]; `out` is empty for gramian.
template <typename scalar_t>
RowTable<scalar_t> row_table(const std::vector<at::Tensor>& inputs, const std::vector<int64_t>& launch,
                             const std::vector<int64_t>& numels, at::TensorList out) {
  RowTable<scalar_t> table{};
  table.num_tensors = static_cast<int>(launch.size());
  for (int s = 0; s < table.num_tensors; ++s) {
    const int64_t i = launch[s];
    table.rows[s] = inputs[i].const_data_ptr<scalar_t>();
    table.out[s] = out.empty() ? nullptr : out[i].mutable_data_ptr<scalar_t>();
    table.row_stride[s] = inputs[i].stride(0);
    table.numel[s] = numels[i];
    table.chunk_begin[s + 1] = table.chunk_begin[s] + num_chunks(numels[i]);
  }
  return table;
}

// Every parameter's task gradients with dense rows, their indices and their row lengths.
void plan_rows(at::TensorList task_grads, int64_t num_tasks, std::vector<at::Tensor>* inputs,
               std::vector<int64_t>* items, std::vector<int64_t>* numels) {
  for (const at::Tensor& g : task_grads) {
    items->push_back(static_cast<int64_t>(inputs->size()));
    inputs->push_back(with_dense_rows(g));
    numels->push_back(g.numel() / num_tasks);
  }
}

}  // namespace

at::Tensor gramian_cuda(at::TensorList task_grads) {
  const int64_t num_tasks = check_gramian_args(task_grads, at::kCUDA);
  const c10::cuda::CUDAGuard guard(task_grads[0].device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::ScalarType dtype = task_grads[0].scalar_type();
  std::vector<at::Tensor> inputs;
  std::vector<int64_t> items, numels;
  plan_rows(task_grads, num_tasks, &inputs, &items, &numels);
  int max_chunks = 0;
  const auto launches = launches_of(items, numels, &max_chunks);
  int num_slots = 0;
  for (int64_t n : numels) num_slots += num_chunks(n);
  const int pairs = num_pairs(static_cast<int>(num_tasks));
  // One slot per chunk of every launch (NOTE [two-stage gramian]); the launches fill disjoint ranges.
  at::Tensor partials = at::empty({std::max(num_slots, 1) * static_cast<int64_t>(pairs)},
                                  task_grads[0].options().dtype(at::kDouble));
  at::Tensor out = at::empty({num_tasks, num_tasks}, task_grads[0].options().dtype(opmath_dtype(dtype)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "gramian_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    dispatch_num_tasks(num_tasks, [&](auto tasks) {
      constexpr int T = decltype(tasks)::value;
      double* slots = partials.mutable_data_ptr<double>();
      for (const auto& launch : launches) {
        const RowTable<scalar_t> table = row_table<scalar_t>(inputs, launch, numels, {});
        const int blocks = table.chunk_begin[table.num_tensors];
        if (blocks == 0) continue;
        gramian_partials_kernel<scalar_t, T><<<blocks, kThreads, 0, stream>>>(table, slots);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
        slots += static_cast<int64_t>(blocks) * pairs;
      }
    });
    gramian_reduce_kernel<opmath_t><<<pairs, kThreads, 0, stream>>>(
        partials.const_data_ptr<double>(), num_slots, static_cast<int>(num_tasks), out.mutable_data_ptr<opmath_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

void weighted_sum_cuda(at::TensorList out, at::TensorList task_grads, const at::Tensor& weights) {
  const int64_t num_tasks = check_weighted_sum_args(out, task_grads, weights, at::kCUDA);
  if (task_grads.empty()) return;
  const c10::cuda::CUDAGuard guard(weights.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::ScalarType dtype = task_grads[0].scalar_type();
  std::vector<at::Tensor> inputs;
  std::vector<int64_t> items, numels;
  plan_rows(task_grads, num_tasks, &inputs, &items, &numels);
  int max_chunks = 0;
  const auto launches = launches_of(items, numels, &max_chunks);
  // Converted on the device, in stream order: the weights may come from a kernel still running.
  const at::Tensor opmath_weights = weights.to(opmath_dtype(dtype)).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "weighted_sum_cuda", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    for (const auto& launch : launches) {
      const RowTable<scalar_t> table = row_table<scalar_t>(inputs, launch, numels, out);
      const int blocks = table.chunk_begin[table.num_tensors];
      if (blocks == 0) continue;
      weighted_sum_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(table, static_cast<int>(num_tasks),
                                                                     opmath_weights.const_data_ptr<opmath_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
}

}  // namespace mtbench
