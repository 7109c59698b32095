#!/usr/bin/env bash
# The main job: installs what it needs, builds, and simulates a fleet of 100 vehicles learning the
# perception head with federated averaging. Extra arguments go to `fleetlearn simulate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh dataset-fashion-mnist
dotnet build src/FleetLearn.Cli -c Release -nologo -clp:ErrorsOnly -v:quiet
exec src/FleetLearn.Cli/bin/Release/net10.0/fleetlearn simulate --out runs/demo "$@"
