#!/bin/bash
# examples/warm_start: a cold run writes the image; `crlib restore` of it
# answers the same queries with the same table, twice.
set -eu -o pipefail
# Descriptors the test runner leaks to us would be refused by the dump
# (a pipe to the outside): the example gets only 0-2.
for fd in $(ls /proc/$$/fd); do
  if [ "$fd" -gt 2 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done
warm_start=$1
crlib=$2
dir=$(mktemp -d /tmp/crlib-warm-start-XXXXXX)
trap 'rm -rf "$dir"' EXIT
# Output through a pipe: standard streams that lead outside the process are
# reconnected at restore to the restorer's, so the restored run's answers
# land in restored.txt (a file would be reopened and written in place).
if ! "$warm_start" "$dir/warm.img" 7 123456 2>&1 </dev/null | cat > "$dir/cold.txt" ||
   ! grep -q '^cold start: table built' "$dir/cold.txt"; then
  echo "cold run failed:"; cat "$dir/cold.txt"; exit 1
fi
# The answers every restored run must repeat.
grep '^table' "$dir/cold.txt" > "$dir/cold.answers"
if [ "$(wc -l < "$dir/cold.answers")" -ne 3 ]; then
  echo "cold run gave no answers"; cat "$dir/cold.txt"; exit 1
fi
for round in 1 2; do
  if ! "$crlib" restore --image "$dir/warm.img" > "$dir/restored.txt" 2>&1 </dev/null ||
     ! grep -q '^restored (pid [0-9]*): ready' "$dir/restored.txt"; then
    echo "round $round: restore failed:"; cat "$dir/restored.txt"; exit 1
  fi
  # Same checksum and answers as the cold run.
  grep '^table' "$dir/restored.txt" > "$dir/restored.answers" || true
  if ! cmp -s "$dir/cold.answers" "$dir/restored.answers"; then
    echo "round $round: answers differ"; cat "$dir/cold.txt" "$dir/restored.txt"; exit 1
  fi
done
cat "$dir/cold.txt" "$dir/restored.txt"
echo "warm_start: ok"
