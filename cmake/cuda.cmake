# Detection of the CUDA backend (model/cuda). DISTILL_CUDA: AUTO builds it
# when nvcc is found (under /usr/local/cuda, $CUDA_HOME or on PATH), ON
# requires it, OFF leaves it out. Sets DISTILL_CUDA_ENABLED.
set(DISTILL_CUDA_ENABLED OFF)
if(NOT DISTILL_CUDA STREQUAL "OFF")
  find_program(DISTILL_NVCC nvcc HINTS /usr/local/cuda/bin $ENV{CUDA_HOME}/bin)
  if(DISTILL_NVCC)
    set(CMAKE_CUDA_COMPILER ${DISTILL_NVCC})
    # Hopper (H100/H200) machine code plus its PTX, which newer GPUs
    # compile when loading: one slow nvcc pass per target, so no more.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 90-real 90-virtual)
    endif()
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(DISTILL_CUDA_ENABLED ON)
  elseif(DISTILL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "DISTILL_CUDA=ON but nvcc was not found (looked in /usr/local/cuda/bin, $CUDA_HOME/bin, PATH)")
  endif()
endif()
message(STATUS "CUDA backend: ${DISTILL_CUDA_ENABLED}")
