#!/bin/bash
# ct.sh CMD...: run CMD inside the running lab container of $SUITE (default trixie).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -gt 0 ] || set -- bash
ct "$@"
