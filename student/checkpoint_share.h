// Resuming a group from rank 0's checkpoint: rank 0 picks the checkpoint
// (--resume auto or a file, on its own volume) and sends the file's bytes
// through the group (student/reduce.h); every other rank writes them to a
// file of its own and resumes from that, so all ranks start from the same
// step whatever their own volumes hold (Kubernetes gives each pod its own).
// The rank count may differ from the run that wrote the checkpoint.
#ifndef DISTILL_STUDENT_CHECKPOINT_SHARE_H
#define DISTILL_STUDENT_CHECKPOINT_SHARE_H

#include "student/reduce.h"

// Rank 0: path is the checkpoint it resumed from, NULL when it starts fresh;
// `failed` tells the others that rank 0 could not resume (they stop too).
int dl_checkpoint_send(dl_group *g, const char *path, int failed, dl_err *err);
// The other ranks: *got 1 with rank 0's checkpoint written to dest, 0 when
// the group starts fresh; -1 when rank 0 failed or the transfer did.
int dl_checkpoint_receive(dl_group *g, const char *dest, int *got, dl_err *err);

#endif
