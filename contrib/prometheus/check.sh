#!/usr/bin/env bash
# Checks keywatch's example Prometheus rules: syntax (promtool check rules) and the unit tests
# (promtool test rules). Needs promtool (Prometheus 2.x) on PATH or in $PROMTOOL.
set -euo pipefail
cd "$(dirname "$0")"
promtool="${PROMTOOL:-promtool}"
"$promtool" check rules keywatch-rules.yml
"$promtool" test rules keywatch-rules.test.yml
