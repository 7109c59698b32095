#!/usr/bin/env bash
# Runs FleetLearn's whole test suite: installs what the tests need, builds (Release), runs every
# test project, then every documented command (scripts/doc-commands.sh), and ends with one summary line
# "N passed, N failed, N skipped" (the unit tests; a failed documented command fails the run too).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

results="$(pwd)/artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"

echo "== build (Release)" >&2
dotnet build FleetLearn.sln -c Release -nologo -clp:ErrorsOnly -v:quiet
touch src/FleetLearn.Cli/bin/Release/net10.0/.fleetlearn-build-stamp   # scripts/fleetlearn: this build is current

echo "== test" >&2
status=0
# One test project at a time (-m:1): the process-fault tests time MQTT rounds of real processes, and a parallel
# project (packing, browser, fleets of agents) starved them past their windows in half of the full runs here.
dotnet test FleetLearn.sln -c Release --no-build -nologo -m:1 \
  --logger "trx" --logger "console;verbosity=normal" --results-directory "$results" || status=$?

# Totals over every test project, from the TRX files (one per project).
passed=0 failed=0 skipped=0 projects=0
for trx in "$results"/*.trx; do
  [ -e "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  get() { local v; v=$(echo "$counters" | sed -n "s/.* $1=\"\([0-9]*\)\".*/\1/p"); echo "${v:-0}"; }
  passed=$((passed + $(get passed)))
  failed=$((failed + $(get failed) + $(get error) + $(get timeout) + $(get aborted)))
  skipped=$((skipped + $(get total) - $(get executed)))
  projects=$((projects + 1))
done
expected=$(ls tests/*/*.Tests.csproj | wc -l)
if [ "$projects" -lt "$expected" ]; then
  echo "only $projects of $expected test projects reported results" >&2
  [ "$status" -ne 0 ] || status=1
fi
if [ "$failed" -gt 0 ] && [ "$status" -eq 0 ]; then status=1; fi
# The failed tests by name with the first lines of their error (the whole report is above, in the console logger's
# output), so that the end of the log says which and why even when only its tail is kept.
failed_names=$(python3 - "$results" <<'PY' || true
import glob, sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
for trx in sorted(glob.glob(sys.argv[1] + "/*.trx")):
    for r in ET.parse(trx).getroot().iterfind(".//t:UnitTestResult", ns):
        if r.get("outcome") not in ("Failed", "Error", "Timeout", "Aborted"):
            continue
        print(r.get("testName"))
        message = r.findtext("t:Output/t:ErrorInfo/t:Message", default="", namespaces=ns).strip()
        for line in message.splitlines()[:6]:
            print("    " + line[:300])
PY
)

# Every command the README and docs show, as written (long ones shortened as the docs mark them).
echo "== documented commands" >&2
doc_status=0
bash scripts/doc-commands.sh >&2 || doc_status=$?
if [ "$doc_status" -ne 0 ]; then
  echo "documented commands: failures above (bash scripts/doc-commands.sh)" >&2
  [ "$status" -ne 0 ] || status=1
fi
# The vehicle image: two reproducible builds, RAUC signature and payload checks, the rollback hook (root and the Debian
# mirror; the base root filesystem is cached by its package list). The container checks (`--all`) stay a manual script.
echo "== vehicle image" >&2
if [ "$(id -u)" -eq 0 ]; then
  if ! bash scripts/test-images.sh >&2; then
    echo "vehicle image: failures above (bash scripts/test-images.sh)" >&2
    [ "$status" -ne 0 ] || status=1
  fi
else
  echo "vehicle image: not tested (needs root)" >&2
fi
if [ -n "$failed_names" ]; then
  echo "failed tests:" >&2
  echo "$failed_names" | sed 's/^/  /' >&2
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit "$status"
