#!/bin/sh
# callgrind.sh BENCH CSV [--n N] : instructions per operation, counted by
# valgrind's callgrind with collection switched on only inside the driver's
# bench_region() (the op loop itself: no setup, no key generation, no timer).
# Writes CSV with the header library,keys,op,n,instructions_per_op.
# Deterministic: these numbers do not drift with machine noise.
BENCH=$1
CSV=$2
shift 2
N=10000
while [ $# -gt 0 ]; do
  case $1 in
    --n) N=$2; shift ;;
    --quick) ;;
  esac
  shift
done
if ! command -v valgrind >/dev/null 2>&1; then
  echo "bench-callgrind: valgrind not found (Debian package valgrind); skipped"
  exit 0
fi
# library:keys:op: what the targets table needs (absl for the ratios), and a few more
CASES="champ:u64:query absl:u64:query champ:u64:insert absl:u64:insert
champ:u64:remove absl:u64:remove champ:u64:miss absl:u64:miss
champ_generic:u64:query champ:str:query champ_generic:str:query absl:str:query
glib:u64:query glib:u64:insert"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$(dirname "$CSV")"
echo "library,keys,op,n,instructions_per_op" > "$tmp/out.csv"
printf '%-14s %-5s %-7s %8s %14s\n' library keys op n instr/op
for c in $CASES; do
  lib=${c%%:*}; rest=${c#*:}; keys=${rest%%:*}; op=${rest#*:}
  if ! "$BENCH" --callgrind "$lib:$keys:$op:$N" >"$tmp/run.txt" 2>"$tmp/err.txt"; then
    printf '%-14s %-5s %-7s %8s %14s\n' "$lib" "$keys" "$op" "$N" "(not built)"
    continue
  fi
  rm -f "$tmp/cg.out"
  if ! valgrind --tool=callgrind --collect-atstart=no --toggle-collect=bench_region \
       --callgrind-out-file="$tmp/cg.out" "$BENCH" --callgrind "$lib:$keys:$op:$N" \
       >"$tmp/run.txt" 2>"$tmp/vg.txt"; then
    printf '%-14s %-5s %-7s %8s %14s\n' "$lib" "$keys" "$op" "$N" "(failed)"
    sed -n '1,20p' "$tmp/vg.txt" >&2
    continue
  fi
  ops=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' "$tmp/run.txt")
  ir=$(sed -n 's/^\(summary\|totals\): *\([0-9]*\).*/\2/p' "$tmp/cg.out" | head -1)
  n=$(sed -n 's/.* n=\([0-9]*\) .*/\1/p' "$tmp/run.txt")
  per=$(awk -v i="$ir" -v o="$ops" 'BEGIN { if (o > 0) printf "%.1f", i / o }')
  echo "$lib,$keys,$op,$n,$per" >> "$tmp/out.csv"
  printf '%-14s %-5s %-7s %8s %14s\n' "$lib" "$keys" "$op" "$n" "$per"
done
cp "$tmp/out.csv" "$CSV"
awk -F, 'NR > 1 { v[$1 "," $2 "," $3] = $5 }
  END {
    split("query insert remove miss", ops, " ")
    printf "\nchamp / absl, u64, instructions per op:\n"
    for (i = 1; i <= 4; i++) {
      c = v["champ,u64," ops[i]]; a = v["absl,u64," ops[i]]
      if (c != "" && a != "") printf "  %-7s %6.2fx\n", ops[i], c / a
    }
    c = v["champ_generic,str,query"]; a = v["absl,str,query"]
    if (c != "" && a != "") printf "  str query, champ_generic / absl: %.2fx\n", c / a
  }' "$CSV"
echo "wrote $CSV"
