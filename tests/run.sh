#!/bin/bash
# The project's test command (README): formatting, lints, a fuzz smoke run, every test.
# Opt-outs and knobs: FUZZ_SECONDS (default 60; fuzz/smoke.sh --long for the long run),
# VIRT_SYSTEMD_LAB=skip outside CI, LAB_SUITES, PROPTEST_CASES (see README "Tests").
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# No sanitizer for the smoke run: it checks the rewrite laws, and builds faster. A fixed
# seed and run count make it the same run on every clean checkout (FUZZ_SEED=, FUZZ_RUNS=
# to vary; fuzz/smoke.sh --long for the long, open-ended run).
FUZZ_SANITIZER=${FUZZ_SANITIZER:-none} FUZZ_SEED=${FUZZ_SEED:-1} FUZZ_RUNS=${FUZZ_RUNS:-400000} \
  fuzz/smoke.sh "${FUZZ_SECONDS:-120}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line over all test binaries (cargo's own last line is for a target with no
# tests).
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"
