using System.Diagnostics;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Storage.Tests;

/// <summary>Kills a real process that is recording rounds (SIGKILL, no shutdown code runs) and checks the ledger survives.</summary>
public sealed class CrashTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(90);
    private readonly string _dir = Directory.CreateTempSubdirectory("fleetlearn-crash-").FullName;

    private string DbPath => Path.Combine(_dir, "ledger.db");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Process StartProbe(params string[] args)
    {
        string probe = Path.Combine(AppContext.BaseDirectory, "FleetLearn.Storage.CrashProbe.dll");
        Assert.True(File.Exists(probe), $"crash probe not built at {probe}");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardInput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(probe);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi) ?? throw new InvalidOperationException("could not start the crash probe");
    }

    // Reads stdout until the line "recorded {round}" appears (no sleeping: each read waits for the next line).
    private static async Task WaitForLineAsync(Process process, string expected)
    {
        using var cts = new CancellationTokenSource(Timeout);
        while (true)
        {
            string? line = await process.StandardOutput.ReadLineAsync(cts.Token);
            if (line is null)
                throw new InvalidOperationException($"the probe exited before printing '{expected}': {await process.StandardError.ReadToEndAsync(cts.Token)}");
            if (line == expected) return;
        }
    }

    private static void KillHard(Process process)
    {
        process.Kill(entireProcessTree: true); // SIGKILL on Unix: no finally blocks, no Dispose, no checkpoint
        process.WaitForExit();
    }

    [Fact]
    public async Task Kill9_AfterKRecordedRounds_AllKRoundsAndEpsilonSurvive()
    {
        const int k = 5, vehicles = 3;
        using (var probe = StartProbe(DbPath, k.ToString(), vehicles.ToString(), "wait"))
        {
            await WaitForLineAsync(probe, $"recorded {k}");
            KillHard(probe);
            Assert.NotEqual(0, probe.ExitCode);
        }
        var options = new PrivacyLedgerOptions(epsilonMax: 1e6, delta: 1e-5);
        using var store = LiteDbPrivacyLedgerStore.Open(DbPath, options);
        Assert.Equal(new LedgerVerification(vehicles, vehicles * k, 0), store.Verification);
        double expected = RdpAccountant.GetEpsilon(1.0, 4.0, k, 1e-5).Epsilon;
        for (int v = 0; v < vehicles; v++)
        {
            var state = store.Get($"v{v}");
            Assert.Equal(Enumerable.Range(1, k).Select(r => (long)r), state.Rounds);
            Assert.Equal(expected, state.Epsilon, 1e-9); // a tolerance, not rounding to 12 places: two values 4e-13 apart can round apart
        }
    }

    [Fact]
    public async Task Kill9_WhileRecordingContinuously_EveryAcknowledgedRoundSurvivesAndLedgerVerifies()
    {
        const int acknowledged = 15;
        using (var probe = StartProbe(DbPath, "100000", "2", "exit"))
        {
            await WaitForLineAsync(probe, $"recorded {acknowledged}");
            KillHard(probe); // lands at an arbitrary point of a later round, possibly mid-commit
        }
        var options = new PrivacyLedgerOptions(epsilonMax: 1e6, delta: 1e-5);
        using (var store = LiteDbPrivacyLedgerStore.Open(DbPath, options))
        {
            foreach (var id in new[] { "v0", "v1" })
            {
                var state = store.Get(id);
                Assert.True(state.Participations >= acknowledged, $"{id}: {state.Participations} < {acknowledged}");
                Assert.Equal(Enumerable.Range(1, state.Participations).Select(r => (long)r), state.Rounds);
                // A tolerance, not rounding to 12 places: the ledger's sum and the closed form can differ in the last bits, and
                // 45.864243283868817 and 45.864243283868447 rounded apart in one rehearsal. One participation more or less moves ε by about 3.
                Assert.Equal(RdpAccountant.GetEpsilon(1.0, 4.0, state.Participations, 1e-5).Epsilon, state.Epsilon, 1e-9);
            }
        }

        // And the ledger keeps working after the crash: a second run continues where the first stopped.
        using (var probe = StartProbe(DbPath, "2", "2", "exit"))
        {
            string all = await probe.StandardOutput.ReadToEndAsync();
            await probe.WaitForExitAsync();
            Assert.Equal(0, probe.ExitCode);
            Assert.Contains("recorded", all);
        }
    }
}
