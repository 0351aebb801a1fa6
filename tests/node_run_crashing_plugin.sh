#!/bin/sh
# ctest node_run_crashing_plugin (docs/plugins.md, "Where plugins are found"): a plugin
# folder holding a .so that crashes while loading must not stop `edgert-node run`: the
# crash is logged naming the file and SIGSEGV, the bundled plugins the streams use load
# (and only those), exit 0. Without
# the scan helper the node warns once and loads in-process.
# A pack (two plugins in one .so) is loaded once, both plugins, nothing refused.
# usage: node_run_crashing_plugin.sh EDGERT_NODE CRASH_PLUGIN_DIR BUNDLED_PLUGIN_DIR PACK_SO
set -u
node=$1 crash=$2 bundled=$3 pack=$4
w=$(mktemp -d "${TMPDIR:-/tmp}/edgert-crashing-XXXXXX") || exit 1
trap 'rm -rf "$w"' EXIT
# A later folder holding another threshold.so: shadowed, one WARNING, not refused.
mkdir -p "$w/extra" && cp "$bundled/threshold.so" "$w/extra/" || exit 1
mkdir -p "$w/pack" && cp "$pack" "$w/pack/" || exit 1
cat > "$w/node.yaml" <<YAML
node:
  id: crash-test
  data_dir: $w/data
  heartbeat_interval_ms: 0
plugins:
  paths: [$crash, $bundled, $w/extra, $w/pack]
streams:   # only what a stream uses is loaded; a manual trigger nobody fires runs nothing
  - name: records
    trigger: {type: manual}
    plugins:
      - signature: threshold
        instances: [{instance_id: t}]
      - signature: record_counter
        instances: [{instance_id: r}]
      - signature: pack_a
        instances: [{instance_id: a}]
  - name: frames
    capture: {type: test_pattern}
    trigger: {type: manual}
YAML
env -u EDGERT_PLUGIN_PATH "$node" run "$w/node.yaml" --duration 1 > "$w/out.txt" 2>&1
rc=$?
cat "$w/out.txt"; echo "--- exit=$rc"
fail=0
if ! grep -q " error \[[0-9]*\] plugin $crash/bad_crash_on_load\.so refused: crashed while loading (signal 11, SIGSEGV" "$w/out.txt"; then
  echo "FAIL: no ERROR naming bad_crash_on_load.so and SIGSEGV"; fail=1
fi
for p in record_counter test_pattern threshold; do
  if ! grep -q "plugin '$p' .* loaded from $bundled/$p\.so" "$w/out.txt"; then echo "FAIL: $p not loaded"; fail=1; fi
done
for p in pack_a pack_b; do
  if ! grep -q "plugin '$p' .* loaded from $w/pack/" "$w/out.txt"; then echo "FAIL: $p (pack) not loaded"; fail=1; fi
done
if grep -q "pack.*refused" "$w/out.txt"; then echo "FAIL: the pack was refused (loaded twice?)"; fail=1; fi
# The three bundled plugins the streams use plus the pack's two (a pack loads whole);
# the other bundled files scanned clean and were not loaded.
bundled_files=$(ls "$bundled"/*.so | wc -l)
if ! grep -q "5 plugin(s) loaded, 1 refused, $((bundled_files - 3)) file(s) not used by the configuration and not loaded" "$w/out.txt"; then
  echo "FAIL: wrong loaded/refused/unused counts (want 5 loaded, 1 refused, $((bundled_files - 3)) unused)"; fail=1
fi
if grep -q "plugin 'synthetic_camera' .* loaded from" "$w/out.txt"; then echo "FAIL: an unused plugin was loaded"; fail=1; fi
if [ "$(grep -c "is shadowed by" "$w/out.txt")" -ne 1 ] ||
   ! grep -q " warning \[[0-9]*\] plugin 'threshold' in $w/extra/threshold\.so is shadowed by $bundled/threshold\.so (earlier in the search path); not loaded" "$w/out.txt"; then
  echo "FAIL: not exactly one shadow WARNING for $w/extra/threshold.so"; fail=1
fi
if [ "$rc" -ne 0 ]; then echo "FAIL: exit status $rc"; fail=1; fi

# Without the scan helper the node says so once (WARNING) and loads in-process.
cat > "$w/plain.yaml" <<YAML
node:
  id: no-scanner
  data_dir: $w/data2
  heartbeat_interval_ms: 0
plugins:
  paths: [$bundled]
YAML
env -u EDGERT_PLUGIN_PATH EDGERT_PLUGIN_SCANNER=/nonexistent/edgert-plugin-scan "$node" run "$w/plain.yaml" --duration 1 \
  > "$w/plain.txt" 2>&1
rc=$?
cat "$w/plain.txt"; echo "--- exit=$rc"
if [ "$(grep -c " warning \[[0-9]*\] plugins are loaded without a crash check: the plugin scanner helper /nonexistent/edgert-plugin-scan" "$w/plain.txt")" -ne 1 ]; then
  echo "FAIL: not exactly one WARNING about the missing scan helper"; fail=1
fi
# Without a scan nothing says which file provides what: every bundled file is loaded.
if ! grep -q "$bundled_files plugin(s) loaded, 0 refused" "$w/plain.txt"; then echo "FAIL: in-process fallback did not load"; fail=1; fi
if [ "$rc" -ne 0 ]; then echo "FAIL: exit status $rc without the helper"; fail=1; fi
[ "$fail" -eq 0 ] && echo "crashing plugin skipped OK"
exit "$fail"
