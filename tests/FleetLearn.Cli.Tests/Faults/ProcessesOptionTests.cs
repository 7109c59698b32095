using System.Diagnostics;
using System.Text.RegularExpressions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// <c>simulate --transport mqtt --processes 2</c> as a real process: the agents live in two child OS processes (the CLI
/// starting itself with the hidden agent-range options) apart from the broker and the aggregator, the secure rounds complete
/// with every vehicle, each child reports its outboxes when stopped, and the children are gone when the parent ends.
/// </summary>
// Serialized with the other process-spawning tests: under a loaded machine, parallel builds and extractions starved
// these timing-sensitive rounds (a fault step waited past its 60 s window).
[Collection("Console")]
public sealed partial class ProcessesOptionTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fl-procs-");

    public void Dispose() => _dir.Delete(recursive: true);

    [SkippableTheory]
    [InlineData("embedded")]
    [InlineData("mosquitto")]
    public async Task Simulate_TwoProcesses_SecureRoundsWithEveryVehicleAndNoOrphan(string broker)
    {
        string? why = broker == "mosquitto" ? FleetLearn.Transport.Mqtt.Broker.MosquittoBroker.Unavailable() : null;
        Skip.If(why is not null, why);
        using var run = FleetProcess.Start("simulate", _dir.FullName, new Dictionary<string, string>(),
            ["simulate", "--transport", "mqtt", "--broker", broker, "--processes", "2", "--vehicles", "6", "--cohort", "6", "--rounds", "2", "--local-epochs", "1",
             "--model", "784-16-10", "--secagg", "plus", "--clip", "1", "--codec", "q8", "--workers", "1", "--out", Path.Combine(_dir.FullName, "out")]);
        int exit = await run.WaitForExitAsync(TimeSpan.FromMinutes(4));
        Assert.True(exit == 0, run.Output);
        string output = run.Output;
        var started = StartedChild().Match(output);
        Assert.True(started.Success, output);
        Assert.Contains($"(broker {broker}, agents in 2 processes)", output, StringComparison.Ordinal);
        Assert.Contains("fleet: 6 agents started in 2 processes", output, StringComparison.Ordinal);
        Assert.Matches(@"started agent process \d+ for vehicles 0\.\.2", output); // none of the agents in the aggregator's process
        Assert.DoesNotContain("did not report its outboxes", output, StringComparison.Ordinal);
        Assert.Contains("done: 2/2 rounds applied over MQTT", output, StringComparison.Ordinal);
        Assert.Equal(2, Regex.Matches(output, @"participants\s+6/6\s+applied").Count);
        Assert.Contains("0 messages left in outboxes", output, StringComparison.Ordinal);
        // The child hosted vehicles 3..5: their databases are in the shared work folder.
        Assert.True(File.Exists(Path.Combine(_dir.FullName, "out", "mqtt", "agents", "vehicle-5.db")));
        // Each process's own peak (Linux VmHWM), read before the child is stopped; their sum bounds the fleet's total.
        var peaks = PeakLine().Match(output);
        Assert.True(peaks.Success, output);
        double own = Gb(peaks.Groups[1].Value), first = Gb(peaks.Groups[2].Value), second = Gb(peaks.Groups[3].Value), all = Gb(peaks.Groups[5].Value);
        double mosquitto = peaks.Groups[4].Success ? Gb(peaks.Groups[4].Value) : 0;
        Assert.Equal(broker == "mosquitto", peaks.Groups[4].Success); // Mosquitto's own process is counted too
        Assert.InRange(own, 0.05, 8);
        Assert.InRange(first, 0.05, 8);
        Assert.InRange(second, 0.05, 8);
        Assert.InRange(all, own + first + second + mosquitto - 0.021, own + first + second + mosquitto + 0.021);
        int child = int.Parse(started.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Throws<ArgumentException>(() => Process.GetProcessById(child)); // no orphaned agent process
    }

    private static double Gb(string text) => double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);

    [GeneratedRegex(@"peak resident memory: this process (\d+\.\d\d) GB, agent processes (\d+\.\d\d), (\d+\.\d\d) GB(?:, mosquitto (\d+\.\d\d) GB)?; (\d+\.\d\d) GB together at most")]
    private static partial Regex PeakLine();

    [GeneratedRegex(@"started agent process (\d+) for vehicles 3\.\.5")]
    private static partial Regex StartedChild();
}
