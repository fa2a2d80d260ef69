# The Debian packages the project needs, in one place: scripts/build installs
# the missing ones. Sourced, not run.
DISTILL_DEBIAN_PACKAGES=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-dev libomp-dev
  libopenblas-openmp-dev
  libjpeg-dev libpng-dev libyaml-dev zlib1g-dev
  libzmq3-dev libsodium-dev libprotobuf-c-dev protobuf-c-compiler libzstd-dev
  python3-numpy python3-torch python3-torchvision python3-matplotlib
  dataset-fashion-mnist gnuplot-nox
  python3-pil python3-skimage python3-yaml
  libopenmpi-dev openmpi-bin
)
# What scripts/demo needs and nothing more (DISTILL_PACKAGES=demo): the
# distill binary without CUDA, the dataset, the report's matplotlib and
# gnuplot. PyTorch, clang, MPI and the rest serve the tests; on a fresh
# machine they are most of the download.
DISTILL_DEMO_PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libopenblas-openmp-dev
  libjpeg-dev libpng-dev libyaml-dev zlib1g-dev
  libzmq3-dev libsodium-dev libprotobuf-c-dev protobuf-c-compiler libzstd-dev
  python3-matplotlib dataset-fashion-mnist gnuplot-nox
)
