#!/bin/sh
# deps.sh PACKAGE... : install the Debian packages that are missing, when we
# may.  Used by `make test` and `make bench` so both work on a fresh machine.
#
# It names the packages before it installs them, in one line (and the
# packages apt adds for them in a second one):
#   deps: installing: libxxhash-dev pkg-config (set CHAMP_NO_INSTALL=1 to skip)
#   deps: and what they need: libpkgconf3 pkgconf pkgconf-bin
# and installs only when all of these hold: CHAMP_NO_INSTALL is unset, empty
# or 0; we are root; apt-get is there.  Otherwise it says what is missing and
# why it is not installing it, and the caller does without.  It never fails
# (no network, a broken mirror: it says so and goes on).  Without dpkg (not
# Debian) it says nothing: the build finds headers by itself.
command -v dpkg-query >/dev/null 2>&1 || exit 0
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
missing=${missing# }

case ${CHAMP_NO_INSTALL:-0} in
  0|"") ;;
  *) echo "deps: missing: $missing (not installing: CHAMP_NO_INSTALL=$CHAMP_NO_INSTALL); going on without" >&2
     exit 0 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing: $missing (run as root to install them, or install them yourself); going on without" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing: $missing (no apt-get to install them); going on without" >&2
  exit 0
fi

stamp=/tmp/.champ-apt-updated
if [ ! -f "$stamp" ]; then
  apt-get update -qq >/dev/null 2>&1 && touch "$stamp"
fi
echo "deps: installing: $missing (set CHAMP_NO_INSTALL=1 to skip)" >&2
# What apt adds to them (their dependencies), from a dry run.
# shellcheck disable=SC2086 # one word per package
extra=$(apt-get install -s --no-install-recommends $missing 2>/dev/null |
  awk -v named=" $missing " '$1 == "Inst" && index(named, " " $2 " ") == 0 { printf "%s%s", sep, $2; sep = " " }')
[ -n "$extra" ] && echo "deps: and what they need: $extra" >&2
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 \
  || echo "deps: could not install: $missing; going on without" >&2
exit 0
