#!/usr/bin/env bash
# Written once by the gitops-stages platform stack: the starter of this app's tests against a stage,
# which the gitops-stages workflow runs as `bash ci/integration-test.sh <stage>` once Argo CD has
# synced the release there and it is Healthy. It is yours: put the app's own tests here.
#
# The starter sends one smoke request: a GET of $SMOKE_URL (set it as a variable of the stage's
# GitHub Environment) that must answer 2xx, tried $SMOKE_ATTEMPTS times (default 6) 10 s apart.
# Without $SMOKE_URL it says so and passes, so that the first runs of a new repository are not red
# for want of a URL.
set -euo pipefail

stage="${1:-}"
[ -n "$stage" ] || { echo "usage: ci/integration-test.sh <stage>" >&2; exit 2; }

if [ -z "${SMOKE_URL:-}" ]; then
  echo "::warning::ci/integration-test.sh: no SMOKE_URL for stage ${stage}: no smoke test ran (set the variable SMOKE_URL of the GitHub Environment ${stage})"
  exit 0
fi
attempts="${SMOKE_ATTEMPTS:-6}"
for attempt in $(seq 1 "$attempts"); do
  if curl --fail --silent --show-error --max-time 10 --output /dev/null "$SMOKE_URL"; then
    echo "ci/integration-test.sh: ${stage}: ${SMOKE_URL} answered 2xx"
    exit 0
  fi
  echo "ci/integration-test.sh: ${stage}: ${SMOKE_URL} not answering 2xx (attempt ${attempt} of ${attempts})" >&2
  [ "$attempt" -lt "$attempts" ] && sleep 10
done
echo "ci/integration-test.sh: ${stage}: ${SMOKE_URL} did not answer 2xx in ${attempts} attempts, 10 s apart" >&2
exit 1
