using System.CommandLine;
using System.Globalization;
using FleetLearn.Compute;
using FleetLearn.Core.Training;
using FleetLearn.Simulation;
using FleetLearn.Simulation.Traces;

namespace FleetLearn.Cli.Commands;

/// <summary><c>fleetlearn simulate --trace …</c>: sync or FedBuff rounds over an availability trace, in simulated hours (docs/async.md).</summary>
internal sealed class TraceSimulateCommand
{
    public Option<string?> Trace { get; } = new("--trace") { Description = "Availability trace: commuter | delivery | taxi | mixed [:±H, one UTC offset] (seeded vehicle-day model) | a CSV file (vehicle,start,end,state). Runs in simulated hours (docs/async.md)." };

    public Option<string> Mode { get; } = new("--mode") { Description = "With --trace: sync (rounds of --cohort) | fedbuff (a step at every --buffer updates).", DefaultValueFactory = _ => "sync" };

    public Option<int?> Buffer { get; } = new("--buffer") { Description = "With --mode fedbuff: K, updates per step (default: --cohort)." };

    public Option<double> Hours { get; } = new("--hours") { Description = "With --trace: simulated hours to run.", DefaultValueFactory = _ => 72 };

    public Option<int?> Concurrency { get; } = new("--concurrency") { Description = "With --mode fedbuff: vehicles training at once (default 2K)." };

    public Option<int> MaxStaleness { get; } = new("--max-staleness") { Description = "With --mode fedbuff: updates more versions behind are refused.", DefaultValueFactory = _ => 10 };

    public Option<int?> MaxParticipations { get; } = new("--max-participations") { Description = "With --trace: most contributions per vehicle (bounds each vehicle's ε under DP)." };

    public Option<double> UpdateMinutes { get; } = new("--update-minutes") { Description = "With --trace: compute minutes of one update on a median vehicle (log-normal, σ 0.6).", DefaultValueFactory = _ => 10 };

    public Option<double> EvalEveryHours { get; } = new("--eval-every-hours") { Description = "With --trace: evaluate after a step once this many simulated hours passed.", DefaultValueFactory = _ => 0.25 };

    public Option<string?> Label { get; } = new("--label") { Description = "With --trace --out: the run's name in the folder's files and charts (default: the mode, -dp with DP)." };

    public Option<string?> WriteTrace { get; } = new("--write-trace") { Description = "With --trace: also write the trace as CSV to this file." };

    public Option<bool> Pace { get; } = new("--pace") { Description = "With --trace --mode sync: pace steering — the aggregator suggests each vehicle its next check-in hour to smooth the load over the day (docs/async.md)." };

    public Option<string> GroupVersion { get; } = new("--group-version") { Description = "With --mode fedbuff --secagg: formed (a group's members wait until it has them all, then train on the version current then) | first (the group is fixed on the version at its first member's check-in).", DefaultValueFactory = _ => "formed" };

    public IEnumerable<Option> All => [Trace, Mode, Buffer, Hours, Concurrency, MaxStaleness, MaxParticipations, UpdateMinutes, EvalEveryHours, Label, WriteTrace, Pace, GroupVersion];

    public bool IsSet(ParseResult parse) => parse.GetValue(Trace) is not null;

    /// <summary>Refuses a trace-only option without --trace (it would be ignored silently).</summary>
    public void CheckUnused(ParseResult parse)
    {
        if (IsSet(parse)) return;
        if (All.Skip(1).FirstOrDefault(o => parse.GetResult(o) is { Implicit: false }) is { } given)
            throw new ArgumentException($"{given.Name} applies to runs over an availability trace: add --trace commuter|delivery|taxi|mixed|FILE.");
    }

    /// <summary>The options as the trace run reads them (FedBuff's K from --buffer); validated.</summary>
    public (SimulationOptions Options, TraceSettings Settings) Read(ParseResult parse, SimulationOptions options)
    {
        var mode = parse.GetValue(Mode)!.Trim().ToLowerInvariant() switch
        {
            "sync" => RoundMode.Sync,
            "fedbuff" => RoundMode.FedBuff,
            var m => throw new ArgumentException($"--mode '{m}': expected sync or fedbuff."),
        };
        if (parse.GetValue(Buffer) is { } k)
        {
            if (mode != RoundMode.FedBuff) throw new ArgumentException("--buffer is FedBuff's K: use --cohort with --mode sync.");
            options = options with { Cohort = k };
        }
        var settings = new TraceSettings
        {
            Mode = mode,
            Hours = parse.GetValue(Hours),
            Concurrency = parse.GetValue(Concurrency),
            MaxStaleness = parse.GetValue(MaxStaleness),
            MaxParticipations = parse.GetValue(MaxParticipations),
            Resources = new VehicleResources(UpdateMinutes: parse.GetValue(UpdateMinutes)),
            EvaluateEveryHours = parse.GetValue(EvalEveryHours),
            Pace = parse.GetValue(Pace),
            GroupVersion = parse.GetValue(GroupVersion)!.Trim().ToLowerInvariant() switch
            {
                "formed" => Core.Rounds.GroupVersion.Formed,
                "first" => Core.Rounds.GroupVersion.FirstCheckIn,
                var g => throw new ArgumentException($"--group-version '{g}': expected formed or first."),
            },
        };
        options.Validate();
        settings.Validate();
        return (options, settings);
    }

    /// <summary>Loads or generates the trace, runs it, prints a line (or a JSON object) per evaluation and a summary.</summary>
    /// <remarks>With <paramref name="mqtt"/>, FedBuff runs over the embedded broker with real agents and aggregator (<see cref="FedBuffMqttSimulation"/>), databases in a temporary folder.</remarks>
    public int Run(ParseResult parse, SimulationOptions options, TraceSettings settings, LabeledData train, LabeledData test, BackendChoice backend, string? output, bool asJson, TextWriter progress, bool mqtt = false)
    {
        string spec = parse.GetValue(Trace)!;
        var trace = File.Exists(spec) || spec.EndsWith(".csv", StringComparison.OrdinalIgnoreCase)
            ? TraceCsv.Load(spec)
            : VehicleDayModel.Parse(spec).Generate(options.Vehicles, settings.Hours, options.Seed);
        if (parse.GetValue(WriteTrace) is { } file)
        {
            using var writer = new StreamWriter(file);
            TraceCsv.Write(trace, writer);
        }
        string? backendLine = null;
        string work = Path.Combine(Path.GetTempPath(), $"fleetlearn-fedbuff-mqtt-{Environment.ProcessId}");
        Func<Core.Model.ModelSpec, int, ITrainer> trainer = (s, b) => TrainerFactory.Create(backend, s, b, 1, line => backendLine ??= line);
        using var run = mqtt ? new FedBuffMqttSimulation(options, settings, trace, train, test, trainer, work) : TraceFleetSimulation.Create(options, settings, trace, train, test, trainer);
        using var cleanup = mqtt ? new TemporaryFolder(work) : null;
        int k = options.CohortSize;
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"simulate --trace{(mqtt ? " --transport mqtt" : "")}: {trace.Description}, {options.Vehicles:N0} vehicles, {run.Trace.EligibleHoursPerDay:F2} eligible h per vehicle-day; {settings.Mode.ToString().ToLowerInvariant()} K={k}{(settings.Mode == RoundMode.FedBuff ? $" concurrency {settings.EffectiveConcurrency(k)} max staleness {settings.MaxStaleness}" : $" over-selection {options.OverSelection:P0}")}; {settings.Hours} simulated h; updates {settings.Resources.UpdateMinutes} min median; {backendLine}"));
        var result = run.Run(point =>
        {
            if (asJson)
                CliJson.Write(parse.InvocationConfiguration.Output, new { simulated_hours = point.Hours, version = point.Version, test_accuracy = point.Accuracy, test_loss = point.Loss, applied_updates = point.Applied, wasted_updates = point.Wasted });
            else
                progress.WriteLine(string.Create(CultureInfo.InvariantCulture, $"hour {point.Hours,6:F2}  version {point.Version,5}  accuracy {point.Accuracy:F4}  applied {point.Applied,7}  wasted {point.Wasted,7}"));
        });
        double wastedCompute = result.ComputeHours.Wasted / Math.Max(1e-12, result.ComputeHours.Used + result.ComputeHours.Wasted);
        var contributed = result.Participations.Where(c => c > 0).ToArray();
        string label = parse.GetValue(Label) ?? settings.Mode.ToString().ToLowerInvariant() + (options.SecureAggregation == Core.Compression.SecureAggregationMode.Off ? "" : "-secagg") + (options.Privacy is null ? "" : "-dp");
        if (output is not null)
        {
            (string, object?)[] summary =
            [
                ("trace", trace.Description), ("vehicles", options.Vehicles), ("K", k), ("concurrency", settings.Mode == RoundMode.FedBuff ? settings.EffectiveConcurrency(k) : null),
                ("over-selection", options.OverSelection), ("pace steering", settings.Pace ? "on" : "off"), ("simulated hours to target", result.HoursToTarget), ("target", options.Target),
                ("final accuracy", result.Points[^1].Accuracy), ("steps / rounds applied", result.Applied), ("wasted update fraction", result.WastedUpdateFraction),
                ("wasted compute fraction", wastedCompute), ("max vehicle ε", SimulateCommand.Finite(result.MaxVehicleEpsilon)),
                ("secure aggregation", result.Secure is { } s ? string.Create(CultureInfo.InvariantCulture, $"{options.SecureAggregation.ToString().ToLowerInvariant()}: {s.Groups} groups, {s.Aborted} aborted, {s.MasksRebuilt} members' masks rebuilt") : "off"),
            ];
            progress.WriteLine($"wrote {string.Join(", ", TraceArtifacts.Write(output, label, result, options.Target, summary))}");
        }
        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"done: {(result.HoursToTarget is { } h ? $"reached {options.Target:F2} after {h:F2} simulated hours" : $"did not reach {options.Target:F2} in {result.Hours:F2} simulated hours")}; final accuracy {result.Points[^1].Accuracy:F4}; {result.Applied} {(settings.Mode == RoundMode.FedBuff ? "steps" : "rounds")} applied, {result.Aborted} aborted;{(result.Secure is { } g ? $" secure groups {g.Groups}, key phases {g.KeyPhaseHours * 3600 / Math.Max(1, g.Groups):F1} s, unmasking {g.UnmaskPhaseHours * 3600 / Math.Max(1, g.Groups):F1} s per group, {g.MasksRebuilt} masks rebuilt;" : "")} wasted {result.WastedUpdateFraction:P1} of {result.Decided} updates ({string.Join(", ", result.WastedUpdates.Where(p => p.Value > 0).Select(p => $"{p.Key.ToString().ToLowerInvariant()} {p.Value}"))}); {result.Seconds:F1} s"));
        if (asJson)
        {
            CliJson.Write(parse.InvocationConfiguration.Output, new
            {
                summary = true,
                mode = settings.Mode.ToString().ToLowerInvariant(),
                transport = mqtt ? "mqtt" : "inproc",
                label,
                trace = trace.Description,
                vehicles = options.Vehicles,
                k,
                concurrency = settings.Mode == RoundMode.FedBuff ? settings.EffectiveConcurrency(k) : (int?)null,
                over_selection = options.OverSelection,
                target = options.Target,
                simulated_hours_to_target = result.HoursToTarget,
                simulated_hours = result.Hours,
                final_accuracy = result.Points[^1].Accuracy,
                applied = result.Applied,
                aborted = result.Aborted,
                abort_reasons = result.AbortReasons,
                used_updates = result.UsedUpdates,
                decided_updates = result.Decided,
                wasted_update_fraction = result.WastedUpdateFraction,
                wasted_updates = result.WastedUpdates.ToDictionary(p => p.Key.ToString().ToLowerInvariant(), p => p.Value),
                wasted_compute_fraction = wastedCompute,
                staleness = result.Staleness.OrderBy(p => p.Key).ToDictionary(p => p.Key.ToString(CultureInfo.InvariantCulture), p => p.Value),
                vehicles_contributed = contributed.Length,
                max_participations = contributed.DefaultIfEmpty(0).Max(),
                mean_participations = contributed.Length == 0 ? 0 : contributed.Average(),
                eligible_hours_per_vehicle_day = run.Trace.EligibleHoursPerDay,
                pace = settings.Pace,
                checkins_per_hour_peak = result.CheckInsPerHour is { Count: > 0 } l1 ? l1.Max() : (long?)null,
                checkins_per_hour_mean = result.CheckInsPerHour is { Count: > 0 } l2 ? l2.Average() : (double?)null,
                checkins_per_hour = result.CheckInsPerHour,
                secagg = result.Secure is not { } sec ? null : new
                {
                    mode = options.SecureAggregation.ToString().ToLowerInvariant(),
                    groups = sec.Groups,
                    aborted = sec.Aborted,
                    mean_members = sec.Groups == 0 ? 0 : sec.Members / (double)sec.Groups,
                    mean_key_phase_hours = sec.Groups == 0 ? 0 : sec.KeyPhaseHours / sec.Groups,
                    mean_input_phase_hours = sec.Groups == 0 ? 0 : sec.InputPhaseHours / sec.Groups,
                    mean_unmask_phase_hours = sec.Groups == 0 ? 0 : sec.UnmaskPhaseHours / sec.Groups,
                    dropped_in = sec.DroppedIn,
                    masks_rebuilt = sec.MasksRebuilt,
                    mean_training = sec.MeanTraining,
                    mean_waiting_in_group = sec.MeanWaiting,
                    peak_held = sec.PeakHeld,
                },
                max_vehicle_epsilon = SimulateCommand.Finite(result.MaxVehicleEpsilon),
                // FedBuff: the vehicles' own ledgers (a fresh charge per update sent; over MQTT the agents' LiteDB ledgers) and the assignments they declined on them.
                max_vehicle_ledger_epsilon = result.VehicleLedgerEpsilon is { Count: > 0 } own ? own.Max() : (double?)null,
                vehicle_declines = result.VehicleLedgerEpsilon is null ? (long?)null : result.VehicleDeclines,
                delta = options.Privacy?.Delta,
                model_sha256 = Core.Model.Checkpoint.ParameterHash(run.GlobalModel),
                seconds = result.Seconds,
            });
        }
        return 0;
    }
}

/// <summary>Deletes a folder when disposed (the MQTT trace run's databases).</summary>
internal sealed class TemporaryFolder(string path) : IDisposable
{
    public void Dispose()
    {
        try
        {
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
