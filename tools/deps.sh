#!/bin/sh
# deps.sh PACKAGE... : install Debian packages that are missing, when we can.
# Used by `make test` / `make bench` so both work on a fresh machine.  Never
# fails: when a package cannot be installed (not root, no apt, no network) it
# says so once and the caller does without it.
missing=""
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing$missing" >&2
  stamp=/tmp/.champ-apt-updated
  if [ ! -f "$stamp" ]; then
    apt-get update -qq >/dev/null 2>&1 && touch "$stamp"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 \
    || echo "deps: could not install$missing; going on without" >&2
else
  echo "deps: missing$missing (run as root to install them); going on without" >&2
fi
exit 0
