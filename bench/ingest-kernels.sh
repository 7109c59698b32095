#!/usr/bin/env bash
# The plain receive path's passes over one update, apart from `fleetlearn bench ingest` (bench/ingest-kernels/Program.cs;
# docs/scale.md, "The plain path in session 30"): µs an update, best pass and median. DOTNET_TieredCompilation=0 so that
# every variant runs optimized code from its first call.
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet build bench/ingest-kernels -c Release -nologo -clp:ErrorsOnly -v:quiet >/dev/null
DOTNET_TieredCompilation=0 exec dotnet bench/ingest-kernels/bin/Release/net10.0/IngestKernels.dll
