#!/bin/sh
# The symbols libcrlib.so exports must be exactly the committed list, so an
# ABI change is always deliberate: update exported_symbols.txt with it.
set -eu
lib=$1
expected=$2
actual=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sed 's/@.*//' | sort -u)
if [ "$actual" != "$(sort -u "$expected")" ]; then
  echo "exported symbols differ from $expected:"
  printf '%s\n' "$actual" | diff -u "$expected" - || true
  exit 1
fi
echo "exported symbols match ($(printf '%s\n' "$actual" | wc -l))"
