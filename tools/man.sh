#!/bin/sh
# man.sh - helpers for champ's man pages (docs/man/*.3), used by the Makefile.
#
#   sh tools/man.sh names PAGE...          the names each page's NAME section
#                                          lists, one "NAME PAGE" per line
#   sh tools/man.sh aliases PAGE...        "ALIAS.3 PAGE.3" for every listed
#                                          name that is not the page itself
#                                          (make install writes each alias as
#                                          a one-line ".so man3/PAGE.3")
#   sh tools/man.sh check HEADER PAGE...   make man-check: lints every page
#                                          (groff -t -ww, when groff is there),
#                                          then checks that every champ_*
#                                          function HEADER declares is named
#                                          in some page's NAME section, and
#                                          that every champ_* name there is
#                                          declared.  Exit status 1 if not.
#
# A NAME section is the usual one line (it may be split over several):
#   .SH NAME
#   champ_get_u64, champ_get_bytes, champ_get \- look up a key

# names PAGE...: "name page" for each name in each page's NAME section.
names() {
    for page in "$@"; do
        awk -v page="${page##*/}" '
            /^\.SH/ { if (in_name) exit; if ($2 == "NAME") in_name = 1; next }
            in_name { text = text " " $0 }
            END {
                sub(/\\-.*/, "", text)          # the names end at "\-"
                gsub(/\\f[BIRP]/, "", text)     # font changes
                gsub(/\\/, "", text)
                n = split(text, w, /[ ,]+/)
                for (i = 1; i <= n; i++)
                    if (w[i] != "") print w[i], page
            }' "$page"
    done
}

aliases() {
    names "$@" | while read -r name page; do
        [ "$name.3" = "$page" ] || echo "$name.3 $page"
    done
}

# The champ_* functions a header declares: the last identifier before the
# first "(" of every declaration that starts with CHAMP_API.
declared() {
    awk '
        /^[ \t]*CHAMP_API[ \t]/ { decl = ""; collecting = 1 }
        collecting {
            decl = decl " " $0
            if (index(decl, "(")) {
                d = substr(decl, 1, index(decl, "(") - 1)
                n = split(d, w, /[^A-Za-z0-9_]+/)
                while (n > 0 && w[n] == "") n--
                if (w[n] ~ /^champ_/) print w[n]
                collecting = 0
            }
        }' "$1"
}

check() {
    header=$1
    shift
    status=0
    tmp=${TMPDIR:-/tmp}/champ-man.$$
    trap 'rm -f "$tmp".*' EXIT INT TERM

    if command -v groff >/dev/null 2>&1; then
        for page in "$@"; do
            # -t: tables (tbl, as man runs it for a page that starts with
            # '\" t); -ww: every warning; -z: no output.  Text that does not
            # fit the 80-column terminal ("cannot adjust line", "table
            # wider than line width") counts too.
            LC_ALL=C groff -t -man -Tutf8 -ww -z "$page" >"$tmp.lint" 2>&1
            if [ -s "$tmp.lint" ]; then
                echo "man-check: $page: groff warnings:"
                sed 's/^/  /' "$tmp.lint"
                status=1
            fi
        done
        [ "$status" = 0 ] && echo "man-check: $# pages lint clean (groff -t -man -ww)"
    else
        echo "man-check: groff not found (Debian: groff-base): pages not linted"
    fi

    declared "$header" | sort -u >"$tmp.decl"
    names "$@" | awk '$1 ~ /^champ_/ { print $1 }' | sort -u >"$tmp.named"
    if [ ! -s "$tmp.decl" ]; then
        echo "man-check: found no CHAMP_API declarations in $header"
        return 1
    fi
    missing=$(comm -23 "$tmp.decl" "$tmp.named")
    extra=$(comm -13 "$tmp.decl" "$tmp.named")
    if [ -n "$missing" ]; then
        echo "man-check: declared in $header but named by no man page (add each to a NAME section in docs/man):"
        echo "$missing" | sed 's/^/  /'
        status=1
    fi
    if [ -n "$extra" ]; then
        echo "man-check: named by a man page but not declared in $header:"
        echo "$extra" | sed 's/^/  /'
        status=1
    fi
    [ -z "$missing$extra" ] &&
        echo "man-check: all $(wc -l <"$tmp.decl") functions of $header have a man page"
    return $status
}

cmd=$1
shift
case $cmd in
    names) names "$@" ;;
    aliases) aliases "$@" ;;
    check) check "$@" ;;
    *) echo "usage: man.sh names|aliases PAGE... | man.sh check HEADER PAGE..." >&2; exit 2 ;;
esac
