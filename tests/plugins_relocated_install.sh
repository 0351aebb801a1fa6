#!/bin/sh
# ctest plugins_relocated_install (docs/plugins.md, "Where plugins are found"): install
# the build tree to a prefix, move the prefix, and `edgert-node plugins` from the moved
# tree must list the bundled plugins from its own <libdir>/edgert/plugins and nothing
# from the build tree or the original prefix, with no ERROR line.
# usage: plugins_relocated_install.sh CMAKE BUILD_DIR LIBDIR
set -u
cmake=$1 build=$2 libdir=$3
w=$(mktemp -d "${TMPDIR:-/tmp}/edgert-relocated-XXXXXX") || exit 1
trap 'rm -rf "$w"' EXIT
if ! "$cmake" --install "$build" --prefix "$w/p1" > "$w/install.log" 2>&1; then
  cat "$w/install.log"; echo "FAIL: cmake --install failed"; exit 1
fi
mv "$w/p1" "$w/p2"
cd "$w" || exit 1
env -u EDGERT_PLUGIN_PATH -u EDGERT_PLUGIN_SCANNER "$w/p2/bin/edgert-node" plugins > out.txt 2> err.txt
rc=$?
echo "--- stdout"; cat out.txt; echo "--- stderr"; cat err.txt; echo "--- exit=$rc"
fail=0
for p in record_counter test_pattern threshold; do
  if ! grep -q "^$p .* $w/p2/$libdir/edgert/plugins/$p\.so\$" out.txt; then
    echo "FAIL: $p is not listed from $w/p2/$libdir/edgert/plugins"; fail=1
  fi
done
if grep -F -e "$build" -e "$w/p1" out.txt err.txt; then echo "FAIL: the build tree or the old prefix is searched"; fail=1; fi
if grep -qiw error err.txt; then echo "FAIL: an error on stderr"; fail=1; fi
if [ "$rc" -ne 0 ]; then echo "FAIL: exit status $rc"; fail=1; fi
[ "$fail" -eq 0 ] && echo "relocated install OK"
exit "$fail"
