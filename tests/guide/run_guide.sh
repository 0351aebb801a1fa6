#!/usr/bin/env bash
# Follows docs/plugin-guide.md word for word: writes every file it shows (a code block
# right after a visible line "File: `PATH`", PATH relative to the folder named by
# <!-- guide:files-under ~/DIR -->), runs every command block (<!-- guide:run -->) in
# one shell with HOME pointing at a scratch directory, checks that each expected output
# block (<!-- guide:expect -->) appears in what the commands printed, and that nothing
# was logged at error level (a reader following the guide must see no ERROR line).
# The install block (<!-- guide:install -->) is replaced by installing the build tree
# under test into $HOME/edgert.
# Usage: run_guide.sh GUIDE.md BUILD_DIR WORK_DIR [C_AND_CXX_FLAGS]
set -euo pipefail
guide=$1 build=$2 work=$3 flags=${4:-}

rm -rf "$work"
mkdir -p "$work/home"
export HOME="$work/home"
cmake --install "$build" --prefix "$HOME/edgert" >/dev/null

# Split the guide into files, one run script and the expected outputs.
awk -v work="$work" -v home="$HOME" '
  /^<!-- guide:files-under / { root = $3; sub(/^~/, home, root); next }
  /^File: `[^`]+`$/ {
    if (root == "") { print "run_guide: File: line before guide:files-under" > "/dev/stderr"; exit 1 }
    name = $0; sub(/^File: `/, "", name); sub(/`$/, "", name); mode = "file"; path = root "/" name; next
  }
  /^<!-- guide:run -->/ { mode = "run"; next }
  /^<!-- guide:expect -->/ { mode = "expect"; next }
  /^<!-- guide:install -->/ { mode = "skip"; next }
  /^```/ {
    if (inside) { inside = 0; mode = ""; next }
    if (mode != "") { inside = 1; if (mode == "file") { cmd = "dirname " path; cmd | getline d; close(cmd); system("mkdir -p " d); printf "" > path } }
    next
  }
  inside && mode == "file" { print >> path; next }
  inside && mode == "run" { print >> (work "/steps.sh"); next }
  inside && mode == "expect" { print >> (work "/expected.txt"); next }
' "$guide"

[[ -n "$(find "$HOME" -name '*.c' -print -quit)" ]] || { echo "run_guide: no File: blocks found in $guide" >&2; exit 1; }
[[ -s "$work/steps.sh" ]] || { echo "run_guide: no guide:run blocks found in $guide" >&2; exit 1; }
[[ -s "$work/expected.txt" ]] || { echo "run_guide: no guide:expect blocks found in $guide" >&2; exit 1; }

# Sanitizer builds: the plugins are built with the same flags as the host.
export CFLAGS="$flags" CXXFLAGS="$flags"
(cd "$work" && bash -euo pipefail steps.sh) > "$work/output.txt" 2> "$work/stderr.txt" || {
  echo "run_guide: a command in the guide failed:" >&2
  cat "$work/output.txt" "$work/stderr.txt" >&2
  exit 1
}
cat "$work/output.txt"
missing=0
# spdlog lines look like "2026-11-27T13:20:10.123 error [42] ...".
if grep -E '^[0-9-]+T[0-9:.]+ +(error|critical) ' "$work/stderr.txt" >&2; then
  echo "run_guide: the lines above were logged at error level while following the guide" >&2
  missing=1
fi
while IFS= read -r line; do
  [[ -z "$line" ]] && continue
  # Columns are compared with runs of spaces squeezed; paths may differ in prefix.
  want=$(echo "$line" | tr -s ' ')
  if ! tr -s ' ' < "$work/output.txt" | grep -qF -- "$want"; then
    echo "run_guide: expected output not found: $line" >&2
    missing=1
  fi
done < "$work/expected.txt"
exit $missing
