// The schemas of the mtbench operators; the backends (cpu/, cuda/) register their kernels.
//
// The .so is imported from Python as `mtbench._C`; importing it runs the static registrations
// below, after which the operators are reachable as torch.ops.mtbench.*.

#include <Python.h>
#include <torch/library.h>

// NOTE [module stub]: the operators are reached through the dispatcher, not through Python
// bindings, so the module itself is empty; it only exists so that `import mtbench._C` loads
// the library with the interpreter's normal import machinery.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "Compiled kernels of mtbench (registered with torch.ops.mtbench).",
      -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(mtbench, m) {
  // Squared L2 norm of each tensor: float32 for float32/bfloat16/float16 inputs, float64 for float64.
  m.def("sq_norms(Tensor[] tensors) -> Tensor");
  // One MTAdamV2 step over a list of parameters (see DESIGN §3 and mtbench/optim/reference.py).
  //   grads: task-major, grads[t * len(params) + i] is task t's gradient of params[i] or None.
  //   exp_avgs[i], exp_avg_sqs[i]: [T, *params[i].shape] in opmath (float32 for bfloat16 params).
  //   norm_avgs[i]: [T] running gradient-norm averages, negative while task t has not reached params[i].
  //   steps[i]: the step count of params[i] including this step.
  m.def(
      "mtadamv2_(Tensor(a!)[] params, Tensor?[] grads, Tensor(b!)[] exp_avgs, Tensor(c!)[] exp_avg_sqs, "
      "Tensor(d!)[] norm_avgs, int[] steps, float lr, float beta1, float beta2, float norm_beta, "
      "float eps, float weight_decay, float[] task_weights) -> ()");
  // The Gramian route of multi-task gradient methods; task_grads[i] is [T, *shape_i], parameter i's
  // gradient for each of the T tasks (1 <= T <= 8).
  //   gramian: G[a, b] = sum_i <task_grads[i][a], task_grads[i][b]>, [T, T] in opmath (float64 for
  //   float64 inputs, else float32).
  m.def("gramian(Tensor[] task_grads) -> Tensor");
  //   weighted_sum_: out[i] = sum_t weights[t] * task_grads[i][t]; out[i] contiguous, shape_i, the dtype of
  //   task_grads; weights [T] on the same device.
  m.def("weighted_sum_(Tensor(a!)[] out, Tensor[] task_grads, Tensor weights) -> ()");
}
