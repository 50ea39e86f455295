#!/usr/bin/env bash
# The test command (README, .ci/run): typecheck, make sure every database and
# the browser the tests need are up, then run the whole suite with node's test
# runner.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run typecheck
bash scripts/services.sh
export DBROKER_TEST_REQUIRE_ALL=1
files=$(find test -name '*.test.ts' | sort)
exec node --import tsx --test --test-concurrency=2 --test-timeout=300000 $files
