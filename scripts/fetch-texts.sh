#!/usr/bin/env bash
# Fetch the public-domain texts egret's perplexity tests score, into
# ~/.cache/egret/texts (override with EGRET_CACHE):
#
#   devils_dictionary.txt  Ambrose Bierce, The Devil's Dictionary (Debian `dict-devil`,
#                          /usr/share/dictd/devil.dict.dz, gunzipped)
#   jargon_file.txt        The Jargon File 4.4.7 (Debian `jargon-text`,
#                          /usr/share/doc/jargon-text/jargon.txt.gz, gunzipped)
#
# The packages are fetched with `apt-get download` (no install; the package
# lists are refreshed with `apt-get update` if the first try fails) and unpacked with dpkg-deb; re-running is a no-op.
# The SHA-256 of each text is checked: the reference perplexities in
# tests/smollm2.rs were computed on exactly these bytes. The short Eiffel
# paragraph is committed as tests/fixtures/texts/eiffel_paragraph.txt.
set -euo pipefail
CACHE="${EGRET_CACHE:-$HOME/.cache/egret}"
OUT="$CACHE/texts"
mkdir -p "$OUT"

fetch_text() { # package member name sha256
  local pkg="$1" member="$2" name="$3" sum="$4"
  if [ -f "$OUT/$name" ] && echo "$sum  $OUT/$name" | sha256sum --check --status; then
    return 0
  fi
  local tmp; tmp="$(mktemp -d "$CACHE/texts.tmp.XXXXXX")"
  echo "fetching $pkg from Debian" >&2
  # A fresh machine may have no package lists yet: refresh them once and retry.
  if ! (cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1) &&
     ! (apt-get update -qq >/dev/null 2>&1 && cd "$tmp" && apt-get download "$pkg" >/dev/null 2>&1); then
    echo "error: \`apt-get download $pkg\` failed (even after \`apt-get update\`)" >&2
    rm -rf "$tmp"
    return 1
  fi
  dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb | tar -xO "$member" | zcat >"$tmp/$name"
  if ! echo "$sum  $tmp/$name" | sha256sum --check --status; then
    echo "warning: $name from $pkg differs from the text the reference numbers used" >&2
  fi
  mv "$tmp/$name" "$OUT/$name"
  rm -rf "$tmp"
}

fetch_text dict-devil ./usr/share/dictd/devil.dict.dz devils_dictionary.txt \
  703d1225d2fb927653bfd8b00e4e96938e0b630c6023edd26702ac6ed50383f8
fetch_text jargon-text ./usr/share/doc/jargon-text/jargon.txt.gz jargon_file.txt \
  40dfb4b98191a670a09a183d5798d50f243d23fdbd1495dcc0aca2ce5895ba97
