#!/bin/sh
# A consumer builds against the build tree through the uninstalled crlib.pc
# and runs with the library it finds there.
set -eu
build=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PKG_CONFIG_PATH="$build/meson-uninstalled"
cat > "$tmp/consumer.c" <<'C'
#include <stdio.h>
#include <crlib/crlib.h>
int main(void) {
  if (crlib_version() != CRLIB_VERSION_NUMBER) return 1;
  printf("crlib %s\n", crlib_version_string());
  return 0;
}
C
# CONSUMER_CFLAGS: what a consumer of this build must add (-fsanitize=...
# when the library is sanitized: the ASan runtime must load first).
cc ${CONSUMER_CFLAGS:-} -o "$tmp/consumer" "$tmp/consumer.c" $(pkg-config --cflags --libs crlib)
LD_LIBRARY_PATH="$(pkg-config --variable=libdir crlib 2>/dev/null || true):$build/bindings/c" "$tmp/consumer"
