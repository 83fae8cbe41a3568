#!/usr/bin/env bash
# Unpack a real Exim (Debian's exim4-daemon-light, which offers PIPECONNECT =
# early pipelining) for the interop tests into a private directory. Nothing is
# installed: exim4's packages conflict with postfix (which postfix.sh installs),
# so the .debs are fetched with `apt-get download` and unpacked with
# `dpkg-deb -x`, together with any shared library they need that this machine
# lacks (libidn12 on a stock Debian 12). tests/interop/exim_server.py runs the
# binary from there with LD_LIBRARY_PATH pointing at those libraries. The
# binary has Debian's exim user compiled in, so the Debian-exim system user is
# created when missing (Exim refuses to start without it). Needs root and apt.
#
# Usage: tests/interop/exim.sh        (idempotent: skips when already unpacked)
#
# Environment: SMTPSEC_EXIM_DIR  where to unpack (default /tmp/smtpsec-exim);
# the binary is then $SMTPSEC_EXIM_DIR/root/usr/sbin/exim4, the .debs are kept
# in $SMTPSEC_EXIM_DIR/debs.
set -euo pipefail
DIR=${SMTPSEC_EXIM_DIR:-/tmp/smtpsec-exim}
ROOT=$DIR/root
DEBS=$DIR/debs
BIN=$ROOT/usr/sbin/exim4
EXIM_USER=Debian-exim
LOG=$DIR/apt.log

die() {
  printf 'exim.sh: %s\n' "$*" >&2
  exit 2
}

[[ $DIR == /* ]] || die "SMTPSEC_EXIM_DIR must be an absolute path (got '$DIR')"
[[ $(id -u) -eq 0 ]] || die "must run as root (it creates the $EXIM_USER user; the tests run Exim as root)"
for tool in apt-get apt-cache dpkg-deb dpkg-query ldd; do
  command -v "$tool" >/dev/null || die "$tool is not installed (needs a Debian/apt machine)"
done

ensure_user() { # prints what it did, if anything
  getent passwd "$EXIM_USER" >/dev/null && return 0
  command -v useradd >/dev/null || die "no $EXIM_USER user and no useradd to create it"
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin "$EXIM_USER" || die "could not create the $EXIM_USER user"
  printf ', created the %s user' "$EXIM_USER"
}

lib_path() { # the unpacked library directories, colon-separated
  local dirs=() d
  for d in "$ROOT"/lib/*-linux-gnu "$ROOT"/usr/lib/*-linux-gnu; do
    [[ -d $d ]] && dirs+=("$d")
  done
  local IFS=:
  printf '%s' "${dirs[*]}"
}

missing_libs() { # sonames the unpacked binary cannot resolve (empty when none)
  LD_LIBRARY_PATH=$(lib_path) ldd "$BIN" 2>/dev/null | awk '/not found/ { print $1 }'
}

version_ok() { # the binary runs and was built with PIPECONNECT
  local out
  out=$(LD_LIBRARY_PATH=$(lib_path) "$BIN" -C /dev/null -bV 2>/dev/null) || return 1
  grep -q '^Support for:.* PIPECONNECT' <<<"$out" && grep -o '^Exim version [^ ]*' <<<"$out"
}

installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

# exim4-daemon-light plus every library package it needs, directly or through
# other such libraries, that is not installed here (installed ones bring their
# own dependencies). Only lib* packages: the rest (exim4-base, debconf...) are
# Debian's MTA plumbing, which a binary run by hand does not use.
packages_needed() {
  local -A seen=()
  local queue=(exim4-daemon-light) pkg dep
  while ((${#queue[@]})); do
    pkg=${queue[0]}
    queue=("${queue[@]:1}")
    [[ -n ${seen[$pkg]:-} ]] && continue
    seen[$pkg]=1
    printf '%s\n' "$pkg"
    while read -r dep; do
      [[ -z ${seen[$dep]:-} ]] && ! installed "$dep" && queue+=("$dep")
    done < <(apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances "$pkg" 2>/dev/null |
      sed -n 's/^ *|\{0,1\}\(Pre\)\{0,1\}Depends: \(lib[a-z0-9.+-]*\)$/\2/p')
  done
}

user_note=$(ensure_user)
if [[ -x $BIN && -z $(missing_libs) ]] && version=$(version_ok); then
  echo "exim.sh: $version already unpacked in $ROOT$user_note"
  exit 0
fi

install -d -m 0755 "$DIR" "$DEBS"
# The binary found here is started as root: refuse a directory someone else
# could have prepared (a predictable path under /tmp on a shared machine).
for d in "$DIR" "$DEBS" "$ROOT"; do
  [[ -e $d ]] || continue
  [[ $(stat -c %u "$d") -eq 0 ]] || die "$d is not owned by root; remove it or set SMTPSEC_EXIM_DIR"
  [[ $(( 0$(stat -c %a "$d") & 022 )) -eq 0 ]] || die "$d is group- or world-writable; remove it or set SMTPSEC_EXIM_DIR"
done
: >"$LOG"
# A fresh image has no package lists at all: fetch them before asking apt-cache.
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
  apt-get update >>"$LOG" 2>&1 || die "apt-get update failed (output in $LOG)"
fi
mapfile -t packages < <(packages_needed)
((${#packages[@]})) || die "apt-cache does not know exim4-daemon-light (output in $LOG)"
# apt-get download writes to the current directory; as root it warns that it
# cannot sandbox the download to _apt, which is harmless.
if ! (cd "$DEBS" && apt-get download "${packages[@]}") >>"$LOG" 2>&1; then
  apt-get update >>"$LOG" 2>&1 || die "apt-get update failed (output in $LOG)"
  (cd "$DEBS" && apt-get download "${packages[@]}") >>"$LOG" 2>&1 ||
    die "apt-get download ${packages[*]} failed (output in $LOG)"
fi
rm -rf "$ROOT.tmp"
for pkg in "${packages[@]}"; do
  # Keep only the newest .deb per package (an older cached one may linger).
  deb=$(find "$DEBS" -maxdepth 1 -name "${pkg}_*.deb" -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
  [[ -n $deb ]] || die "apt-get download left no .deb for $pkg in $DEBS (output in $LOG)"
  dpkg-deb -x "$deb" "$ROOT.tmp" || die "dpkg-deb -x $deb failed"
done
rm -rf "$ROOT"
mv "$ROOT.tmp" "$ROOT"
# The binary is setuid root in the package; the tests start it as root and it
# needs no privilege to regain, so a world-runnable setuid copy in /tmp is not kept.
chmod 0755 "$BIN"
[[ -z $(missing_libs) ]] || die "$BIN still lacks libraries after unpacking: $(missing_libs | tr '\n' ' ')"
version=$(version_ok) || die "$BIN -bV failed or lacks PIPECONNECT support"
echo "exim.sh: unpacked $version (${packages[*]}) into $ROOT$user_note"
