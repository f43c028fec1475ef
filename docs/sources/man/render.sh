#!/bin/sh
# Render seven Linux man pages from the pinned Debian trixie manpages 6.9.1-1 packages to plain
# UTF-8/ASCII text, one paragraph per line (no filling breaks, no hyphenation), reproducibly.
#
# usage: render.sh [OUTDIR]        (default: the directory of this script)
# The two .debs are downloaded (and their sha256 checked) into $MANPAGES_DL, default
# ${TMPDIR:-/tmp}/manpages-6.9.1-1; `sha256sum -c SHA256SUMS` in OUTDIR then checks the result.
# Needs: sh, curl (only if the .debs are absent), sha256sum, ar (binutils), tar, xz, gzip,
#        groff 1.22.4 (groff-base; groff -t runs tbl), col (bsdextrautils), perl.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE}
DL=${MANPAGES_DL:-${TMPDIR:-/tmp}/manpages-6.9.1-1}
mkdir -p "$DL" "$OUT"
export LC_ALL=C.UTF-8 TZ=UTC
unset GROFF_SGR GROFF_TMAC_PATH GROFF_FONT_PATH GROFF_BIN_PATH GROFF_TYPESETTER MANWIDTH 2>/dev/null || true

MIRROR=https://deb.debian.org/debian
MP=manpages_6.9.1-1_all.deb
MP_SHA=91b7df0b4bd4e1a3b8ba5b229abd844e03f4c82c45ccb8c964a035190c29a501
MD=manpages-dev_6.9.1-1_all.deb
MD_SHA=9de42b48394935236a31385e4bae816911cd20dc3f20250531964aec44082f63

for pair in "$MP $MP_SHA" "$MD $MD_SHA"; do
  set -- $pair
  [ -f "$DL/$1" ] || curl -sSf -o "$DL/$1" "$MIRROR/pool/main/m/manpages/$1"
  echo "$2  $DL/$1" | sha256sum -c --quiet -
done

render() { # $1 = deb, $2 = page (e.g. socket), $3 = section
  deb=$1 page=$2 sec=$3
  ar p "$DL/$deb" data.tar.xz | tar -xJOf - "./usr/share/man/man$sec/$page.$sec.gz" | gzip -dc |
  # (a) source: in tbl format lines, drop the column-expand modifier "x" (socket.7's "l l lx."),
  #     which would otherwise stretch the table to the 10000n line length.
  perl -ne 'if (/^\.TS/) { $ts = 1; $fmt = 0 } elsif (/^\.TE/) { $ts = 0 }
            elsif ($ts && !$fmt && /;\s*$/) { }                       # tbl options line
            elsif ($ts && !$fmt) { s/x//g; $fmt = 1 if /\.\s*$/ }     # format lines up to "."
            print' |
  # (b) one space after a sentence end (groff would otherwise add a second one), then format:
  #     -t tbl, -man, very long lines, hyphenation off, continuous page, 80-column header/footer,
  #     grotty without SGR/overstrike/underline.
  { printf '.ss 12 0\n'; cat; } |
  groff -t -man -Tutf8 -rLL=10000n -rLT=80n -rHY=0 -rcR=1 -P-c -P-b -P-o -P-u -ww 2>"$OUT/.groff.$page.$sec.err" |
  # (c) strip any remaining backspace overstrikes, tabs to spaces
  col -bx |
  # (d) typographic characters to ASCII; trailing blanks removed
  perl -CSD -pe 's/[\x{2010}\x{2011}\x{2012}\x{2013}\x{2212}]/-/g; s/\x{2014}/--/g;
                 s/[\x{2018}\x{2019}]/\x27/g; s/[\x{201C}\x{201D}]/"/g; s/\x{2022}/*/g;
                 s/\x{00A0}/ /g; s/\x{00AD}//g;
                 s/\x{2500}/-/g; s/\x{2502}/|/g; s/[\x{250C}\x{2510}\x{2514}\x{2518}\x{251C}\x{2524}\x{252C}\x{2534}\x{253C}]/+/g;
                 s/[ \t]+$//' > "$OUT/$page.$sec.txt"
  if [ -s "$OUT/.groff.$page.$sec.err" ]; then cat "$OUT/.groff.$page.$sec.err" >&2; exit 1; fi
  rm -f "$OUT/.groff.$page.$sec.err"
  if LC_ALL=C grep -nP '[^\x0a\x20-\x7e]' "$OUT/$page.$sec.txt" >&2; then
    echo "non-ASCII left in $page.$sec.txt" >&2; exit 1
  fi
}

render $MP socket 7
render $MP ip 7
render $MP ipv6 7
render $MP tcp 7
render $MP udp 7
render $MD bind 2
render $MD connect 2

{
  groff --version | head -1
  col --version 2>&1 | head -1
  perl -e 'print "perl $^V\n"'
  dpkg-query -W -f='${Package} ${Version}\n' groff-base bsdextrautils binutils tar xz-utils gzip perl-base 2>/dev/null || true
} > "$OUT/render-env.txt"
cd "$OUT" && sha256sum socket.7.txt ip.7.txt ipv6.7.txt tcp.7.txt udp.7.txt bind.2.txt connect.2.txt
