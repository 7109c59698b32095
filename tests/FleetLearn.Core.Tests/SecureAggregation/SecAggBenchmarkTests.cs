using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

public sealed class SecAggBenchmarkTests
{
    [Theory]
    [InlineData(null)]
    [InlineData(4)]
    public void Run_SmallRound_VerifiesSumAndReportsFigures(int? neighbors)
    {
        var lines = new List<string>();

        var r = SecAggBenchmark.Run(clients: 12, dim: 100, dropout: 0.25, neighbors: neighbors, seed: 3, progress: new SyncProgress(lines.Add));

        Assert.Equal(3, r.Dropped);
        Assert.Equal(neighbors, r.Neighbors);
        Assert.True(r.ClientSeconds > 0 && r.ServerSeconds > 0);
        Assert.True(r.Expansion > 1, $"expansion {r.Expansion}");
        Assert.Equal(r.BytesPerClient / 400, r.Expansion, 12);
        Assert.Contains(lines, l => l.StartsWith("done: sum verified bit for bit", StringComparison.Ordinal));
    }

    private sealed class SyncProgress(Action<string> report) : IProgress<string>
    {
        public void Report(string value) => report(value);
    }
}
