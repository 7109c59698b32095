#!/usr/bin/env bash
# The main job: installs what it needs, builds, and runs a fleet of 100 vehicles over MQTT on this machine — the
# embedded broker, the aggregator worker and one edge-agent worker per vehicle — learning the perception head with
# secure aggregation (SecAgg+), distributed differential privacy and an 8-bit codec. Ends with a summary and the
# report's path. Extra arguments go to `fleetlearn simulate` and override these.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh dataset-fashion-mnist
dotnet build src/FleetLearn.Cli -c Release -nologo -clp:ErrorsOnly -v:quiet
rm -rf runs/demo
exec src/FleetLearn.Cli/bin/Release/net10.0/fleetlearn simulate --transport mqtt --broker embedded \
  --vehicles 100 --cohort 50 --rounds 10 --local-epochs 1 --lr 0.1 \
  --dp distributed --clip 1 --noise-multiplier 1 --secagg plus --codec rot+q8 \
  --out runs/demo "$@"
