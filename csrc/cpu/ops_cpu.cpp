// CPU kernels of the mtbench operators: at::vec main loops with scalar tails, at::parallel_for over
// fixed chunks, math in opmath (float32 for bfloat16/float16 tensors). The kernels of the Gramian
// route live in gramian_cpu.cpp; this file registers every CPU kernel.

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <array>
#include <vector>

#include "../checks.h"
#include "../mtadamv2_math.h"
#include "cpu_kernels.h"

namespace mtbench {
namespace {

using namespace cpu;

// NOTE [norm pass in pairs]: a single core reads a pass's streams faster the more of them it walks
// side by side (4 streams: ~37 GB/s, 1: ~32 on the machine this was measured on), and faster over
// a whole chunk than block by block. So the gradients of a chunk are read two at a time over the
// whole chunk, each with its own accumulators: on ResNet-50 shapes, old and new pass in one
// process, T = 6..8 stepped 1-10 % faster (T = 8: 8.2-9.1x fused Adam -> 7.9-8.4x), T <= 5 as
// before; three or four at a time spill accumulators and were no faster. Each stream still sums
// its blocks in the same order with the same operations, so the norms are bit-identical to
// reading one stream at a time.
constexpr int kNormStreams = 2;

// Adds the sum of squares of streams [k0, k0 + L) over [begin, end) to sums[k0..], the L
// streams read side by side.
template <int L, typename scalar_t>
void add_sums_of_squares(const Streams<scalar_t>& streams, int k0, int64_t begin, int64_t end, double* sums) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<opmath_t>;
  constexpr int64_t kWidth = Vec::size();
  for (int64_t block = begin; block < end; block += kBlockSize) {
    const int64_t block_end = std::min(end, block + kBlockSize);
    // Four accumulators per stream: enough independent chains to hide the latency of the fused multiply-add.
    Vec acc[L][4];
#pragma GCC unroll 4
    for (int l = 0; l < L; ++l) {
      for (Vec& a : acc[l]) a = Vec(opmath_t(0));
    }
    int64_t i = block;
    for (; i + 4 * kWidth <= block_end; i += 4 * kWidth) {
#pragma GCC unroll 4
      for (int l = 0; l < L; ++l) {
        const scalar_t* x = streams.data[k0 + l];
        const Vec a = load_opmath(x + i), b = load_opmath(x + i + kWidth);
        const Vec c = load_opmath(x + i + 2 * kWidth), d = load_opmath(x + i + 3 * kWidth);
        acc[l][0] = at::vec::fmadd(a, a, acc[l][0]);
        acc[l][1] = at::vec::fmadd(b, b, acc[l][1]);
        acc[l][2] = at::vec::fmadd(c, c, acc[l][2]);
        acc[l][3] = at::vec::fmadd(d, d, acc[l][3]);
      }
    }
#pragma GCC unroll 4
    for (int l = 0; l < L; ++l) {
      const scalar_t* x = streams.data[k0 + l];
      opmath_t sum = sum_lanes((acc[l][0] + acc[l][1]) + (acc[l][2] + acc[l][3]));
      for (int64_t j = i; j < block_end; ++j) {
        const opmath_t v = static_cast<opmath_t>(x[j]);
        sum += v * v;
      }
      sums[k0 + l] += sum;
    }
  }
}

// Adds the sum of squares of each stream over [begin, end) to sums[k], kNormStreams streams at a time.
template <typename scalar_t>
void add_sums_of_squares(const Streams<scalar_t>& streams, int64_t begin, int64_t end, double* sums) {
  static_assert(kNormStreams == 2, "one case per count");
  for (int k = 0; k < streams.count; k += kNormStreams) {
    if (k + 1 < streams.count) {
      add_sums_of_squares<2>(streams, k, begin, end, sums);
    } else {
      add_sums_of_squares<1>(streams, k, begin, end, sums);
    }
  }
}

// sums[item * kMaxTasks + k]: the sum of squares of stream k of items[item] (numels[item] elements).
template <typename scalar_t>
std::vector<double> sums_of_squares(const std::vector<Streams<scalar_t>>& items, const std::vector<int64_t>& numels) {
  const std::vector<Chunk> chunks = make_chunks(numels);
  std::vector<double> partial(chunks.size() * kMaxTasks, 0.0);
  for_each_chunk(chunks, [&](const Chunk& c) {
    add_sums_of_squares(items[c.item], c.begin, c.end, &partial[(&c - chunks.data()) * kMaxTasks]);
  });
  std::vector<double> sums(items.size() * kMaxTasks, 0.0);
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int k = 0; k < kMaxTasks; ++k) sums[chunks[c].item * kMaxTasks + k] += partial[c * kMaxTasks + k];
  }
  return sums;
}

at::Tensor sq_norms_cpu(at::TensorList tensors) {
  check_sq_norms_args(tensors, at::kCPU);
  const at::ScalarType dtype = tensors[0].scalar_type();
  std::vector<at::Tensor> inputs;
  inputs.reserve(tensors.size());
  for (const at::Tensor& t : tensors) inputs.push_back(t.contiguous());
  at::Tensor out = at::empty({static_cast<int64_t>(inputs.size())}, tensors[0].options().dtype(opmath_dtype(dtype)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "sq_norms_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    std::vector<Streams<scalar_t>> items(inputs.size());
    std::vector<int64_t> numels;
    for (size_t k = 0; k < inputs.size(); ++k) {
      items[k].data[0] = inputs[k].const_data_ptr<scalar_t>();
      items[k].count = 1;
      numels.push_back(inputs[k].numel());
    }
    const std::vector<double> sums = sums_of_squares(items, numels);
    opmath_t* result = out.mutable_data_ptr<opmath_t>();
    for (size_t k = 0; k < inputs.size(); ++k) result[k] = static_cast<opmath_t>(sums[k * kMaxTasks]);
  });
  return out;
}

// What the update pass needs of one parameter, with the tasks that hold state compacted to the
// front: a task that neither reaches p now nor ever did has all-zero rows that stay zero, so it
// is left out of the pass.
template <typename scalar_t>
struct ParamUpdate {
  using opmath_t = at::opmath_type<scalar_t>;
  scalar_t* param;
  const scalar_t* grad[kMaxTasks];  // nullptr: the task is absent this step (g = 0)
  opmath_t* exp_avg[kMaxTasks];
  opmath_t* exp_avg_sq[kMaxTasks];
  opmath_t scale[kMaxTasks];
  int num_tasks;
  opmath_t step_size;
  opmath_t inv_bias_correction2_sqrt;
};

template <typename opmath_t>
struct Coefficients {
  opmath_t beta1, one_minus_beta1, beta2, one_minus_beta2, decay, eps;
};

// NOTE [task groups]: the update reads p and each task's g, m and v, and writes p, m and v, all at
// the same element: 1 + 3T streams side by side. Up to kTaskGroup tasks (13 streams) the pass
// runs at the speed of fused Adam, but beyond, the hardware prefetchers lose track and, as a
// state's task rows lie a multiple of 4 KiB apart in large tensors, the rows share cache sets:
// at T = 8 the step fell to 1.5x its memory floor. So a chunk is walked once per group of up to
// kTaskGroup tasks, the partial sum of the first moments and max of the second carried from
// group to group in a chunk-sized buffer that stays in L2; the last group writes p. Each element
// still sees the tasks in order 0..T-1 with the same operations, so the results are bit-identical
// to a single walk over all tasks (and to the kernel before groups).
constexpr int kTaskGroup = 4;

// NOTE [prefetch]: on a single core these passes are bound by how many reads are in flight more
// than by the bus. Walking a chunk per group of tasks, the hardware prefetchers keep too few
// lines ahead, so each stream's line kPrefetch elements ahead is requested explicitly (measured
// on ResNet-50 shapes, T = 5..8: from 1.19x-1.23x of the floor to 1.15x-1.18x). With T <= 4, one
// walk over all tasks, the same requests made the step slower (T = 3: 1.19x -> 1.29x), so they
// are left to the hardware there. 512 elements ahead (2 KiB of float32) rather than 256: 1-3 %
// faster at each T = 5..8 in two sweeps with both distances in one process; 768 was no better,
// nor was prefetching into L2 only.
constexpr int64_t kPrefetch = 512;

// kWrite: the pass writes the line too, so it is requested for ownership at once.
template <bool kWrite, typename T>
inline void prefetch(const T* ptr) {
  __builtin_prefetch(ptr, kWrite ? 1 : 0, /*locality=*/3);
}

template <typename opmath_t>
struct Carry {
  opmath_t* sum_exp_avg;     // kChunkSize elements each
  opmath_t* max_exp_avg_sq;
};

// Tasks [K0, K1) over the vectors of [begin, begin + num); the first group starts the sum and the
// max from zero, the last one writes the parameter, the others pass them on in `carry`.
template <int K0, int K1, bool kFirst, bool kLast, bool kPrefetchAhead, typename scalar_t, typename Vec>
inline void update_task_group(const ParamUpdate<scalar_t>& u, const Coefficients<Vec>& c, const Vec* scale,
                              int64_t begin, int64_t num, const Carry<at::opmath_type<scalar_t>>& carry) {
  using opmath_t = at::opmath_type<scalar_t>;
  const Vec zero(0.0f);
  const Vec step_size(u.step_size);
  const Vec inv_bias_correction2_sqrt(u.inv_bias_correction2_sqrt);
  for (int64_t j = 0; j < num; j += Vec::size()) {
    const int64_t i = begin + j;
    Vec sum_exp_avg = kFirst ? zero : Vec::loadu(carry.sum_exp_avg + j);
    Vec max_exp_avg_sq = kFirst ? zero : Vec::loadu(carry.max_exp_avg_sq + j);
    if (kPrefetchAhead && (j * sizeof(opmath_t)) % 64 == 0) {  // once per cache line of the state
#pragma GCC unroll 8
      for (int k = K0; k < K1; ++k) {
        prefetch<true>(u.exp_avg[k] + i + kPrefetch);
        prefetch<true>(u.exp_avg_sq[k] + i + kPrefetch);
        if (u.grad[k] != nullptr) prefetch<false>(u.grad[k] + i + kPrefetch);
      }
      if constexpr (kLast) prefetch<true>(u.param + i + kPrefetch);
    }
#pragma GCC unroll 8
    for (int k = K0; k < K1; ++k) {
      Vec m = Vec::loadu(u.exp_avg[k] + i);
      Vec v = Vec::loadu(u.exp_avg_sq[k] + i);
      const Vec g = u.grad[k] != nullptr ? load_opmath(u.grad[k] + i) : zero;
      update_moments(m, v, g, scale[k], c.beta1, c.one_minus_beta1, c.beta2, c.one_minus_beta2);
      m.store(u.exp_avg[k] + i);
      v.store(u.exp_avg_sq[k] + i);
      sum_exp_avg = sum_exp_avg + m;
      max_exp_avg_sq = vmax(max_exp_avg_sq, v);
    }
    if constexpr (kLast) {
      store_opmath(u.param + i, updated_param(load_opmath(u.param + i), sum_exp_avg, max_exp_avg_sq, c.decay,
                                              step_size, inv_bias_correction2_sqrt, c.eps));
    } else {
      sum_exp_avg.store(carry.sum_exp_avg + j);
      max_exp_avg_sq.store(carry.max_exp_avg_sq + j);
    }
  }
}

// The groups [K0, K0 + kTaskGroup), ... of T tasks, in order.
template <int T, int K0, typename scalar_t, typename Vec>
inline void update_task_groups(const ParamUpdate<scalar_t>& u, const Coefficients<Vec>& c, const Vec* scale,
                               int64_t begin, int64_t num, const Carry<at::opmath_type<scalar_t>>& carry) {
  constexpr int K1 = K0 + kTaskGroup < T ? K0 + kTaskGroup : T;
  update_task_group<K0, K1, K0 == 0, K1 == T, /*kPrefetchAhead=*/true>(u, c, scale, begin, num, carry);
  if constexpr (K1 < T) update_task_groups<T, K1>(u, c, scale, begin, num, carry);
}

// One element, all T tasks, in scalar opmath: the tail of a chunk that fills no whole vector.
template <int T, typename scalar_t, typename opmath_t>
inline scalar_t updated_element(const ParamUpdate<scalar_t>& u, const Coefficients<opmath_t>& c, int64_t i) {
  opmath_t sum_exp_avg = 0;
  opmath_t max_exp_avg_sq = 0;
  for (int k = 0; k < T; ++k) {
    opmath_t m = u.exp_avg[k][i];
    opmath_t v = u.exp_avg_sq[k][i];
    const opmath_t g = u.grad[k] != nullptr ? static_cast<opmath_t>(u.grad[k][i]) : opmath_t(0);
    update_moments(m, v, g, u.scale[k], c.beta1, c.one_minus_beta1, c.beta2, c.one_minus_beta2);
    u.exp_avg[k][i] = m;
    u.exp_avg_sq[k][i] = v;
    sum_exp_avg = sum_exp_avg + m;
    max_exp_avg_sq = vmax(max_exp_avg_sq, v);
  }
  return static_cast<scalar_t>(updated_param(static_cast<opmath_t>(u.param[i]), sum_exp_avg, max_exp_avg_sq, c.decay,
                                             u.step_size, u.inv_bias_correction2_sqrt, c.eps));
}

// Steps 4-5 over [begin, end), a range of at most kChunkSize elements of one parameter.
template <typename scalar_t>
void update_range(const ParamUpdate<scalar_t>& u, const Coefficients<at::opmath_type<scalar_t>>& c,
                  int64_t begin, int64_t end) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<opmath_t>;
  const Coefficients<Vec> cv{Vec(c.beta1), Vec(c.one_minus_beta1), Vec(c.beta2),
                             Vec(c.one_minus_beta2), Vec(c.decay), Vec(c.eps)};
  Vec scale[kMaxTasks];
  for (int k = 0; k < u.num_tasks; ++k) scale[k] = Vec(u.scale[k]);
  const int64_t vector_end = begin + (end - begin) / Vec::size() * Vec::size();
  dispatch_num_tasks(u.num_tasks, [&](auto tasks) {
    constexpr int T = decltype(tasks)::value;
    if constexpr (T <= kTaskGroup) {
      update_task_group<0, T, true, true, /*kPrefetchAhead=*/false>(u, cv, scale, begin, vector_end - begin,
                                                                     Carry<opmath_t>{});
    } else {
      // Per thread and kept: 256 KiB (512 KiB for float64) is too much for some threads' stacks.
      static thread_local std::vector<opmath_t> buffer(2 * kChunkSize);
      const Carry<opmath_t> carry{buffer.data(), buffer.data() + kChunkSize};
      update_task_groups<T, 0>(u, cv, scale, begin, vector_end - begin, carry);
    }
    for (int64_t i = vector_end; i < end; ++i) u.param[i] = updated_element<T>(u, c, i);
  });
}

template <typename scalar_t>
void mtadamv2_kernel(at::TensorList params, const c10::List<std::optional<at::Tensor>>& grads,
                     at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList norm_avgs,
                     at::IntArrayRef steps, double lr, double beta1, double beta2, double norm_beta, double eps,
                     double weight_decay, at::ArrayRef<double> task_weights) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t num_params = static_cast<int64_t>(params.size());
  const int num_tasks = static_cast<int>(task_weights.size());

  // Pass 1: the norms of the gradients handed in (grads is task-major); a parameter's tasks are
  // the streams of one item.
  std::vector<std::array<const scalar_t*, kMaxTasks>> grad_data(num_params);
  std::vector<std::array<bool, kMaxTasks>> given(num_params);
  std::vector<Streams<scalar_t>> grad_streams(num_params);
  std::vector<int64_t> numels(num_params);
  for (int64_t i = 0; i < num_params; ++i) {
    numels[i] = params[i].numel();
    for (int t = 0; t < num_tasks; ++t) {
      const std::optional<at::Tensor> g = grads.get(t * num_params + i);
      given[i][t] = g.has_value() && g->defined();
      grad_data[i][t] = given[i][t] ? g->const_data_ptr<scalar_t>() : nullptr;
      if (given[i][t]) grad_streams[i].data[grad_streams[i].count++] = grad_data[i][t];
    }
  }
  const std::vector<double> sq_norms = sums_of_squares(grad_streams, numels);

  // Steps 1-3 on the host, one parameter at a time, and the plan of pass 2.
  opmath_t weights[kMaxTasks];
  for (int t = 0; t < num_tasks; ++t) weights[t] = static_cast<opmath_t>(task_weights[t]);
  std::vector<ParamUpdate<scalar_t>> updates(num_params);
  std::vector<int64_t> update_numel(num_params, 0);
  for (int64_t i = 0; i < num_params; ++i) {
    // A parameter without any gradient in this step is left as it is, state included.
    if (grad_streams[i].count == 0) continue;
    opmath_t grad_norm[kMaxTasks];
    for (int t = 0, stream = 0; t < num_tasks; ++t) {
      grad_norm[t] = given[i][t] ? static_cast<opmath_t>(std::sqrt(sq_norms[i * kMaxTasks + stream++])) : 0;
    }
    opmath_t* norm_avg = norm_avgs[i].mutable_data_ptr<opmath_t>();
    opmath_t scale[kMaxTasks];
    update_task_scales<opmath_t>(num_tasks, grad_norm, given[i].data(), weights, static_cast<opmath_t>(norm_beta),
                                 norm_avg, scale);

    ParamUpdate<scalar_t>& u = updates[i];
    u.param = params[i].mutable_data_ptr<scalar_t>();
    u.num_tasks = 0;
    opmath_t* exp_avg = exp_avgs[i].mutable_data_ptr<opmath_t>();
    opmath_t* exp_avg_sq = exp_avg_sqs[i].mutable_data_ptr<opmath_t>();
    for (int t = 0; t < num_tasks; ++t) {
      if (!given[i][t] && norm_avg[t] < opmath_t(0)) continue;
      u.grad[u.num_tasks] = grad_data[i][t];
      u.exp_avg[u.num_tasks] = exp_avg + t * numels[i];
      u.exp_avg_sq[u.num_tasks] = exp_avg_sq + t * numels[i];
      u.scale[u.num_tasks] = scale[t];
      ++u.num_tasks;
    }
    const BiasCorrection bc = bias_correction(steps[i], lr, beta1, beta2);
    u.step_size = static_cast<opmath_t>(bc.step_size);
    u.inv_bias_correction2_sqrt = static_cast<opmath_t>(bc.inv_bias_correction2_sqrt);
    update_numel[i] = numels[i];
  }

  // Pass 2: moments and parameters.
  const Coefficients<opmath_t> c{static_cast<opmath_t>(beta1), static_cast<opmath_t>(1.0 - beta1),
                                 static_cast<opmath_t>(beta2), static_cast<opmath_t>(1.0 - beta2),
                                 static_cast<opmath_t>(1.0 - lr * weight_decay), static_cast<opmath_t>(eps)};
  for_each_chunk(make_chunks(update_numel),
                 [&](const Chunk& chunk) { update_range(updates[chunk.item], c, chunk.begin, chunk.end); });
}

void mtadamv2_cpu(at::TensorList params, const c10::List<std::optional<at::Tensor>>& grads,
                  at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList norm_avgs,
                  at::IntArrayRef steps, double lr, double beta1, double beta2, double norm_beta, double eps,
                  double weight_decay, at::ArrayRef<double> task_weights) {
  check_mtadamv2_args(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta, eps,
                      weight_decay, task_weights, at::kCPU);
  if (params.empty()) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, params[0].scalar_type(), "mtadamv2_cpu", [&] {
    mtadamv2_kernel<scalar_t>(params, grads, exp_avgs, exp_avg_sqs, norm_avgs, steps, lr, beta1, beta2, norm_beta,
                              eps, weight_decay, task_weights);
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(mtbench, CPU, m) {
  m.impl("sq_norms", &sq_norms_cpu);
  m.impl("mtadamv2_", &mtadamv2_cpu);
  m.impl("gramian", &gramian_cpu);
  m.impl("weighted_sum_", &weighted_sum_cpu);
}

}  // namespace mtbench
