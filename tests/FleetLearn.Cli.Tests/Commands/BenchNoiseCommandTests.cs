using System.Text.Json;
using FleetLearn.Cli.Commands;

namespace FleetLearn.Cli.Tests.Commands;

/// <summary>Redirects Console.Out: every test class that does so must join the "Console" collection.</summary>
[Collection("Console")]
public sealed class BenchNoiseCommandTests
{
    [Fact]
    public void Invoke_TwoSigmasWithJson_OneLinePerSigmaWithTheTableFaster()
    {
        var stdout = new StringWriter();
        var oldOut = Console.Out;
        Console.SetOut(stdout);
        int rc;
        try
        {
            rc = BenchNoiseCommand.Create().Parse(["--sigma", "2,50", "--draws", "200000", "--json"]).Invoke();
        }
        finally
        {
            Console.SetOut(oldOut);
        }

        Assert.Equal(0, rc);
        var lines = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => l.StartsWith('{')).ToArray();
        Assert.Equal(2, lines.Length);
        foreach (var (line, sigma) in lines.Zip(new[] { 2.0, 50.0 }))
        {
            using var doc = JsonDocument.Parse(line);
            var r = doc.RootElement;
            Assert.Equal(sigma, r.GetProperty("sigma").GetDouble());
            Assert.Equal(200_000, r.GetProperty("draws").GetInt32());
            // The table does one word and a short search where the exact sampler runs nested Bernoulli loops.
            Assert.True(r.GetProperty("speedup").GetDouble() > 1, line);
        }
    }
}
