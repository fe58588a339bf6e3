"""Builds the compiled operators of mtbench (`mtbench._C`); the package itself is declared in pyproject.toml.

The CUDA kernels are built when nvcc and a CUDA toolkit are found, the CPU kernels always.

Environment:
  MTBENCH_CUDA=1|0      force the CUDA kernels (fail without a toolkit) or leave them out
  CUDA_HOME             the toolkit to use (default: /usr/local/cuda where it exists, else torch's guess)
  TORCH_CUDA_ARCH_LIST  GPU architectures (default: the visible GPUs', or "8.0;9.0" without one)
  MAX_JOBS              parallel compile jobs (default 2: nvcc needs several GiB per job)
"""

import os
import platform
from glob import glob

from setuptools import setup

# NOTE [CUDA_HOME]: torch.utils.cpp_extension reads CUDA_HOME once, at import. Without it, torch
# derives the toolkit from nvcc's path, and a wrapper script at /usr/local/bin/nvcc makes that
# /usr/local, which has the compiler but no libcudart to link. Settle it before the import.
if not os.environ.get("CUDA_HOME") and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
os.environ.setdefault("MAX_JOBS", "2")

import torch  # noqa: E402
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def want_cuda() -> bool:
    """Whether to build the CUDA kernels: MTBENCH_CUDA decides, else whether a toolkit was found."""
    switch = os.environ.get("MTBENCH_CUDA", "").strip()
    found = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    if switch not in ("", "0", "1"):
        raise SystemExit(f"MTBENCH_CUDA must be 0 or 1, got {switch!r}")
    if switch == "1" and not found:
        raise SystemExit("MTBENCH_CUDA=1 but no CUDA toolkit was found: set CUDA_HOME to one that has bin/nvcc")
    if switch == "1" and torch.version.cuda is None:
        raise SystemExit(f"MTBENCH_CUDA=1 but torch {torch.__version__} is a CPU-only build")
    return switch == "1" or (switch == "" and found and torch.version.cuda is not None)


def cpu_flags() -> list[str]:
    """Flags that let ATen's Vectorized use AVX2 where torch and this machine both support it.

    NOTE [CPU ISA]: Vectorized picks its width from CPU_CAPABILITY_* macros when it is compiled,
    and the .so runs where it was built, so the build asks torch which ISA this machine runs
    (torch.backends.cpu.get_cpu_capability(), which honours ATEN_CPU_CAPABILITY). AVX-512 is
    not used: the kernels are bound by memory traffic, which wider registers do not reduce.
    """
    capability = torch.backends.cpu.get_cpu_capability()
    if platform.machine().lower() in ("x86_64", "amd64") and capability in ("AVX2", "AVX512"):
        return ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY_AVX2"]
    return []


def extension():
    sources = ["csrc/mtbench.cpp", *sorted(glob("csrc/cpu/*.cpp"))]
    # torch's vectorisation headers carry `#pragma unroll`, which g++ does not know.
    # NOTE [OpenMP]: at::parallel_for is a header template that runs serially unless the extension
    # itself is compiled with OpenMP (ATen's OpenMP backend, which torch's CPU builds use). torch
    # is imported first and its libgomp.so.1 is the one the loader reuses: one OpenMP runtime.
    cxx = ["-O3", "-fopenmp", "-Wno-unknown-pragmas", *cpu_flags()]
    link = ["-fopenmp"]
    if not want_cuda():
        return CppExtension("mtbench._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=link)
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
    return CUDAExtension(
        "mtbench._C",
        sources + sorted(glob("csrc/cuda/*.cu")),
        extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]},
        extra_link_args=link,
    )


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension})
