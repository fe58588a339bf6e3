// The stream floor of MTAdamV2's fused CPU step: kernels that move exactly the bytes of the step, in
// the same streams, with no arithmetic beyond an add and a max per value. Built on the fly by
// benchmarks/mtadamv2_tasks.py (torch.utils.cpp_extension.load); not part of the package.
//
// Per parameter element, with T tasks, like the compiled step (csrc/cpu/ops_cpu.cpp):
//   norm pass:   read the T gradients (a sum of squares per task)
//   update pass: read p and each task's g, m, v; write each task's m, v and p
// and, for reference, the pattern of fused Adam: read p, g, m, v; write p, m, v.
//
// float32, contiguous tensors, one thread: these kernels measure this machine, not the optimizer.

#include <ATen/cpu/vec/vec.h>
#include <torch/extension.h>

#include <algorithm>
#include <vector>

namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kChunk = 1 << 15;  // kChunkSize of the compiled ops
constexpr int64_t kBlock = 1024;     // kBlockSize
constexpr int kMaxTasks = 8;
constexpr int64_t kPrefetch = 256;   // elements ahead in the grouped walk (the step's groups: 512)

struct Param {
  float* p;
  float* g[kMaxTasks];
  float* m[kMaxTasks];
  float* v[kMaxTasks];
  int64_t n;
};

std::vector<Param> unpack(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                          const std::vector<at::Tensor>& exp_avgs, const std::vector<at::Tensor>& exp_avg_sqs) {
  const int64_t num = static_cast<int64_t>(params.size());
  TORCH_CHECK(num > 0 && grads.size() % num == 0, "grads must hold T x len(params) tensors (task-major)");
  const int tasks = static_cast<int>(grads.size() / num);
  TORCH_CHECK(1 <= tasks && tasks <= kMaxTasks, "1..8 tasks, got ", tasks);
  std::vector<Param> out(num);
  for (int64_t i = 0; i < num; ++i) {
    for (const at::Tensor* t : {&params[i], &exp_avgs[i], &exp_avg_sqs[i]}) {
      TORCH_CHECK(t->scalar_type() == at::kFloat && t->is_contiguous() && t->device().is_cpu(),
                  "contiguous float32 CPU tensors only");
    }
    Param& u = out[i];
    u.n = params[i].numel();
    u.p = params[i].data_ptr<float>();
    TORCH_CHECK(exp_avgs[i].numel() >= tasks * u.n && exp_avg_sqs[i].numel() >= tasks * u.n, "state of T rows");
    for (int k = 0; k < tasks; ++k) {
      const at::Tensor& g = grads[k * num + i];
      TORCH_CHECK(g.scalar_type() == at::kFloat && g.is_contiguous() && g.numel() == u.n, "gradient ", k, ", ", i);
      u.g[k] = g.data_ptr<float>();
      u.m[k] = exp_avgs[i].data_ptr<float>() + k * u.n;
      u.v[k] = exp_avg_sqs[i].data_ptr<float>() + k * u.n;
    }
  }
  return out;
}

// Gradients [K0, K0 + L) of one chunk, read side by side block by block (as the step's norm pass).
template <int L>
float read_side_by_side(const Param& u, int k0, int64_t begin, int64_t end) {
  float total = 0;
  for (int64_t block = begin; block < end; block += kBlock) {
    const int64_t block_end = std::min(end, block + kBlock);
    Vec acc[L][2];
    for (int l = 0; l < L; ++l) acc[l][0] = acc[l][1] = Vec(0.0f);
    int64_t i = block;
    for (; i + 2 * Vec::size() <= block_end; i += 2 * Vec::size()) {
#pragma GCC unroll 8
      for (int l = 0; l < L; ++l) {
        acc[l][0] = acc[l][0] + Vec::loadu(u.g[k0 + l] + i);
        acc[l][1] = acc[l][1] + Vec::loadu(u.g[k0 + l] + i + Vec::size());
      }
    }
    for (int l = 0; l < L; ++l) {
      float lanes[Vec::size()];
      (acc[l][0] + acc[l][1]).store(lanes);
      for (float x : lanes) total += x;
      for (int64_t j = i; j < block_end; ++j) total += u.g[k0 + l][j];
    }
  }
  return total;
}

// Tasks [K0, K1) of the update over [begin, begin + num): the first group starts the sum and the
// max, the last writes p, the others carry them in an L2-sized buffer (the step's task groups).
template <int K0, int K1, bool kFirst, bool kLast, bool kPrefetchAhead>
void update_group(const Param& u, int64_t begin, int64_t num, float* carry_sum, float* carry_max) {
  for (int64_t j = 0; j < num; j += Vec::size()) {
    const int64_t i = begin + j;
    Vec sum = kFirst ? Vec(0.0f) : Vec::loadu(carry_sum + j);
    Vec max = kFirst ? Vec(0.0f) : Vec::loadu(carry_max + j);
    if (kPrefetchAhead && j % 16 == 0) {
#pragma GCC unroll 8
      for (int k = K0; k < K1; ++k) {
        __builtin_prefetch(u.m[k] + i + kPrefetch, 1, 3);
        __builtin_prefetch(u.v[k] + i + kPrefetch, 1, 3);
        __builtin_prefetch(u.g[k] + i + kPrefetch, 0, 3);
      }
      if constexpr (kLast) __builtin_prefetch(u.p + i + kPrefetch, 1, 3);
    }
#pragma GCC unroll 8
    for (int k = K0; k < K1; ++k) {
      const Vec g = Vec::loadu(u.g[k] + i);
      const Vec m = Vec::loadu(u.m[k] + i) + g;
      const Vec v = at::vec::maximum(Vec::loadu(u.v[k] + i), g);
      m.store(u.m[k] + i);
      v.store(u.v[k] + i);
      sum = sum + m;
      max = at::vec::maximum(max, v);
    }
    if constexpr (kLast) {
      (Vec::loadu(u.p + i) + (sum - max)).store(u.p + i);
    } else {
      sum.store(carry_sum + j);
      max.store(carry_max + j);
    }
  }
}

template <int T, int G, int K0, bool kPrefetchAhead>
void update_groups(const Param& u, int64_t begin, int64_t num, float* carry_sum, float* carry_max) {
  constexpr int K1 = K0 + G < T ? K0 + G : T;
  update_group<K0, K1, K0 == 0, K1 == T, kPrefetchAhead>(u, begin, num, carry_sum, carry_max);
  if constexpr (K1 < T) update_groups<T, G, K1, kPrefetchAhead>(u, begin, num, carry_sum, carry_max);
}

// walk 0: the update reads all tasks in one walk (1 + 3T streams side by side);
// walk 1: groups of 4 tasks per walk over a chunk, carried in a buffer, prefetching ahead.
template <int T>
float stream_step(const std::vector<Param>& params, int walk) {
  static std::vector<float> carry(2 * kChunk);
  float total = 0;
  for (const Param& u : params) {
    for (int64_t begin = 0; begin < u.n; begin += kChunk) {
      const int64_t end = std::min(u.n, begin + kChunk);
      for (int k = 0; k < T; k += 2) {
        total += k + 1 < T ? read_side_by_side<2>(u, k, begin, end) : read_side_by_side<1>(u, k, begin, end);
      }
    }
  }
  for (const Param& u : params) {
    for (int64_t begin = 0; begin < u.n; begin += kChunk) {
      const int64_t num = (std::min(u.n, begin + kChunk) - begin) / Vec::size() * Vec::size();
      if (walk == 0) {
        update_groups<T, T, 0, false>(u, begin, num, carry.data(), carry.data() + kChunk);
      } else {
        update_groups<T, 4, 0, true>(u, begin, num, carry.data(), carry.data() + kChunk);
      }
    }
  }
  return total;
}

// Runs the norm and update passes with T = len(grads) / len(params) over the tensors (modifying
// p, m, v); returns a sum of what was read, so that nothing is optimised away.
double streams(std::vector<at::Tensor> params, std::vector<at::Tensor> grads, std::vector<at::Tensor> exp_avgs,
               std::vector<at::Tensor> exp_avg_sqs, int64_t walk) {
  TORCH_CHECK(walk == 0 || walk == 1, "walk must be 0 (one walk) or 1 (groups of 4), got ", walk);
  const std::vector<Param> u = unpack(params, grads, exp_avgs, exp_avg_sqs);
  switch (grads.size() / params.size()) {
    case 1: return stream_step<1>(u, walk);
    case 2: return stream_step<2>(u, walk);
    case 3: return stream_step<3>(u, walk);
    case 4: return stream_step<4>(u, walk);
    case 5: return stream_step<5>(u, walk);
    case 6: return stream_step<6>(u, walk);
    case 7: return stream_step<7>(u, walk);
    default: return stream_step<8>(u, walk);
  }
}

// Fused Adam's pattern on the first task's rows: read p, g, m, v; write p, m, v.
void adam_streams(std::vector<at::Tensor> params, std::vector<at::Tensor> grads, std::vector<at::Tensor> exp_avgs,
                  std::vector<at::Tensor> exp_avg_sqs) {
  const std::vector<at::Tensor> first(grads.begin(), grads.begin() + params.size());
  for (const Param& u : unpack(params, first, exp_avgs, exp_avg_sqs)) {
    const int64_t num = u.n / Vec::size() * Vec::size();
    for (int64_t i = 0; i < num; i += Vec::size()) {
      const Vec g = Vec::loadu(u.g[0] + i);
      const Vec m = Vec::loadu(u.m[0] + i) + g;
      const Vec v = at::vec::maximum(Vec::loadu(u.v[0] + i), g);
      m.store(u.m[0] + i);
      v.store(u.v[0] + i);
      (Vec::loadu(u.p + i) + (m - v)).store(u.p + i);
    }
  }
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("streams", &streams, "MTAdamV2's stream pattern with no arithmetic (walk 0: one walk, 1: groups of 4)");
  m.def("adam_streams", &adam_streams, "fused Adam's stream pattern with no arithmetic");
}
