using System.Diagnostics;
using System.Text.RegularExpressions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// <c>simulate --transport mqtt --processes 2</c> as a real process: half of the agents live in a second OS process
/// (the CLI starting itself with the hidden agent-range options), the secure rounds complete with every vehicle, and the
/// child is gone when the parent ends.
/// </summary>
// Serialized with the other process-spawning tests: under a loaded machine, parallel builds and extractions starved
// these timing-sensitive rounds (a fault step waited past its 60 s window).
[Collection("Console")]
public sealed partial class ProcessesOptionTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fl-procs-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public async Task Simulate_TwoProcesses_SecureRoundsWithEveryVehicleAndNoOrphan()
    {
        using var run = FleetProcess.Start("simulate", _dir.FullName, new Dictionary<string, string>(),
            ["simulate", "--transport", "mqtt", "--processes", "2", "--vehicles", "6", "--cohort", "6", "--rounds", "2", "--local-epochs", "1",
             "--model", "784-16-10", "--secagg", "plus", "--clip", "1", "--codec", "q8", "--workers", "1", "--out", Path.Combine(_dir.FullName, "out")]);
        int exit = await run.WaitForExitAsync(TimeSpan.FromMinutes(4));
        Assert.True(exit == 0, run.Output);
        string output = run.Output;
        var started = StartedChild().Match(output);
        Assert.True(started.Success, output);
        Assert.Contains("done: 2/2 rounds applied over MQTT", output, StringComparison.Ordinal);
        Assert.Equal(2, Regex.Matches(output, @"participants\s+6/6\s+applied").Count);
        Assert.Contains("0 messages left in outboxes", output, StringComparison.Ordinal);
        // The child hosted vehicles 3..5: their databases are in the shared work folder.
        Assert.True(File.Exists(Path.Combine(_dir.FullName, "out", "mqtt", "agents", "vehicle-5.db")));
        // Each process's own peak (Linux VmHWM), read before the child is stopped; their sum bounds the fleet's total.
        var peaks = PeakLine().Match(output);
        Assert.True(peaks.Success, output);
        double own = Gb(peaks.Groups[1].Value), agents = Gb(peaks.Groups[2].Value), all = Gb(peaks.Groups[3].Value);
        Assert.InRange(own, 0.05, 8);
        Assert.InRange(agents, 0.05, 8);
        Assert.InRange(all, own + agents - 0.011, own + agents + 0.011);
        int child = int.Parse(started.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Throws<ArgumentException>(() => Process.GetProcessById(child)); // no orphaned agent process
    }

    private static double Gb(string text) => double.Parse(text, System.Globalization.CultureInfo.InvariantCulture);

    [GeneratedRegex(@"peak resident memory: this process (\d+\.\d\d) GB, agent processes (\d+\.\d\d) GB; (\d+\.\d\d) GB together at most")]
    private static partial Regex PeakLine();

    [GeneratedRegex(@"started agent process (\d+) for vehicles 3\.\.5")]
    private static partial Regex StartedChild();
}
