// `distill student --plan`: the memory plan of a student recipe as a table
// (student/memory_plan.h does the counting).
#ifndef DISTILL_CLI_STUDENT_PLAN_H
#define DISTILL_CLI_STUDENT_PLAN_H

// Prints the plan of the recipe at `recipe_path` for `ranks` ranks and the
// largest per-rank batch within `memory` (e.g. "80G"; NULL: 80 GiB). Bad
// input exits 2 with one line; returns 0.
int dl_student_plan(const char *recipe_path, int ranks, const char *memory);

// "80G", "80GiB", "512M", "1.5T", "1048576": bytes (K, M, G, T are powers
// of 1024); -1 on anything else.
double dl_parse_memory_size(const char *text);

#endif
