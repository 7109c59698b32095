using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace FleetLearn.Cli.Tests.Commands;

/// <summary><c>simulate --trace</c>: sync and FedBuff in simulated hours, their summaries and files.</summary>
[Collection("Console")]
public sealed class SimulateTraceCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        int exit = FleetLearnCommand.Build().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        return (exit, output.ToString(), error.ToString());
    }

    private static readonly string[] Small = ["simulate", "--trace", "mixed", "--vehicles", "300", "--hours", "12", "--target", "0.6", "--model", "784-32-10", "--local-epochs", "1", "--json"];

    private static JsonElement Summary(string stdout) =>
        JsonDocument.Parse(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1]).RootElement;

    [Fact]
    public void FedBuffThenSync_SameFolder_SummariesAndOneComparisonChart()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"fleetlearn-trace-{Guid.NewGuid():N}");
        try
        {
            var (exit, stdout, _) = Run([.. Small, "--mode", "fedbuff", "--buffer", "10", "--out", folder]);
            Assert.Equal(0, exit);
            var fedbuff = Summary(stdout);
            Assert.Equal("fedbuff", fedbuff.GetProperty("mode").GetString());
            Assert.Equal(20, fedbuff.GetProperty("concurrency").GetInt32());
            Assert.True(fedbuff.GetProperty("simulated_hours_to_target").GetDouble() is > 0 and <= 12);
            double wasted = fedbuff.GetProperty("wasted_update_fraction").GetDouble();
            var causes = fedbuff.GetProperty("wasted_updates");
            long decided = fedbuff.GetProperty("decided_updates").GetInt64();
            Assert.Equal(wasted, (causes.GetProperty("dropped").GetInt64() + causes.GetProperty("stale").GetInt64() + causes.GetProperty("aborted").GetInt64()) / (double)decided, 12);
            (exit, stdout, _) = Run([.. Small, "--mode", "sync", "--cohort", "10", "--over-select", "0.3", "--out", folder]);
            Assert.Equal(0, exit);
            var sync = Summary(stdout);
            Assert.Equal("sync", sync.GetProperty("mode").GetString());
            Assert.True(sync.GetProperty("wasted_updates").GetProperty("surplus").GetInt64() > 0);
            Assert.True(sync.TryGetProperty("simulated_hours_to_target", out _));
            foreach (var name in (string[])["fedbuff-points.csv", "sync-points.csv", "fedbuff-staleness.png", "sync-participation.png", "accuracy-vs-hours.png", "fedbuff-report.html", "sync-report.html"])
                Assert.True(File.Exists(Path.Combine(folder, name)), name);
            string html = File.ReadAllText(Path.Combine(folder, "fedbuff-report.html"));
            Assert.Contains("simulated hours to target", html, StringComparison.Ordinal);
            Assert.Contains("accepted updates by staleness", html, StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void SyncSecAggPlusWithPace_SummaryAndFilesSayWhatItCost()
    {
        string folder = Path.Combine(Path.GetTempPath(), $"fleetlearn-trace-{Guid.NewGuid():N}");
        try
        {
            var (exit, stdout, _) = Run([.. Small, "--mode", "sync", "--cohort", "10", "--secagg", "plus", "--pace", "--out", folder]);
            Assert.Equal(0, exit);
            var sync = Summary(stdout);
            Assert.Equal("sync-secagg", sync.GetProperty("label").GetString());
            Assert.True(sync.GetProperty("pace").GetBoolean());
            var secagg = sync.GetProperty("secagg");
            Assert.Equal("plus", secagg.GetProperty("mode").GetString());
            Assert.True(secagg.GetProperty("groups").GetInt64() > 0);
            Assert.Equal(sync.GetProperty("applied").GetInt64() + sync.GetProperty("aborted").GetInt64(), secagg.GetProperty("groups").GetInt64());
            Assert.True(secagg.GetProperty("mean_key_phase_hours").GetDouble() > 0);
            Assert.Equal(JsonValueKind.Null, secagg.GetProperty("mean_training").ValueKind); // slots are FedBuff's
            Assert.Equal((int)Math.Ceiling(sync.GetProperty("simulated_hours").GetDouble()), sync.GetProperty("checkins_per_hour").GetArrayLength()); // up to where it stopped (at the target)
            Assert.True(sync.GetProperty("checkins_per_hour_peak").GetInt64() > 0);
            foreach (var name in (string[])["sync-secagg-checkins.csv", "sync-secagg-checkins.png", "checkins-per-hour.png", "sync-secagg-report.html"])
                Assert.True(File.Exists(Path.Combine(folder, name)), name);
            Assert.Contains("Secure aggregation", File.ReadAllText(Path.Combine(folder, "sync-secagg-report.html")), StringComparison.Ordinal);
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void FedBuffSecAggPlus_SummarySaysHowManyTrainedAndWaitedInGroups()
    {
        var (exit, stdout, _) = Run([.. Small, "--mode", "fedbuff", "--buffer", "10", "--secagg", "plus"]);
        Assert.Equal(0, exit);
        var secagg = Summary(stdout).GetProperty("secagg");
        double training = secagg.GetProperty("mean_training").GetDouble(), waiting = secagg.GetProperty("mean_waiting_in_group").GetDouble();
        Assert.InRange(training, 1, 20); // the concurrency (2K = 20) counts only those training
        Assert.True(waiting > 0, $"waiting {waiting}");
        Assert.True(secagg.GetProperty("peak_held").GetInt32() >= training + waiting, "the peak of those held is at least their mean");
        Assert.True(secagg.GetProperty("groups").GetInt64() > 0);
    }

    [Fact]
    public void PaceWithFedBuff_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => Run([.. Small, "--mode", "fedbuff", "--pace"]));
        Assert.Equal("--pace steers the check-ins of synchronous rounds: use it with --mode sync (FedBuff paces with its concurrency limit).", e.Message);
    }

    [Fact]
    public void TraceOptionWithoutTrace_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => Run("simulate", "--mode", "fedbuff", "--rounds", "1"));
        Assert.Equal("--mode applies to runs over an availability trace: add --trace commuter|delivery|taxi|mixed|FILE.", e.Message);
    }

    [Fact]
    public void GroupVersionUnknown_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => Run([.. Small, "--mode", "fedbuff", "--secagg", "plus", "--group-version", "later"]));
        Assert.Equal("--group-version 'later': expected formed or first.", e.Message);
    }

    [Fact]
    public void BufferWithSync_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => Run([.. Small, "--buffer", "10"]));
        Assert.Equal("--buffer is FedBuff's K: use --cohort with --mode sync.", e.Message);
    }

    [Fact]
    public void CsvTrace_WrittenThenLoaded_SameRun()
    {
        string file = Path.Combine(Path.GetTempPath(), $"fleetlearn-trace-{Guid.NewGuid():N}.csv");
        try
        {
            var (exit, generated, _) = Run([.. Small, "--mode", "fedbuff", "--buffer", "10", "--write-trace", file]);
            Assert.Equal(0, exit);
            Assert.StartsWith("vehicle,start,end,state", File.ReadLines(file).First(), StringComparison.Ordinal);
            string[] fromFile = [.. Small];
            fromFile[2] = file;
            var (exit2, loaded, _) = Run([.. fromFile, "--mode", "fedbuff", "--buffer", "10"]);
            Assert.Equal(0, exit2);
            // Instants are written to the second, so window edges move by < 1 s: the same steps, at most a few updates apart.
            Assert.Equal(Summary(generated).GetProperty("applied").GetInt64(), Summary(loaded).GetProperty("applied").GetInt64(), 2.0);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void FedBuffOverMqtt_SameModelAsInProcess()
    {
        string[] run = ["simulate", "--trace", "mixed", "--vehicles", "8", "--hours", "8", "--mode", "fedbuff", "--buffer", "3", "--subset", "1200:200", "--model", "784-32-10", "--local-epochs", "1", "--target", "0.99", "--json"];

        var (exit, inproc, _) = Run([.. run, "--transport", "inproc"]);
        var (exit2, mqtt, _) = Run([.. run, "--transport", "mqtt"]);

        Assert.Equal((0, 0), (exit, exit2));
        Assert.Equal("mqtt", Summary(mqtt).GetProperty("transport").GetString());
        Assert.True(Summary(mqtt).GetProperty("applied").GetInt64() > 0);
        Assert.Equal(Summary(inproc).GetProperty("model_sha256").GetString(), Summary(mqtt).GetProperty("model_sha256").GetString());
    }

    [Fact]
    public void FedBuffOverMqttWithEpsilonBudget_SameModelDeclinesAndVehicleLedgersAsInProcess()
    {
        // σ = 0.5: three fresh contributions are ε 21.445, four 25.9; the budget 23.7 lets each vehicle send three updates.
        string[] run = ["simulate", "--trace", "mixed", "--vehicles", "24", "--hours", "30", "--mode", "fedbuff", "--buffer", "3", "--subset", "1200:200", "--model", "784-32-10",
            "--local-epochs", "1", "--target", "0.99", "--dp", "central", "--clip", "1", "--noise-multiplier", "0.5", "--epsilon-budget", "23.7", "--json"];

        var (exit, inproc, _) = Run([.. run, "--transport", "inproc"]);
        var (exit2, mqtt, _) = Run([.. run, "--transport", "mqtt"]);

        Assert.Equal((0, 0), (exit, exit2));
        var (expected, actual) = (Summary(inproc), Summary(mqtt));
        Assert.True(expected.GetProperty("vehicle_declines").GetInt64() > 0, "no vehicle declined on its own ledger");
        foreach (var key in (string[])["model_sha256", "applied", "vehicle_declines", "max_vehicle_epsilon", "max_vehicle_ledger_epsilon"])
            Assert.Equal(expected.GetProperty(key).GetRawText(), actual.GetProperty(key).GetRawText());
        Assert.True(actual.GetProperty("max_vehicle_ledger_epsilon").GetDouble() <= 23.7);
    }

    [Fact]
    public void SyncOverMqttWithTrace_Refused()
    {
        var e = Assert.Throws<ArgumentException>(() => Run([.. Small, "--subset", "600:100", "--transport", "mqtt"]));
        Assert.Equal("--transport mqtt --trace runs --mode fedbuff (synchronous rounds over MQTT: simulate --transport mqtt without --trace).", e.Message);
    }
}
