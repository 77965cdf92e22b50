#!/usr/bin/env bash
# The channel-pruning table of the small Fashion-MNIST ResNet
# (tests/data/train/fashion_resnet_init.onnx, made by
# `tools/make_train_fixtures.py --fashion-resnet`: stem conv 1->8, three
# stages of one basic block, widths 8/16/32, strides 1/2/2, 1x1 projection
# shortcuts where the shape changes, global average pooling, dense 32->10):
# tools/prune_fashion_cnn.sh with that network, lr 0.01, and the channels
# listed per stage as "residual/inner": the residual channels of a stage
# (the block's output; in stage 1 tied to the stem's by the identity
# shortcut, in stages 2 and 3 to the projection's) are one group each, the
# inner ones are the first convolution's of the block.
#
#   tools/prune_fashion_resnet.sh TACIT DATA_DIR OUT_DIR [LAMBDA...]
#
# Environment: as tools/prune_fashion_cnn.sh (LR defaults to 0.01 here).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Feature-map blocks in the model's order: 0 stem (= stage 1 residual), 1 stage 1
# inner, 2 stage 1 output, 3 stage 2 inner, 4 stage 2 output, 5 stage 3 inner,
# 6 stage 3 output.
MODEL=${MODEL:-"$here/../tests/data/train/fashion_resnet_init.onnx"} \
  LR=${LR:-0.01} COLUMNS=${COLUMNS:-"2/1 4/3 6/5"} \
  TITLE=${TITLE:-"channels kept per stage, residual/inner"} \
  exec "$here/prune_fashion_cnn.sh" "$@"
