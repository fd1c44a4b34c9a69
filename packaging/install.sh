#!/bin/bash
# packaging/install.sh - install virt-systemd as packaging/install-manifest lists it.
#
# The one installer behind `make install`, the .deb staging tree (packaging/debian/build-deb.sh),
# the RPM spec's %install and the PKGBUILD's package(), so the formats cannot install
# different files.
#
#   packaging/install.sh --bindir target/release --destdir /tmp/root [options]
#   packaging/install.sh --list [options]        # the expanded manifest: KIND MODE PATH SOURCE
#
# Options:
#   --bindir DIR            where the cargo binaries are (default: target/release)
#   --destdir DIR           staging root (DESTDIR); default: / (a real install)
#   --gzip-man              gzip -9n the man pages (PATH.gz), as Debian requires; rpmbuild
#                           and makepkg compress them themselves
#   --strip                 strip the binaries (the .deb; rpmbuild and makepkg strip themselves)
#   --zsh-completions DIR   value of @ZSH_COMPLETIONS@ (default /usr/share/zsh/site-functions)
#   --manifest FILE         another manifest (tests)
set -euo pipefail
umask 022

SRC=$(cd "$(dirname "$0")/.." && pwd)
MANIFEST=$SRC/packaging/install-manifest
BINDIR=$SRC/target/release
DESTDIR=
GZIP_MAN=0
STRIP=0
LIST=0
ZSH_COMPLETIONS=/usr/share/zsh/site-functions

die() { echo "install.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) BINDIR=${2:?}; shift 2;;
    --destdir) DESTDIR=${2?}; shift 2;;
    --gzip-man) GZIP_MAN=1; shift;;
    --strip) STRIP=1; shift;;
    --zsh-completions) ZSH_COMPLETIONS=${2:?}; shift 2;;
    --manifest) MANIFEST=${2:?}; shift 2;;
    --list) LIST=1; shift;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0;;
    *) die "unknown argument $1 (see --help)";;
  esac
done
[ -f "$MANIFEST" ] || die "no manifest at $MANIFEST"
DESTDIR=${DESTDIR%/}

# Expand the manifest: one "KIND MODE PATH SOURCE" line per installed path, with globs,
# variables and the .gz suffix resolved. SOURCE is absolute for bin/file/conf/man.
expand() {
  local kind mode path src extra lineno=0
  while read -r kind mode path src extra; do
    lineno=$((lineno + 1))
    case "$kind" in ''|'#'*) continue;; esac
    [ -z "$extra" ] || die "$MANIFEST:$lineno: more than 4 columns"
    [ -n "$src" ] || die "$MANIFEST:$lineno: fewer than 4 columns"
    path=${path//@ZSH_COMPLETIONS@/$ZSH_COMPLETIONS}
    case "$path" in /*) ;; *) die "$MANIFEST:$lineno: $path is not absolute";; esac
    case "$kind" in
      dir) echo "dir $mode $path -";;
      link) echo "link - $path $src";;
      bin) echo "bin $mode $path $BINDIR/$src";;
      file|conf) echo "$kind $mode $path $SRC/$src";;
      man)
        local gz=; [ "$GZIP_MAN" = 1 ] && gz=.gz
        if [ "${path%/}" != "$path" ]; then
          local f found=0
          for f in $SRC/$src; do
            [ -f "$f" ] || continue
            found=1
            echo "man $mode $path$(basename "$f")$gz $f"
          done
          [ "$found" = 1 ] || die "$MANIFEST:$lineno: $src matches nothing (run make man)"
        else
          echo "man $mode $path$gz $SRC/$src"
        fi;;
      *) die "$MANIFEST:$lineno: unknown kind $kind";;
    esac
  done < "$MANIFEST"
}

ENTRIES=$(expand)
if [ "$LIST" = 1 ]; then
  printf '%s\n' "$ENTRIES"
  exit 0
fi

# Check every source first: install all or nothing.
while read -r kind mode path src; do
  case "$kind" in
    bin) [ -x "$src" ] || die "missing binary $src (build first: make, or cargo build --release)";;
    file|conf|man) [ -f "$src" ] || die "missing $src";;
  esac
done <<< "$ENTRIES"

while read -r kind mode path src; do
  dest=$DESTDIR$path
  case "$kind" in
    dir) install -d -m "$mode" "$dest";;
    bin)
      install -D -m "$mode" "$src" "$dest"
      [ "$STRIP" = 0 ] || strip --strip-unneeded --remove-section=.comment --remove-section=.note "$dest";;
    file|conf) install -D -m "$mode" "$src" "$dest";;
    man)
      if [ "$GZIP_MAN" = 1 ]; then
        install -d -m 0755 "$(dirname "$dest")"
        gzip -9nc "$src" > "$dest"
        chmod "$mode" "$dest"
      else
        install -D -m "$mode" "$src" "$dest"
      fi;;
    link)
      install -d -m 0755 "$(dirname "$dest")"
      ln -sfn "$src" "$dest";;
  esac
done <<< "$ENTRIES"
