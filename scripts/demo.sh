#!/usr/bin/env bash
# Installs what is missing, builds edgert (Release, in build/) and runs the example
# node on its embedded example configuration. Arguments replace the default
# `run examples/edge_node/node.yaml --duration 5`, e.g.
#   ./scripts/demo.sh run examples/edge_node/node.yaml        # until Ctrl-C
#   ./scripts/demo.sh --version
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target edgert-node record_counter test_pattern threshold \
  video synthetic_camera synthetic_telemetry

if [[ $# -eq 0 ]]; then
  set -- run examples/edge_node/node.yaml --duration 5
fi
exec ./build/bin/edgert-node "$@"
