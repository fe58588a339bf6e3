// What the CPU kernels share: fixed chunks for at::parallel_for, opmath loads and stores, streams
// of equally long rows; and the entry points that ops_cpu.cpp registers.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../mtadamv2_math.h"

namespace mtbench {

at::Tensor gramian_cpu(at::TensorList task_grads);
void weighted_sum_cpu(at::TensorList out, at::TensorList task_grads, const at::Tensor& weights);

namespace cpu {

using at::vec::Vectorized;

// NOTE [chunks]: every pass cuts every tensor into chunks of at most kChunkSize elements and
// threads take whole chunks. A chunk's result never depends on the thread count, so norms and
// updates are bit-reproducible on any number of threads, and a resumed run continues exactly.
constexpr int64_t kChunkSize = 1 << 15;

// NOTE [norm accumulation]: squares are summed in opmath over blocks of kBlockSize elements and
// the block sums in double: float32 rounding error stays near what a block of 1024 elements
// gives, however large the tensor, at the cost of one double addition per block.
constexpr int64_t kBlockSize = 1024;
static_assert(kChunkSize % kBlockSize == 0, "a chunk holds whole blocks");

struct Chunk {
  int64_t item;   // the tensor the chunk belongs to
  int64_t begin;  // element range inside that tensor
  int64_t end;
  int64_t start;  // offset of `begin` in the concatenation of all items, for load balancing
};

// Chunks of every item in order; an item of size 0 has none.
inline std::vector<Chunk> make_chunks(const std::vector<int64_t>& sizes) {
  std::vector<Chunk> chunks;
  int64_t start = 0;
  for (int64_t item = 0; item < static_cast<int64_t>(sizes.size()); ++item) {
    for (int64_t begin = 0; begin < sizes[item]; begin += kChunkSize) {
      const int64_t end = std::min(sizes[item], begin + kChunkSize);
      chunks.push_back({item, begin, end, start});
      start += end - begin;
    }
  }
  return chunks;
}

// Runs fn(chunk) for every chunk; threads get equal shares of elements, not of chunks, since
// chunks range from a handful of elements (biases, norms) to kChunkSize.
template <typename F>
void for_each_chunk(const std::vector<Chunk>& chunks, const F& fn) {
  if (chunks.empty()) return;
  const int64_t total = chunks.back().start + (chunks.back().end - chunks.back().begin);
  at::parallel_for(0, total, kChunkSize, [&](int64_t begin, int64_t end) {
    auto it = std::lower_bound(chunks.begin(), chunks.end(), begin,
                               [](const Chunk& c, int64_t offset) { return c.start < offset; });
    for (; it != chunks.end() && it->start < end; ++it) fn(*it);
  });
}

template <typename scalar_t>
using opmath_vec = Vectorized<at::opmath_type<scalar_t>>;

template <typename scalar_t>
inline opmath_vec<scalar_t> load_opmath(const scalar_t* ptr) {
  if constexpr (std::is_same_v<scalar_t, at::opmath_type<scalar_t>>) {
    return Vectorized<scalar_t>::loadu(ptr);
  } else {
    Vectorized<float> out;
    at::vec::load_to_float(ptr, out);
    return out;
  }
}

template <typename scalar_t>
inline void store_opmath(scalar_t* ptr, const opmath_vec<scalar_t>& value) {
  if constexpr (std::is_same_v<scalar_t, at::opmath_type<scalar_t>>) {
    value.store(ptr);
  } else {
    at::vec::convert_from_float<scalar_t>(value, value).store(ptr, Vectorized<float>::size());
  }
}

// The sum of the lanes, in lane order.
template <typename T>
inline T sum_lanes(const Vectorized<T>& v) {
  T lanes[Vectorized<T>::size()];
  v.store(lanes);
  T sum = 0;
  for (int64_t lane = 0; lane < Vectorized<T>::size(); ++lane) sum += lanes[lane];
  return sum;
}

// Equally long tensors (or rows of one) that one pass reads together.
// NOTE [interleaved streams]: the tasks' gradients of a parameter are read side by side rather
// than one tensor after the other: several concurrent streams keep more memory requests in
// flight, which makes a read-only pass faster on a single core (the norm pass: NOTE [norm pass
// in pairs] in ops_cpu.cpp).
template <typename scalar_t>
struct Streams {
  const scalar_t* data[kMaxTasks];
  int count = 0;
};

}  // namespace cpu
}  // namespace mtbench
