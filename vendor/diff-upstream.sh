#!/usr/bin/env bash
# Prints what we carry in vendor/CRATE as a unified diff against the same version as
# published on crates.io:
#
#     vendor/diff-upstream.sh tansu-storage
#
# The published crate comes from cargo's registry cache when it is there, otherwise from
# static.crates.io, checked against the checksum crates.io lists for it (below; the same
# as Cargo.lock had before the patch). Each vendor/CRATE/PATCHES.md ends with this diff;
# refresh it after changing a patch.
set -euo pipefail
crate="${1:?usage: vendor/diff-upstream.sh CRATE}"
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/$crate/Cargo.toml" | head -1)"
case "$crate-$version" in
  tansu-storage-0.6.0) checksum=720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d ;;
  tansu-broker-0.6.0) checksum=93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720 ;;
  *) echo "no checksum recorded for $crate $version: add it to $0" >&2; exit 2 ;;
esac
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
upstream="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$version" 2>/dev/null | head -1 || true)"
if [ -z "$upstream" ]; then
  # With the patch in place cargo never downloads the published crate itself.
  url="https://static.crates.io/crates/$crate/$crate-$version.crate"
  if ! curl -sSfL --retry 3 -o "$tmp/crate.tar.gz" "$url"; then
    echo "cannot download $url (and no $crate $version in cargo's registry cache)" >&2
    exit 2
  fi
  echo "$checksum  $tmp/crate.tar.gz" | sha256sum -c --quiet - >&2 || {
    echo "$url does not match the checksum crates.io lists" >&2
    exit 2
  }
  tar xzf "$tmp/crate.tar.gz" -C "$tmp"
  upstream="$tmp/$crate-$version"
fi
ln -s "$upstream" "$tmp/a"
ln -s "$here/$crate" "$tmp/b"
cd "$tmp"
# diff exits 1 when the trees differ, which is the point. Without timestamps, so the diff
# in PATCHES.md changes only when the code does.
{ diff -ruN --exclude=Cargo.lock --exclude=.cargo-ok --exclude=PATCHES.md a/ b/ || true; } |
  sed -E -e 's/^(---|\+\+\+) ([^\t]+)\t.*$/\1 \2/' -e 's/^diff -ruN .* (a\/[^ ]+) (b\/[^ ]+)$/diff -ruN \1 \2/'
