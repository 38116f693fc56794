#!/bin/sh
# Writes a rootfs tarball of Debian's busybox-static to stdout: /bin/busybox and its
# applet links, plus a minimal /etc. Import it with `dockyard import - busybox:latest`.
set -eu
bb=$(command -v busybox || echo /bin/busybox)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin" "$dir/etc" "$dir/tmp" \
  "$dir/root" "$dir/proc" "$dir/sys" "$dir/dev" "$dir/var" "$dir/home"
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] || ln -sf /bin/busybox "$dir/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$dir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
tar --numeric-owner -C "$dir" -cf - .
