// cuDNN's own check of the attention graphs, without a GPU: every operation
// and the operation graph (cuDNN builds and validates its DAG here) finalize
// for the forward (inference and training) and the composite backward at
// the token counts DINOv2 meets. Which engine runs them, and whether the
// results are right, only a GPU can say (test_cuda_ops).
#include <stdio.h>

#include "model/cuda/attention_cudnn_graph.h"
#include "tests/harness.h"

static void check_graph(int n, int t, int heads, dl_attn_dir dir, int variant) {
  static const char *names[] = {"forward", "forward(train)", "backward"};
  dl_attn_descs d = {0};
  const dl_attn_key key = {0, n, t, heads, 64, 1, dir};
  char why[512] = "";
  cudnnStatus_t st = dl_attn_graph_ops(&d, &key, variant, why, sizeof why);
  cudnnBackendDescriptor_t graph = NULL;
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, &graph);
  if (st == CUDNN_STATUS_SUCCESS)
    st = cudnnBackendSetAttribute(graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, d.nops, d.ops);
  if (st == CUDNN_STATUS_SUCCESS) st = cudnnBackendFinalize(graph);
  if (st != CUDNN_STATUS_SUCCESS && !why[0]) cudnnGetLastErrorString(why, sizeof why);
  CHECK(st == CUDNN_STATUS_SUCCESS, "attention graph %d %s n=%d t=%d heads=%d: %d operations finalize: %s %s",
        variant, names[dir], n, t, heads, d.nops, cudnnGetErrorString(st), why);
  if (graph) cudnnBackendDestroyDescriptor(graph);
  dl_attn_descs_free(&d);
}

int main(void) {
  printf("cuDNN %zu\n", cudnnGetVersion());
  const int tokens[] = {54, 257, 1370};  // 98 px local crops + registers, 224 px, 518 px
  for (int i = 0; i < 3; i++)
    for (int dir = 0; dir < 3; dir++) {
      const dl_attn_key key = {0, 2, tokens[i], 6, 64, 1, (dl_attn_dir)dir};
      for (int v = 0; v < dl_attn_graph_variants(&key); v++) check_graph(2, tokens[i], 6, (dl_attn_dir)dir, v);
    }
  check_graph(32, 257, 16, DL_ATTN_BWD, 0);  // ViT-L at batch 32
  return dl_test_summary("test_cuda_attention_graph");
}
