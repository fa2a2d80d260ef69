#!/usr/bin/env bash
# bench/run gpu-teacher-518: ViT-g/14 teacher inference at 518 px, batch 8 (GPU).
exec "$(dirname "$0")/gpu/teacher.sh" 518 8
