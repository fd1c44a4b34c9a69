#!/bin/bash
# Fuzz the rewriter (fuzz/fuzz_targets/rewrite.rs) with cargo-fuzz / libFuzzer.
#
#   fuzz/smoke.sh                 short smoke run: 60 s, one process (opt-in; not in CI's
#                                 default run: FUZZ_SECONDS=N tests/run.sh runs it first)
#   fuzz/smoke.sh 300             smoke run of 300 s
#   fuzz/smoke.sh --long [SECS]   opt-in long run: default 1 h, one worker per CPU
#                                 (-fork), keeps going after a crash and lists all of them
#
# Installs cargo-fuzz when missing. cargo-fuzz needs nightly compiler flags; on a stable
# toolchain this sets RUSTC_BOOTSTRAP=1. AddressSanitizer is used when it builds, else
# `--sanitizer none` (force with FUZZ_SANITIZER=none|address). The build has debug
# assertions (overflow checks) on.
# New corpus entries go to fuzz/corpus/rewrite (not committed); fuzz/seeds/rewrite is the
# committed seed corpus, fuzz/regressions/rewrite holds inputs that once failed (replayed
# first, so a regression fails the run at once), fuzz/rewrite.dict the dictionary. A crash exits 1 and leaves its
# input in fuzz/artifacts/rewrite/; reproduce with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run rewrite fuzz/artifacts/rewrite/crash-…   (from fuzz/)
# and minimize with `cargo fuzz tmin rewrite …`.
set -euo pipefail
cd "$(dirname "$0")"

long=0
secs=60
if [ "${1:-}" = --long ]; then
  long=1
  secs=3600
  shift
fi
if [ $# -gt 0 ]; then
  secs="$1"
fi
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [--long] [SECONDS]" >&2; exit 2 ;; esac

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz --version '^0.13' >&2
fi

# Same dependency versions as the workspace; cargo adds the fuzz-only ones.
cp ../Cargo.lock Cargo.lock

target=rewrite
build() { cargo fuzz build --debug-assertions --sanitizer "$1" "$target"; }
san="${FUZZ_SANITIZER:-}"
if [ -z "$san" ]; then
  if build address; then
    san=address
  else
    echo "fuzz: the AddressSanitizer build failed; falling back to --sanitizer none" >&2
    san=none
    build none
  fi
else
  build "$san"
fi

mkdir -p "corpus/$target" "artifacts/$target"
before="$(ls "artifacts/$target" | wc -l)"
opts=(-dict="$target.dict" -max_total_time="$secs" -max_len=16384 -timeout=10
  -rss_limit_mb=2048 -print_final_stats=1)
# Reproducible runs (CI): a fixed seed and a fixed number of executions, so a clean
# checkout fuzzes the same inputs every time and a result can be replayed.
[ -n "${FUZZ_SEED:-}" ] && opts+=(-seed="$FUZZ_SEED")
[ -n "${FUZZ_RUNS:-}" ] && opts+=(-runs="$FUZZ_RUNS")
if [ "$long" = 1 ]; then
  opts+=(-fork="$(nproc)" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

echo "fuzz: $target for ${secs}s, sanitizer $san$([ "$long" = 1 ] && echo ", $(nproc) workers")" >&2
status=0
cargo fuzz run --debug-assertions --sanitizer "$san" "$target" \
  "corpus/$target" "seeds/$target" "regressions/$target" -- "${opts[@]}" || status=$?

after="$(ls "artifacts/$target" | wc -l)"
echo "fuzz: corpus/$target holds $(ls "corpus/$target" | wc -l) inputs" >&2
if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
  echo "fuzz: FAILED (exit $status, $((after - before)) new failing inputs); newest in fuzz/artifacts/$target/:" >&2
  ls -t "artifacts/$target" | head -n 20 | sed 's/^/  /' >&2
  exit 1
fi
echo "fuzz: no crash in ${secs}s" >&2
