// Caller-error checks of the mtbench operators, shared by the CPU and CUDA backends.
#pragma once

#include <ATen/TensorGeometry.h>
#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

#include <c10/core/DeviceType.h>

#include <cmath>
#include <optional>
#include <ostream>

#include "mtadamv2_math.h"

namespace mtbench {

// The dtype in which kernels compute and keep state: float64 for float64 tensors, else float32.
inline at::ScalarType opmath_dtype(at::ScalarType dtype) {
  return dtype == at::kDouble ? at::kDouble : at::kFloat;
}

inline bool is_supported_dtype(at::ScalarType dtype) {
  return dtype == at::kFloat || dtype == at::kDouble || dtype == at::kBFloat16 || dtype == at::kHalf;
}

// An argument of an operator as its messages name it: `weights`, or `task_grads[3]` (index >= 0).
struct Arg {
  const char* name;
  int64_t index = -1;
};

inline std::ostream& operator<<(std::ostream& out, const Arg& arg) {
  out << arg.name;
  if (arg.index >= 0) out << "[" << arg.index << "]";
  return out;
}

// NOTE [device checks]: a kernel reads and writes raw pointers, so it checks the device of every
// tensor argument before it touches any memory. Each op has one reference tensor (params[0],
// weights, ...): the reference must be on a device of the backend that runs (a CPU kernel can be
// reached with tensors it cannot read, by a redispatch or by a caller naming the backend), and
// every other tensor on the reference's device (the same GPU too). The fakes in mtbench/ops.py
// serve every device and check the second rule only.
inline void check_backend(const char* op, const at::Tensor& reference, Arg arg, at::DeviceType backend) {
  TORCH_CHECK(reference.device().type() == backend, op, ": ", arg, " is on ", reference.device(), ", expected a ",
              c10::DeviceTypeName(backend, /*lower_case=*/true), " device (the ", c10::DeviceTypeName(backend),
              " kernel runs)");
}

inline void check_device(const char* op, const at::Tensor& t, Arg arg, at::Device expected, Arg origin) {
  TORCH_CHECK(t.device() == expected, op, ": ", arg, " is on ", t.device(), ", expected ", expected,
              " (the device of ", origin, ")");
}

inline void check_sq_norms_args(at::TensorList tensors, at::DeviceType backend) {
  TORCH_CHECK(!tensors.empty(), "sq_norms: tensors must hold at least one tensor, got an empty list");
  const at::Tensor& first = tensors[0];
  check_backend("sq_norms", first, {"tensors", 0}, backend);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& t = tensors[i];
    TORCH_CHECK(t.layout() == at::kStrided, "sq_norms: tensors[", i, "] must be a strided tensor, got layout ",
                t.layout());
    TORCH_CHECK(is_supported_dtype(t.scalar_type()), "sq_norms: tensors[", i,
                "] must be float32, float64, bfloat16 or float16, got ", t.scalar_type());
    TORCH_CHECK(t.scalar_type() == first.scalar_type(), "sq_norms: tensors[", i, "] has dtype ",
                t.scalar_type(), ", expected ", first.scalar_type(), " (the dtype of tensors[0])");
    check_device("sq_norms", t, {"tensors", static_cast<int64_t>(i)}, first.device(), {"tensors", 0});
  }
}

// value in [low, high); NaN fails.
inline void check_range(const char* name, double value, double low, double high) {
  TORCH_CHECK(value >= low && value < high, "mtadamv2_: ", name, " must be in [", low, ", ", high, "), got ", value);
}

// Checks every argument of mtadamv2_ and returns the number of tasks.
inline int64_t check_mtadamv2_args(at::TensorList params, const c10::List<std::optional<at::Tensor>>& grads,
                                   at::TensorList exp_avgs, at::TensorList exp_avg_sqs, at::TensorList norm_avgs,
                                   at::IntArrayRef steps, double lr, double beta1, double beta2,
                                   double norm_beta, double eps, double weight_decay,
                                   at::ArrayRef<double> task_weights, at::DeviceType backend) {
  const double inf = INFINITY;
  check_range("lr", lr, 0.0, inf);
  check_range("beta1", beta1, 0.0, 1.0);
  check_range("beta2", beta2, 0.0, 1.0);
  check_range("norm_beta", norm_beta, 0.0, 1.0);
  check_range("eps", eps, 0.0, inf);
  check_range("weight_decay", weight_decay, 0.0, inf);
  const int64_t num_tasks = static_cast<int64_t>(task_weights.size());
  TORCH_CHECK(num_tasks >= 1 && num_tasks <= kMaxTasks, "mtadamv2_: task_weights must hold 1 to ", kMaxTasks,
              " weights (one per task), got ", num_tasks);
  for (int64_t t = 0; t < num_tasks; ++t) {
    TORCH_CHECK(std::isfinite(task_weights[t]) && task_weights[t] >= 0, "mtadamv2_: task_weights[", t,
                "] must be finite and >= 0, got ", task_weights[t]);
  }
  const int64_t num_params = static_cast<int64_t>(params.size());
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == num_tasks * num_params, "mtadamv2_: grads must hold ",
              num_tasks * num_params, " entries (task-major, len(task_weights) * len(params)), got ",
              grads.size());
  TORCH_CHECK(static_cast<int64_t>(exp_avgs.size()) == num_params, "mtadamv2_: exp_avgs must hold ", num_params,
              " tensors (one per param), got ", exp_avgs.size());
  TORCH_CHECK(static_cast<int64_t>(exp_avg_sqs.size()) == num_params, "mtadamv2_: exp_avg_sqs must hold ",
              num_params, " tensors (one per param), got ", exp_avg_sqs.size());
  TORCH_CHECK(static_cast<int64_t>(norm_avgs.size()) == num_params, "mtadamv2_: norm_avgs must hold ",
              num_params, " tensors (one per param), got ", norm_avgs.size());
  TORCH_CHECK(static_cast<int64_t>(steps.size()) == num_params, "mtadamv2_: steps must hold ", num_params,
              " values (one per param), got ", steps.size());
  if (num_params == 0) return num_tasks;

  const at::ScalarType dtype = params[0].scalar_type();
  const at::ScalarType state_dtype = opmath_dtype(dtype);
  const at::Device device = params[0].device();
  check_backend("mtadamv2_", params[0], {"params", 0}, backend);
  TORCH_CHECK(is_supported_dtype(dtype), "mtadamv2_: params must be float32, float64, bfloat16 or float16, got ",
              dtype);
  auto check_tensor = [&](const at::Tensor& t, const char* name, int64_t i, at::ScalarType expected_dtype,
                          at::IntArrayRef expected_shape) {
    TORCH_CHECK(t.layout() == at::kStrided, "mtadamv2_: ", name, "[", i, "] must be strided, got layout ",
                t.layout());
    TORCH_CHECK(t.scalar_type() == expected_dtype, "mtadamv2_: ", name, "[", i, "] has dtype ", t.scalar_type(),
                ", expected ", expected_dtype);
    check_device("mtadamv2_", t, {name, i}, device, {"params", 0});
    TORCH_CHECK(t.sizes() == expected_shape, "mtadamv2_: ", name, "[", i, "] has shape ", t.sizes(),
                ", expected ", expected_shape);
    TORCH_CHECK(t.is_contiguous(), "mtadamv2_: ", name, "[", i, "] must be contiguous");
  };
  std::vector<int64_t> state_shape;
  for (int64_t i = 0; i < num_params; ++i) {
    const at::Tensor& p = params[i];
    check_tensor(p, "params", i, dtype, p.sizes());
    for (int64_t t = 0; t < num_tasks; ++t) {
      const std::optional<at::Tensor> g = grads.get(t * num_params + i);
      if (g.has_value() && g->defined()) check_tensor(*g, "grads", t * num_params + i, dtype, p.sizes());
    }
    state_shape.assign({num_tasks});
    state_shape.insert(state_shape.end(), p.sizes().begin(), p.sizes().end());
    check_tensor(exp_avgs[i], "exp_avgs", i, state_dtype, state_shape);
    check_tensor(exp_avg_sqs[i], "exp_avg_sqs", i, state_dtype, state_shape);
    check_tensor(norm_avgs[i], "norm_avgs", i, state_dtype, {num_tasks});
    TORCH_CHECK(steps[i] >= 1, "mtadamv2_: steps[", i, "] must be >= 1 (the count including this step), got ",
                steps[i]);
  }
  return num_tasks;
}

// Checks that every task_grads[i] is a [T, *shape_i] tensor of `dtype` on `device`; `origin` names
// where T, the dtype and the device come from, for the messages.
inline void check_task_grads(const char* op, at::TensorList task_grads, int64_t num_tasks, at::ScalarType dtype,
                             at::Device device, Arg origin) {
  for (size_t i = 0; i < task_grads.size(); ++i) {
    const at::Tensor& g = task_grads[i];
    TORCH_CHECK(g.layout() == at::kStrided, op, ": task_grads[", i, "] must be strided, got layout ", g.layout());
    TORCH_CHECK(g.dim() >= 1 && g.size(0) == num_tasks, op, ": task_grads[", i, "] has shape ", g.sizes(),
                ", expected ", num_tasks, " tasks in its first dimension ([T, *shape], T from ", origin, ")");
    TORCH_CHECK(g.scalar_type() == dtype, op, ": task_grads[", i, "] has dtype ", g.scalar_type(), ", expected ",
                dtype, " (the dtype of ", origin, ")");
    check_device(op, g, {"task_grads", static_cast<int64_t>(i)}, device, origin);
  }
}

// Checks the arguments of gramian and returns the number of tasks.
inline int64_t check_gramian_args(at::TensorList task_grads, at::DeviceType backend) {
  TORCH_CHECK(!task_grads.empty(),
              "gramian: task_grads must hold at least one tensor ([T, *shape] per parameter), got an empty list");
  const at::Tensor& first = task_grads[0];
  TORCH_CHECK(first.dim() >= 1 && first.size(0) >= 1 && first.size(0) <= kMaxTasks,
              "gramian: task_grads[0] must have shape [T, *shape] with 1 to ", kMaxTasks, " tasks T, got shape ",
              first.sizes());
  check_backend("gramian", first, {"task_grads", 0}, backend);
  TORCH_CHECK(is_supported_dtype(first.scalar_type()),
              "gramian: task_grads[0] must be float32, float64, bfloat16 or float16, got ", first.scalar_type());
  check_task_grads("gramian", task_grads, first.size(0), first.scalar_type(), first.device(), {"task_grads", 0});
  return first.size(0);
}

// Checks the arguments of weighted_sum_ and returns the number of tasks.
inline int64_t check_weighted_sum_args(at::TensorList out, at::TensorList task_grads, const at::Tensor& weights,
                                       at::DeviceType backend) {
  TORCH_CHECK(weights.layout() == at::kStrided && weights.dim() == 1 && weights.size(0) >= 1 &&
                  weights.size(0) <= kMaxTasks,
              "weighted_sum_: weights must be a 1-D tensor of 1 to ", kMaxTasks, " task weights, got shape ",
              weights.sizes());
  TORCH_CHECK(is_supported_dtype(weights.scalar_type()),
              "weighted_sum_: weights must be float32, float64, bfloat16 or float16, got ", weights.scalar_type());
  check_backend("weighted_sum_", weights, {"weights"}, backend);
  TORCH_CHECK(out.size() == task_grads.size(), "weighted_sum_: out must hold ", task_grads.size(),
              " tensors (one per entry of task_grads), got ", out.size());
  const int64_t num_tasks = weights.size(0);
  if (task_grads.empty()) return num_tasks;
  const at::ScalarType dtype = task_grads[0].scalar_type();
  TORCH_CHECK(is_supported_dtype(dtype), "weighted_sum_: task_grads[0] must be float32, float64, bfloat16 or "
              "float16, got ", dtype);
  check_task_grads("weighted_sum_", task_grads, num_tasks, dtype, weights.device(), {"weights"});
  for (size_t i = 0; i < out.size(); ++i) {
    const at::Tensor& o = out[i];
    TORCH_CHECK(o.layout() == at::kStrided, "weighted_sum_: out[", i, "] must be strided, got layout ", o.layout());
    TORCH_CHECK(o.sizes() == task_grads[i].sizes().slice(1), "weighted_sum_: out[", i, "] has shape ", o.sizes(),
                ", expected ", task_grads[i].sizes().slice(1), " (task_grads[", i, "] without its task dimension)");
    TORCH_CHECK(o.scalar_type() == dtype, "weighted_sum_: out[", i, "] has dtype ", o.scalar_type(), ", expected ",
                dtype, " (the dtype of task_grads)");
    check_device("weighted_sum_", o, {"out", static_cast<int64_t>(i)}, weights.device(), {"weights"});
    TORCH_CHECK(o.is_contiguous(), "weighted_sum_: out[", i, "] must be contiguous");
  }
  return num_tasks;
}

// NOTE [dense rows]: the trainer hands each parameter's task gradients as a view buf[:, a:b] of
// its [T, N] buffer, reshaped: rows lie N elements apart but each row is dense. The kernels read
// such a tensor in place as T row pointers, row t at data + t * stride(0); any other layout is
// copied to a contiguous one first.
inline at::Tensor with_dense_rows(const at::Tensor& g) {
  return at::geometry_is_contiguous(g.sizes().slice(1), g.strides().slice(1)) ? g : g.contiguous();
}

// Per-tensor constants of the update (DESIGN §3 step 5), computed in double on the host.
struct BiasCorrection {
  double step_size;              // lr / (1 - beta1^k)
  double inv_bias_correction2_sqrt;  // 1 / sqrt(1 - beta2^k)
};

inline BiasCorrection bias_correction(int64_t step, double lr, double beta1, double beta2) {
  const double k = static_cast<double>(step);
  return {lr / (1.0 - std::pow(beta1, k)), 1.0 / std::sqrt(1.0 - std::pow(beta2, k))};
}

}  // namespace mtbench
