#!/usr/bin/env bash
# Prints what we carry in vendor/CRATE as a unified diff against the same version as
# published on crates.io (from cargo's registry cache; `cargo fetch` fills it):
#
#     vendor/diff-upstream.sh tansu-storage
#
# Each vendor/CRATE/PATCHES.md ends with this diff; refresh it after changing a patch.
set -euo pipefail
crate="${1:?usage: vendor/diff-upstream.sh CRATE}"
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/$crate/Cargo.toml" | head -1)"
upstream="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$version" 2>/dev/null | head -1)"
if [ -z "$upstream" ]; then
  echo "no $crate $version in cargo's registry cache: run \`cargo fetch\` first" >&2
  exit 2
fi
cd "$here"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ln -s "$upstream" "$tmp/a"
ln -s "$here/$crate" "$tmp/b"
cd "$tmp"
# diff exits 1 when the trees differ, which is the point.
# Without timestamps, so the diff in PATCHES.md changes only when the code does.
{ diff -ruN --exclude=Cargo.lock --exclude=.cargo-ok --exclude=PATCHES.md a/ b/ || true; } |
  sed -E -e 's/^(---|\+\+\+) ([^\t]+)\t.*$/\1 \2/' -e 's/^diff -ruN .* (a\/[^ ]+) (b\/[^ ]+)$/diff -ruN \1 \2/'
