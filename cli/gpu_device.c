#include "cli/gpu_device.h"

#include <cuda_runtime.h>

int dl_gpu_device_count(dl_err *err) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return dl_fail(err, "no usable CUDA device (%s)", cudaGetErrorString(e));
  if (count == 0) return dl_fail(err, "no usable CUDA device (0 devices)");
  return count;
}
