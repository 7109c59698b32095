using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace FleetLearn.Cli.Tests.Commands;

[Collection("Console")]
public sealed class AuditAndTrainCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        int exit = FleetLearnCommand.Build().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        return (exit, output.ToString(), error.ToString());
    }

    private static JsonElement LastLineJson(string stdout) => JsonDocument.Parse(stdout.TrimEnd().Split('\n')[^1]).RootElement;

    [Fact]
    public void AuditLeakage_RawUpdateGivesTheImageAway_ProtectionStopsIt()
    {
        var (exit, stdout, _) = Run("audit", "leakage", "--dp-clip", "1", "--noise-multiplier", "1", "--json");
        Assert.Equal(0, exit);
        var json = LastLineJson(stdout);
        Assert.True(json.GetProperty("raw_cosine").GetDouble() >= 0.99);
        Assert.True(json.GetProperty("protected_cosine").GetDouble() <= 0.3);
        // The attack on the cohort sum is no better than the cohort's mean image.
        Assert.True(json.GetProperty("cohort_cosine").GetDouble() < json.GetProperty("raw_cosine").GetDouble() - 0.2);
        Assert.True(json.GetProperty("cohort_cosine").GetDouble() <= json.GetProperty("cohort_mean_image_cosine").GetDouble());
    }

    [Fact]
    public void AuditPoisoning_SmallRunWithJsonAndOut_TableChartsAndOneJsonLine()
    {
        var dir = Directory.CreateTempSubdirectory("fleetlearn-poisoning-");
        try
        {
            var (exit, stdout, _) = Run("audit", "poisoning", "--model", "784-16-10", "--vehicles", "20", "--rows-per-vehicle", "50", "--cohort", "10",
                "--rounds", "3", "--test-rows", "300", "--attacks", "boost×100,sign-flip", "--fractions", "0.2", "--defences", "fedavg,multikrum",
                "--out", dir.FullName, "--json");
            Assert.Equal(0, exit);
            var json = LastLineJson(stdout);
            Assert.Equal(2, json.GetProperty("baselines").GetArrayLength());
            var results = json.GetProperty("results").EnumerateArray().ToArray();
            Assert.Equal(4, results.Length);
            Assert.All(results, r => Assert.InRange(r.GetProperty("clean_accuracy").GetDouble(), 0, 1));
            Assert.Contains(results, r => r.GetProperty("attack").GetString() == "boost×100" && r.GetProperty("defence").GetString() == "multikrum");
            Assert.Contains("| sign-flip | 20% (4) |", File.ReadAllText(Path.Combine(dir.FullName, "poisoning.md")), StringComparison.Ordinal);
            Assert.True(File.Exists(Path.Combine(dir.FullName, "poisoning-clean.svg")));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void AuditPoisoning_UnknownDefence_ArgumentExceptionNamingTheChoices()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => Run("audit", "poisoning", "--defences", "prayer"));
        Assert.Contains("multikrum", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Train_SmallRun_SameSeedTwice_IdenticalJsonAccuracyAndCheckpoint()
    {
        var dir = Directory.CreateTempSubdirectory("fleetlearn-train-");
        try
        {
            string[] Args(string sub) => ["train", "--backend", "cpu", "--epochs", "1", "--limit", "3000", "--seed", "3", "--json", "--out", Path.Combine(dir.FullName, sub)];
            var (exit1, out1, _) = Run(Args("a"));
            var (exit2, out2, _) = Run(Args("b"));
            Assert.Equal(0, exit1);
            Assert.Equal(0, exit2);
            var j1 = LastLineJson(out1);
            Assert.Equal(j1.GetProperty("test_accuracy").GetDouble(), LastLineJson(out2).GetProperty("test_accuracy").GetDouble());
            Assert.InRange(j1.GetProperty("test_accuracy").GetDouble(), 0.6, 1.0);
            Assert.True(j1.GetProperty("samples_per_second").GetDouble() > 0);
            Assert.StartsWith("cpu", j1.GetProperty("backend").GetString(), StringComparison.Ordinal);
            Assert.Equal(File.ReadAllBytes(Path.Combine(dir.FullName, "a", "model.ckpt")), File.ReadAllBytes(Path.Combine(dir.FullName, "b", "model.ckpt")));
            Assert.Contains("epoch   1/1", out1, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void Run_BadModelSpec_PrintsOneClearLineAndExits2()
    {
        var error = new StringWriter(CultureInfo.InvariantCulture);
        var saved = Console.Error;
        Console.SetError(error);
        try
        {
            int exit = FleetLearnCommand.Run(["train", "--model", "784-abc-10"]);
            Assert.Equal(2, exit);
        }
        finally
        {
            Console.SetError(saved);
        }
        Assert.Contains("'abc' is not a layer width", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Simulate_Json_EmitsOneObjectPerRoundThenSummary()
    {
        var (exit, stdout, _) = Run("simulate", "--vehicles", "20", "--fraction", "0.2", "--rounds", "2", "--local-epochs", "1", "--model", "784-32-10", "--workers", "1", "--target", "0.99", "--json");
        Assert.Equal(0, exit);
        var lines = stdout.TrimEnd().Split('\n');
        Assert.Equal(3, lines.Length);
        var round1 = JsonDocument.Parse(lines[0]).RootElement;
        foreach (var key in new[] { "round", "test_accuracy", "test_loss", "participants", "dropped", "bytes_up", "bytes_down", "seconds" })
            Assert.True(round1.TryGetProperty(key, out _), $"missing {key}");
        Assert.Equal(4, round1.GetProperty("participants").GetInt32());
        var summary = JsonDocument.Parse(lines[2]).RootElement;
        foreach (var key in new[] { "final_accuracy", "rounds", "seconds", "rounds_to_target" })
            Assert.True(summary.TryGetProperty(key, out _), $"missing {key}");
        Assert.Equal(JsonValueKind.Null, summary.GetProperty("rounds_to_target").ValueKind);
    }
}
