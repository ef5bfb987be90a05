#!/usr/bin/env bash
# Installs kiln into a temporary prefix, then builds a program against it twice: with
# CMake's find_package(kiln) and with pkg-config.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name libkiln.so -printf '%h\n' | head -n1)

cmake -S "$src" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH="$libdir" "$tmp/cm/consumer"

export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 "$src/consumer.c" $(pkg-config --cflags --libs kiln) -o "$tmp/pc_consumer"
LD_LIBRARY_PATH="$libdir" "$tmp/pc_consumer"
echo "install: find_package and pkg-config consumers both ran"
