#!/usr/bin/env bash
# Installs what is missing, builds edgert (Release, in build/) and runs the main job on
# the embedded demo configuration (examples/edge_node/demo.yaml): a synthetic camera and
# a synthetic vehicle fleet into the bundled motion_detector and telemetry_urgency
# plugins, results stored in the local mailbox (no broker needed), live figures while it
# runs, a summary at the end. Arguments replace the default
# `run examples/edge_node/demo.yaml --duration 10 --progress`, e.g.
#   ./scripts/demo.sh run examples/edge_node/demo.yaml --progress   # until Ctrl-C
#   ./scripts/demo.sh run my-video.yaml --exit-when-done --progress
#   ./scripts/demo.sh --version
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target edgert-node edgert_plugin_scan \
  record_counter test_pattern threshold video synthetic_camera synthetic_telemetry motion_detector telemetry_urgency

# The demo's data goes under build/ (fresh each run), not next to the example config.
export EDGERT_NODE_DATA_DIR="${EDGERT_NODE_DATA_DIR:-$PWD/build/demo-data}"
export EDGERT_PIPELINE_RESULTS_JSONL="${EDGERT_PIPELINE_RESULTS_JSONL:-$EDGERT_NODE_DATA_DIR/results.jsonl}"
if [[ $# -eq 0 ]]; then
  rm -rf "$EDGERT_NODE_DATA_DIR"
  mkdir -p "$EDGERT_NODE_DATA_DIR"
  set -- run examples/edge_node/demo.yaml --duration 10 --progress
fi
status=0
./build/bin/edgert-node "$@" || status=$?
if [[ $status -eq 0 && "${1:-}" == run ]]; then
  cat <<MSG

Look at the results:
  ./build/bin/edgert-node mailbox stats --data-dir "$EDGERT_NODE_DATA_DIR"
  tail -n 3 "$EDGERT_PIPELINE_RESULTS_JSONL"
  grep -c '"pipeline.error"' "$EDGERT_PIPELINE_RESULTS_JSONL"   # ERROR results for dropped inputs
MSG
fi
exit $status
