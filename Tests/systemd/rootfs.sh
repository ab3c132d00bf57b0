#!/usr/bin/env bash
# Prints the path of a minimal Debian root file system for the systemd container test,
# building it once with mmdebstrap and caching it outside the checkout.
#
# The cache key is a hash of everything that decides the contents: the package list, the
# suite, the architecture and the apt sources used. The sources are the host's own apt
# configuration (whatever mirror apt is already set up with); no host name is written here.
# The build goes to a temporary folder that is renamed into place only when complete, so an
# interrupted build never leaves a half-made rootfs behind.
#
# Not a general image builder: it makes exactly what Tests/systemd/nspawn.sh boots.
#   usage: Tests/systemd/rootfs.sh            (prints the rootfs path on stdout)
#   env:   PP_TEST_CACHE (default /var/cache/perpetuum-test)
set -euo pipefail

cache=${PP_TEST_CACHE:-/var/cache/perpetuum-test}
# What the container needs: systemd as PID 1 and the tools' shared libraries (the Swift
# runtime is bind-mounted read-only from the host's toolchain by nspawn.sh).
packages=(systemd dbus libopenblas0-pthread libzstd1 libstdc++6 libgcc-s1)
# Bump when the recipe below changes, so the cache key changes with it.
recipe=2

. /etc/os-release
suite=${VERSION_CODENAME:?no VERSION_CODENAME in /etc/os-release}
arch=$(dpkg --print-architecture)

# The host's active apt sources (files apt itself reads), restricted to those for our suite.
sources=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] || continue
  grep -Eq "^[^#]*\b${suite}\b" "$f" || continue
  sources+=("$f")
done
[ ${#sources[@]} -gt 0 ] || { echo "rootfs.sh: no apt sources for $suite on this host" >&2; exit 1; }

key=$( { printf '%s\n' "${packages[@]}" "$suite" "$arch" "$recipe"; cat "${sources[@]}"; } | sha256sum | cut -c1-16)
dir="$cache/rootfs-$key"
if [ -x "$dir/usr/lib/systemd/systemd" ]; then
  echo "$dir"
  exit 0
fi

mkdir -p "$cache"
tmp="$cache/.rootfs-$key.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo "rootfs.sh: building $dir with mmdebstrap (once; about a minute)" >&2
inc=$(IFS=,; echo "${packages[*]}")
# Documentation, locales and apt's lists are not needed to boot: leaving them out keeps the
# per-run copy small.
mmdebstrap --quiet --variant=minbase --include="$inc" \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  --customize-hook='rm -f "$1/etc/machine-id"; echo uninitialized > "$1/etc/machine-id"' \
  "$suite" "$tmp" "${sources[@]}" >&2
mv "$tmp" "$dir"
# Older recipes are no longer used.
for old in "$cache"/rootfs-*; do [ "$old" = "$dir" ] || rm -rf "$old"; done
trap - EXIT
echo "$dir"
