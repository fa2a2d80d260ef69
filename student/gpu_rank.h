// Host logic of a student group on GPUs, kept free of CUDA so that the CPU
// tests check it: which GPU a rank takes, and how rank 0's NCCL unique id
// reaches the other ranks (the group's own broadcast, MPI or TCP, so that no
// shared file system is needed).
#ifndef DISTILL_STUDENT_GPU_RANK_H
#define DISTILL_STUDENT_GPU_RANK_H

#include <stddef.h>

#include "common/err.h"
#include "student/reduce.h"

// This rank's index among the ranks on its machine: Open MPI's
// OMPI_COMM_WORLD_LOCAL_RANK, else Slurm's SLURM_LOCALID, else torchrun's
// LOCAL_RANK, else `rank` (the TCP group's ranks are one per pod or
// machine, or numbered per machine by whoever starts them). -1 when a
// variable is set but not a number >= 0.
int dl_local_rank(int rank, int *local, dl_err *err);

// The number of ranks on this machine as the launcher tells it: Open MPI's
// OMPI_COMM_WORLD_LOCAL_SIZE, else torchrun's LOCAL_WORLD_SIZE, else
// Slurm's SLURM_NTASKS_PER_NODE; 0 when none is set, -1 when one is set
// but not a number >= 1.
int dl_local_size(int *size, dl_err *err);

// The device a rank takes: its local rank. -1 with one line when the
// machine has more ranks than devices (local_size, 0 when unknown, or a
// local rank beyond the devices): two ranks on one GPU is what NCCL
// refuses, and sharing would halve each rank's memory.
int dl_gpu_for_rank(int local_rank, int local_size, int device_count, dl_err *err);

// Makes n bytes of id on rank 0 (0, or -1 with a message).
typedef int (*dl_make_id)(void *id, size_t n, void *ctx, dl_err *err);

// Rank 0 makes the id with make(); every rank of g returns with rank 0's
// bytes in id (dl_group_broadcast). A group of one only makes it. Every rank
// must call it at the same point of the group's collective sequence.
int dl_group_share_id(dl_group *g, void *id, size_t n, dl_make_id make, void *ctx, dl_err *err);

#endif
