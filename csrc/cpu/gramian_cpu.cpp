// CPU kernels of the Gramian route: gramian and weighted_sum_ (registered in ops_cpu.cpp).
// Each reads every parameter's T task rows side by side in one pass (NOTE [interleaved streams]).

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include <vector>

#include "../checks.h"
#include "../gramian_math.h"
#include "cpu_kernels.h"

namespace mtbench {
namespace {

using namespace cpu;

// The T rows of each parameter's [T, n_i] view (NOTE [dense rows]) and the row lengths n_i.
template <typename scalar_t>
void task_rows(const std::vector<at::Tensor>& task_grads, int64_t num_tasks, std::vector<Streams<scalar_t>>* rows,
               std::vector<int64_t>* numels) {
  for (const at::Tensor& g : task_grads) {
    Streams<scalar_t> item;
    const scalar_t* data = g.const_data_ptr<scalar_t>();
    for (int64_t t = 0; t < num_tasks; ++t) item.data[item.count++] = data + t * g.stride(0);
    rows->push_back(item);
    numels->push_back(g.numel() / num_tasks);
  }
}

std::vector<at::Tensor> dense_rows_of(at::TensorList task_grads) {
  std::vector<at::Tensor> inputs;
  inputs.reserve(task_grads.size());
  for (const at::Tensor& g : task_grads) inputs.push_back(with_dense_rows(g));
  return inputs;
}

// NOTE [gramian accumulation]: as in NOTE [norm accumulation], products are summed in opmath lanes
// over blocks of kBlockSize elements and the block sums in double, so float32 rounding error stays
// that of a 1024-element block (128 products per lane) however many elements the model has.
// Accumulating every product in double instead would halve the elements per instruction and
// convert each one, for error that the block scheme already keeps near float32's resolution.
// Adds sums[p] += sum_i rows[a][i] * rows[b][i] over [begin, end) for every pair p = (a, b).
template <typename scalar_t, int T>
void add_gramian(const Streams<scalar_t>& rows, int64_t begin, int64_t end, double* sums) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<opmath_t>;
  constexpr int kPairs = num_pairs(T);
  constexpr int64_t kWidth = Vec::size();
  for (int64_t block = begin; block < end; block += kBlockSize) {
    const int64_t block_end = std::min(end, block + kBlockSize);
    Vec acc[kPairs];
    for (int p = 0; p < kPairs; ++p) acc[p] = Vec(opmath_t(0));
    int64_t i = block;
    for (; i + kWidth <= block_end; i += kWidth) {
      Vec x[T];
      for (int t = 0; t < T; ++t) x[t] = load_opmath(rows.data[t] + i);
      add_pair_products<T>(x, acc);
    }
    opmath_t sum[kPairs];
    for (int p = 0; p < kPairs; ++p) sum[p] = sum_lanes(acc[p]);
    for (; i < block_end; ++i) {
      opmath_t x[T];
      for (int t = 0; t < T; ++t) x[t] = static_cast<opmath_t>(rows.data[t][i]);
      add_pair_products<T>(x, sum);
    }
    for (int p = 0; p < kPairs; ++p) sums[p] += sum[p];
  }
}

// out[i] = sum_t weights[t] * rows[t][i] over [begin, end).
template <typename scalar_t>
void weighted_sum_range(scalar_t* out, const Streams<scalar_t>& rows, const at::opmath_type<scalar_t>* weights,
                        int64_t begin, int64_t end) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = Vectorized<opmath_t>;
  Vec weight_vec[kMaxTasks];
  for (int t = 0; t < rows.count; ++t) weight_vec[t] = Vec(weights[t]);
  int64_t i = begin;
  for (; i + Vec::size() <= end; i += Vec::size()) {
    Vec sum = load_opmath(rows.data[0] + i) * weight_vec[0];
    for (int t = 1; t < rows.count; ++t) sum = vfmadd(load_opmath(rows.data[t] + i), weight_vec[t], sum);
    store_opmath(out + i, sum);
  }
  for (; i < end; ++i) {
    opmath_t sum = static_cast<opmath_t>(rows.data[0][i]) * weights[0];
    for (int t = 1; t < rows.count; ++t) sum = vfmadd(static_cast<opmath_t>(rows.data[t][i]), weights[t], sum);
    out[i] = static_cast<scalar_t>(sum);
  }
}

}  // namespace

at::Tensor gramian_cpu(at::TensorList task_grads) {
  const int64_t num_tasks = check_gramian_args(task_grads, at::kCPU);
  const at::ScalarType dtype = task_grads[0].scalar_type();
  const std::vector<at::Tensor> inputs = dense_rows_of(task_grads);
  at::Tensor out = at::empty({num_tasks, num_tasks}, task_grads[0].options().dtype(opmath_dtype(dtype)));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "gramian_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    std::vector<Streams<scalar_t>> rows;
    std::vector<int64_t> numels;
    task_rows(inputs, num_tasks, &rows, &numels);
    const std::vector<Chunk> chunks = make_chunks(numels);
    const int pairs = num_pairs(static_cast<int>(num_tasks));
    // One slot of partial sums per chunk, added up in chunk order below (NOTE [chunks]).
    std::vector<double> partial(chunks.size() * pairs, 0.0);
    dispatch_num_tasks(num_tasks, [&](auto tasks) {
      constexpr int T = decltype(tasks)::value;
      for_each_chunk(chunks, [&](const Chunk& c) {
        add_gramian<scalar_t, T>(rows[c.item], c.begin, c.end, &partial[(&c - chunks.data()) * pairs]);
      });
    });
    double sums[kMaxPairs] = {};
    for (size_t c = 0; c < chunks.size(); ++c) {
      for (int p = 0; p < pairs; ++p) sums[p] += partial[c * pairs + p];
    }
    opmath_t* gramian = out.mutable_data_ptr<opmath_t>();
    for (int p = 0; p < pairs; ++p) {
      int a = 0, b = 0;
      pair_rows(static_cast<int>(num_tasks), p, &a, &b);
      gramian[a * num_tasks + b] = gramian[b * num_tasks + a] = static_cast<opmath_t>(sums[p]);
    }
  });
  return out;
}

void weighted_sum_cpu(at::TensorList out, at::TensorList task_grads, const at::Tensor& weights) {
  const int64_t num_tasks = check_weighted_sum_args(out, task_grads, weights, at::kCPU);
  if (task_grads.empty()) return;
  const at::ScalarType dtype = task_grads[0].scalar_type();
  const std::vector<at::Tensor> inputs = dense_rows_of(task_grads);
  const at::Tensor opmath_weights = weights.to(opmath_dtype(dtype)).contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, dtype, "weighted_sum_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    std::vector<Streams<scalar_t>> rows;
    std::vector<int64_t> numels;
    task_rows(inputs, num_tasks, &rows, &numels);
    std::vector<scalar_t*> outputs;
    for (const at::Tensor& o : out) outputs.push_back(o.mutable_data_ptr<scalar_t>());
    const opmath_t* w = opmath_weights.const_data_ptr<opmath_t>();
    for_each_chunk(make_chunks(numels), [&](const Chunk& c) {
      weighted_sum_range(outputs[c.item], rows[c.item], w, c.begin, c.end);
    });
  });
}

}  // namespace mtbench
