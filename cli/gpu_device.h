// The CUDA devices this process sees, for distill-gpu's `--device cuda`
// (the student's and the teacher's). Built only into distill-gpu.
#ifndef DISTILL_CLI_GPU_DEVICE_H
#define DISTILL_CLI_GPU_DEVICE_H

#include "common/err.h"

// The number of usable devices (at least 1), or -1 with the runtime's reason.
int dl_gpu_device_count(dl_err *err);

#endif
