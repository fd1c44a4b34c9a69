#!/bin/bash
# The project's test command (README): formatting, lints, then every test of every
# workspace member, labs included (VIRT_SYSTEMD_LAB=skip outside CI, LAB_SUITES,
# PROPTEST_CASES: see README "Tests"). Coverage-guided fuzzing is opt-in:
# FUZZ_SECONDS=N runs fuzz/smoke.sh for N seconds first (its laws and regressions run in
# `cargo test` either way).
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '== %s (%s)\n' "$*" "$(date +%T)"; }
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
if [ -n "${FUZZ_SECONDS:-}" ]; then
  step "fuzz smoke run, ${FUZZ_SECONDS}s"
  FUZZ_SANITIZER=${FUZZ_SANITIZER:-none} fuzz/smoke.sh "$FUZZ_SECONDS"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
step "cargo test"
set +e
# --no-fail-fast: every test binary runs and reports even when an earlier one failed.
cargo test --workspace --all-targets --locked --no-fail-fast 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
step "done"
# One closing line over all test binaries. A binary that failed without printing its
# result line (it crashed) counts as one failed test, so a red run never says 0 failed.
awk '/^test result:/ { p += $4; f += $6; s += $8; if ($3 == "FAILED.") r++ }
     /^error: test failed, to rerun pass/ { t++ }
     END { if (t > r) f += t - r
           printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$rc"
