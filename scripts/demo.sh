#!/usr/bin/env bash
# `make demo` (after `make setup`): the whole pipeline on this machine, then the checker naming what was lost.
#
#   1. `streamwreck local up`: kinesis-local, moto, memcached, the processor under the real KCL daemon (skipping
#      every record whose sequence number divides by 5: the demo rule), the recorder, the reconcile API and the
#      watcher (`streamwreck watch`, judging each record as the consumer's checkpoint passes it)
#   2. `streamwreck produce`: 1,000 records over 4 shards
#   3. `streamwreck local wait`: until the consumer has caught up and the watcher has judged every record
#   4. `streamwreck check`: every shard read, every record asked about; JSON report + summary, then the HTML
#      report rendered from the JSON one (one checker run for both)
#   5. the demo's own check: the records named lost are exactly the ones the demo rule skipped, by the checker and
#      by the watcher
# The stack is brought down at the end, whatever happened (trap). Logs stay in $DEMO_DIR/logs.
set -euo pipefail
cd "$(dirname "$0")/.."

SW=${STREAMWRECK:-.venv/bin/streamwreck}
PY=${PYTHON:-.venv/bin/python}
DEMO_DIR=${DEMO_DIR:-.streamwreck/demo}
REPORT=${REPORT:-reports/demo.html}
RECORDS=${RECORDS:-1000}
SHARDS=${SHARDS:-4}
SKIP_EVERY=${SKIP_EVERY:-5}
STREAM=demo

if [ ! -x "$SW" ]; then
  echo "demo: $SW is missing: run 'make setup' first (or 'make demo', which does)" >&2
  exit 2
fi

began=$(date +%s)
step() { printf '\n\033[1m== %s\033[0m  (%ss)\n' "$*" "$(($(date +%s) - began))"; }

finish() {
  code=$?
  step "stopping the local stack"
  "$SW" local down --dir "$DEMO_DIR" || true
  if [ "$code" = 0 ]; then
    printf '\ndemo: done in %ss. Report: %s  Logs: %s/logs\n' "$(($(date +%s) - began))" "$REPORT" "$DEMO_DIR"
  else
    printf '\ndemo: FAILED (exit %s) after %ss; logs in %s/logs\n' "$code" "$(($(date +%s) - began))" "$DEMO_DIR" >&2
  fi
  exit "$code"
}
trap finish EXIT
trap 'exit 130' INT TERM

# A stack left running by an interrupted demo would make `up` refuse: this folder is the demo's own.
"$SW" local down --dir "$DEMO_DIR" >/dev/null 2>&1 || true

step "1/5 starting the local stack (the KCL consumer takes 30-60 s to lease its shards)"
"$SW" local up --dir "$DEMO_DIR" --stream "$STREAM" --shards "$SHARDS" --skip-every "$SKIP_EVERY"
exports=$("$SW" local status --dir "$DEMO_DIR" --env)  # AWS_* for boto3: the emulators, local credentials
eval "$exports"
API_URL=$("$SW" local status --dir "$DEMO_DIR" --field api_url)
KCL_APP=$("$SW" local status --dir "$DEMO_DIR" --field kcl_application)

step "2/5 writing $RECORDS records to stream $STREAM ($SHARDS shards)"
"$SW" produce --stream "$STREAM" --count "$RECORDS"

step "3/5 waiting for the consumer to catch up (and the watcher to judge every record)"
"$SW" local wait --dir "$DEMO_DIR" --timeout 300

step "4/5 checking: every shard read, every record looked up in the ledger"
# --grace 0: 'local wait' has seen every processed record reach the ledger and every checkpoint pass the last record,
# so a record missing now is missing for good (the default grace would call the youngest ones in flight).
check=("$SW" check --stream "$STREAM" --endpoint "$API_URL" --kcl-app "$KCL_APP" --grace 0)
mkdir -p "$(dirname "$REPORT")"
set +e
"${check[@]}" --format json --output "$DEMO_DIR/report.json"
check_code=$?
set -e
if [ -s "$DEMO_DIR/report.json" ]; then
  "$PY" -m streamwreck.local.demo --report "$DEMO_DIR/report.json" --html "$REPORT"
fi
if [ "$check_code" != 1 ]; then
  echo "demo: expected the checker to report lost records (exit 1), it exited $check_code" >&2
  exit 1
fi

step "5/5 are the lost records exactly the ones the demo rule skipped (checker and watcher)?"
"$PY" -m streamwreck.local.demo --dir "$DEMO_DIR" --report "$DEMO_DIR/report.json"
