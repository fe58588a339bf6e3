// What the CUDA kernels share: the multi-tensor launch plan and a deterministic block sum; and the
// entry points that ops_cuda.cu registers.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <vector>

namespace mtbench {

at::Tensor gramian_cuda(at::TensorList task_grads);
void weighted_sum_cuda(at::TensorList out, at::TensorList task_grads, const at::Tensor& weights);

namespace gpu {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int64_t kChunkSize = 16384;  // elements per block

// NOTE [multi-tensor launches]: parameters are often many small tensors (biases, norms), so
// every launch covers up to kTensorsPerLaunch of them: the table of pointers travels by value
// as a kernel argument (no host-to-device copy), and block b finds its tensor through the
// prefix sums of the tensors' chunk counts. The table must stay below the 4 KiB argument limit.
constexpr int kTensorsPerLaunch = 16;

template <typename Table>
__device__ inline int tensor_of_block(const Table& table, int block) {
  int s = 0;
  while (block >= table.chunk_begin[s + 1]) ++s;
  return s;
}

// The sum over the block, valid in thread 0; the fixed tree keeps it deterministic.
__device__ inline double block_sum(double value) {
  __shared__ double warp_sums[kWarps];
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = value;
  __syncthreads();
  value = threadIdx.x < kWarps ? warp_sums[threadIdx.x] : 0.0;
  if (threadIdx.x < 32) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
  }
  __syncthreads();  // warp_sums is reused by the next call
  return value;
}

inline int num_chunks(int64_t numel) { return static_cast<int>((numel + kChunkSize - 1) / kChunkSize); }

// Splits `items` into launches of at most kTensorsPerLaunch tensors; returns the most chunks any launch has.
inline std::vector<std::vector<int64_t>> launches_of(const std::vector<int64_t>& items,
                                                     const std::vector<int64_t>& numels, int* max_chunks) {
  std::vector<std::vector<int64_t>> launches;
  *max_chunks = 0;
  for (size_t k = 0; k < items.size(); k += kTensorsPerLaunch) {
    launches.emplace_back(items.begin() + k, items.begin() + std::min(items.size(), k + kTensorsPerLaunch));
    int chunks = 0;
    for (int64_t item : launches.back()) chunks += num_chunks(numels[item]);
    *max_chunks = std::max(*max_chunks, chunks);
  }
  return launches;
}

}  // namespace gpu
}  // namespace mtbench
