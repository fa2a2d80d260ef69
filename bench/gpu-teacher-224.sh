#!/usr/bin/env bash
# bench/run gpu-teacher-224: ViT-g/14 teacher inference at 224 px, batch 64 (GPU).
exec "$(dirname "$0")/gpu/teacher.sh" 224 64
