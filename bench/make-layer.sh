#!/bin/sh
# Writes the benchmark's image layer: a gzip'd tar of about SIZE bytes (argv 2) at PATH (argv 1),
# made by the system tar and gzip from a root filesystem like a base image's: this machine's dpkg
# database and os-release, and large shared libraries (mostly incompressible, some text), so its
# inventory is real and its decompression cost is that of a real layer.
set -eu
out=$1
size=$2
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg" "$root/usr/lib/x86_64-linux-gnu" "$root/usr/share/doc" "$root/etc"
cp /var/lib/dpkg/status "$root/var/lib/dpkg/status"
cp /usr/lib/os-release "$root/usr/lib/os-release"
ln -s ../usr/lib/os-release "$root/etc/os-release"
# ~90% random bytes in 64 MiB files (libraries compress little), ~10% text (documentation).
n=$(( size * 9 / 10 / 67108864 ))
i=0
while [ "$i" -lt "$n" ]; do head -c 67108864 /dev/urandom > "$root/usr/lib/x86_64-linux-gnu/libbench$i.so"; i=$((i + 1)); done
rest=$(( size * 9 / 10 - n * 67108864 ))
[ "$rest" -gt 0 ] && head -c "$rest" /dev/urandom > "$root/usr/lib/x86_64-linux-gnu/libbench-tail.so"
yes "Airlock benchmark layer: documentation text that compresses like man pages do." | head -c $(( size / 10 * 4 )) > "$root/usr/share/doc/README"
tar -C "$root" --owner=0 --group=0 --numeric-owner -cf - . | gzip -1 > "$out"
