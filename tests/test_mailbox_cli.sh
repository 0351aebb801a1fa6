#!/bin/sh
# `edgert-node run` and `edgert-node mailbox` on one data_dir (docs/mailbox.md,
# "Operations and failure modes"). Usage: test_mailbox_cli.sh EDGERT_NODE NODE_YAML WORKDIR
# Prints "FAIL: ..." for each failed expectation and exits 1 if there was any.
node_bin=$1; cfg=$2; work=$3
rm -rf "$work"; mkdir -p "$work"
dir="$work/data"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures+1)); }

# expect CODE PATTERN CMD...: runs CMD, wants exit CODE and PATTERN (grep -F) in stdout+stderr.
expect() {
  code=$1; pattern=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  [ "$rc" = "$code" ] || fail "exit $rc (want $code): $* -> $out"
  printf '%s' "$out" | grep -qF -- "$pattern" || fail "no '$pattern' in: $* -> $out"
  case "$out" in *terminate*|*Aborted*) fail "aborted: $* -> $out";; esac
}

# 1. One node per data_dir: a second `run` refuses, naming the holder's pid.
EDGERT_NODE_DATA_DIR="$dir" "$node_bin" run "$cfg" --duration 60 > "$work/node.log" 2>&1 &
holder=$!
i=0; while [ ! -f "$dir/mailbox.db" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
[ -f "$dir/mailbox.db" ] || fail "the first node never created $dir/mailbox.db: $(cat "$work/node.log")"
out=$(EDGERT_NODE_DATA_DIR="$dir" "$node_bin" run "$cfg" --duration 5 2>&1); rc=$?
[ "$rc" != 0 ] || fail "a second node on $dir ran (exit 0)"
printf '%s' "$out" | grep -qF "$dir: in use by another process (pid $holder holds $dir/.lock); one node per data_dir" \
  || fail "second node's message: $out"
# What Node::start returned reaches the CLI unchanged: the mailbox's message, not an
# `internal` wrapped in the component's name (that goes to the ERROR log line).
printf '%s\n' "$out" | grep -qxF "edgert-node: $dir: in use by another process (pid $holder holds $dir/.lock); one node per data_dir" \
  || fail "second node's error line is not the mailbox's own message: $out"

# 2. Beside the running node: the read-only tools work, restore refuses naming the pid.
expect 0 "ok" "$node_bin" mailbox check --data-dir "$dir"
expect 0 '"outbox_rows":0' "$node_bin" mailbox stats --data-dir "$dir"
expect 0 "backed up $dir/mailbox.db to $work/copy.db" "$node_bin" mailbox backup "$work/copy.db" --data-dir "$dir"
expect 2 "(pid $holder holds $dir/.lock)" "$node_bin" mailbox restore "$work/copy.db" --data-dir "$dir"

# 3. backup onto the live file itself is refused, however it is named.
ln -s "$dir/mailbox.db" "$work/link.db"
expect 2 "is the live mailbox" "$node_bin" mailbox backup "$dir/mailbox.db" --data-dir "$dir"
expect 2 "is the live mailbox" "$node_bin" mailbox backup "$work/link.db" --data-dir "$dir"
expect 2 "is the live mailbox" sh -c 'cd "$1" && "$0" mailbox backup ./mailbox.db --data-dir .' "$node_bin" "$dir"
expect 2 "is the live mailbox" "$node_bin" mailbox backup "$dir/mailbox.db-wal" --data-dir "$dir"
kill -TERM $holder; wait $holder || fail "the first node exited $?: $(cat "$work/node.log")"

# 4. restore once the node is gone: the old file is moved aside, never deleted.
expect 0 "the previous one was moved to $dir/mailbox.db.pre-restore-" \
  "$node_bin" mailbox restore "$work/copy.db" --data-dir "$dir"
ls "$dir" | grep -q '^mailbox\.db\.pre-restore-' || fail "no mailbox.db.pre-restore-* in $dir"
expect 0 "ok" "$node_bin" mailbox check --data-dir "$dir"

# 5. Unreadable or impossible data_dirs: a message and exit 2, never an abort.
for action in check stats "backup $work/x.db" "restore $work/copy.db"; do
  # shellcheck disable=SC2086
  expect 2 "/etc/passwd/x" "$node_bin" mailbox $action --data-dir /etc/passwd/x
done
expect 2 "no mailbox here" "$node_bin" mailbox stats --data-dir "$work/empty"
expect 2 "backup needs a DEST" "$node_bin" mailbox backup --data-dir "$dir"
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
  mkdir -p "$work/private"; cp "$dir/mailbox.db" "$work/private/"; chmod 700 "$work/private"
  as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
  for action in check stats "backup /tmp/edgert-cli-$$.db" "restore $work/copy.db"; do
    # shellcheck disable=SC2086
    expect 2 "Permission denied" as_nobody "$node_bin" mailbox $action --data-dir "$work/private"
  done
  rm -f "/tmp/edgert-cli-$$.db"
else
  echo "skipped: the uid 65534 cases need root and setpriv"
fi

# 6. JSON output is escaped: a data_dir with a quote and a backslash.
odd="$work/q\"uo\\te"
expect 0 "there was no previous mailbox" "$node_bin" mailbox restore "$work/copy.db" --data-dir "$odd"
json=$("$node_bin" mailbox stats --data-dir "$odd" 2>&1)
printf '%s' "$json" | grep -qF '"path":"'"$work"'/q\"uo\\te/mailbox.db"' || fail "stats JSON not escaped: $json"

# 7. --config instead of --data-dir; both is an error.
printf 'node:\n  data_dir: %s\n' "$dir" > "$work/node.yaml"
expect 0 "\"path\":\"$dir/mailbox.db\"" "$node_bin" mailbox stats --config "$work/node.yaml"
expect 0 "ok" "$node_bin" mailbox check --config "$work/node.yaml"
expect 2 "not both" "$node_bin" mailbox stats --config "$work/node.yaml" --data-dir "$dir"
expect 2 "$work/missing.yaml" "$node_bin" mailbox stats --config "$work/missing.yaml"

[ $failures = 0 ] && echo "mailbox cli: all passed"
[ $failures = 0 ]
