using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FleetLearn.Cli.Commands;

namespace FleetLearn.Cli.Tests.Commands;

public sealed class AuditAttacksCommandTests
{
    [Fact]
    public void AuditAttacks_Json_OneObjectPerAttack_AllRefused()
    {
        var root = new RootCommand("test") { AuditCommand.Create() };
        var output = new StringWriter(CultureInfo.InvariantCulture);
        int exit = root.Parse(["audit", "attacks", "--json"]).Invoke(new InvocationConfiguration { Output = output, Error = new StringWriter() });
        var lines = output.ToString().TrimEnd().Split('\n').Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var outcomes = lines.ToDictionary(l => l.GetProperty("attack").GetString()!, l => l.GetProperty("outcome").GetString()!);
        Assert.All(lines, l => Assert.False(string.IsNullOrEmpty(l.GetProperty("detail").GetString())));
        string[] attacks =
        [
            "weight-coordinate-forgery", "fewer-noise-shares-than-promised", "zero-noise-share-plan", "noise-before-quantization",
            "invented-vehicle", "inconsistent-dropouts", "unsigned-downlink", "seed-grinding", "guessed-secagg-plus-neighbours", "floating-point-eval-report",
            "averaged-eval-reports", "unnoised-unclipped-bit", "averaged-telemetry",
        ];
        Assert.Equal(attacks, outcomes.Keys.ToArray());
        foreach (var attack in attacks) Assert.Equal("refused", outcomes[attack]);
        // The inconsistent-dropouts attack is real: without the ConsistencyCheck round (honest-but-curious mode) it succeeds.
        Assert.Contains("in honest-but-curious mode (no ConsistencyCheck) 5 of 5 would", lines.Single(l => l.GetProperty("attack").GetString() == "inconsistent-dropouts").GetProperty("detail").GetString(), StringComparison.Ordinal);
        // Seed grinding is real too: on the seed ring the victim's shares would go to its colluders.
        Assert.Contains("with the seed ring (honest-but-curious mode) it would send 8, enough to rebuild its secrets", lines.Single(l => l.GetProperty("attack").GetString() == "seed-grinding").GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(0, exit);
    }
}
