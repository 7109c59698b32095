using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FleetLearn.Cli.Commands;
using FleetLearn.Core.Privacy;

namespace FleetLearn.Cli.Tests.Commands;

public sealed class PrivacyCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var root = new RootCommand("test") { PrivacyCommand.Create() };
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        int exit = root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exit, output.ToString(), error.ToString());
    }

    private static JsonElement LastLineJson(string stdout)
        => JsonDocument.Parse(stdout.TrimEnd().Split('\n')[^1]).RootElement;

    [Fact]
    public void Epsilon_Json_LastLineMatchesAccountant()
    {
        var (exit, stdout, stderr) = Run("privacy", "epsilon", "--q", "0.01", "--sigma", "1.1", "--steps", "1000", "--delta", "1e-5", "--json");
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        var expected = RdpAccountant.GetEpsilon(0.01, 1.1, 1000, 1e-5);
        var json = LastLineJson(stdout);
        Assert.Equal(expected.Epsilon, json.GetProperty("epsilon").GetDouble());
        Assert.Equal(expected.Order, json.GetProperty("order").GetDouble());
        Assert.Contains("ε = ", stdout);
    }

    [Fact]
    public void Noise_Json_InvertsEpsilon()
    {
        var (exit, stdout, _) = Run("privacy", "noise", "--q", "0.01", "--epsilon", "2", "--steps", "1000", "--delta", "1e-5", "--json");
        Assert.Equal(0, exit);
        double sigma = LastLineJson(stdout).GetProperty("sigma").GetDouble();
        Assert.Equal(RdpAccountant.GetNoiseMultiplier(0.01, 2, 1000, 1e-5), sigma);
        Assert.True(RdpAccountant.GetEpsilon(0.01, sigma, 1000, 1e-5).Epsilon <= 2);
    }

    [Fact]
    public void Epsilon_WithoutJson_PrintsOnlyHumanReadableLines()
    {
        var (exit, stdout, _) = Run("privacy", "epsilon", "--q", "1", "--sigma", "10", "--steps", "1", "--delta", "1e-5");
        Assert.Equal(0, exit);
        Assert.DoesNotContain("{", stdout);
    }

    [Fact]
    public void Epsilon_ClassicConversion_IsLarger()
    {
        var improved = LastLineJson(Run("privacy", "epsilon", "--q", "0.01", "--sigma", "1", "--steps", "100", "--delta", "1e-5", "--json").Out);
        var classic = LastLineJson(Run("privacy", "epsilon", "--q", "0.01", "--sigma", "1", "--steps", "100", "--delta", "1e-5", "--conversion", "Classic", "--json").Out);
        Assert.True(classic.GetProperty("epsilon").GetDouble() > improved.GetProperty("epsilon").GetDouble());
    }

    [Theory]
    [InlineData("--q", "0", "--q must lie in (0, 1]")]
    [InlineData("--q", "1.5", "--q must lie in (0, 1]")]
    [InlineData("--sigma", "0", "--sigma must be a positive number")]
    [InlineData("--sigma", "-2", "--sigma must be a positive number")]
    [InlineData("--delta", "0", "--delta must lie in (0, 1)")]
    [InlineData("--delta", "1", "--delta must lie in (0, 1)")]
    [InlineData("--steps", "0", "--steps must be at least 1")]
    public void Epsilon_BadInput_ClearErrorAndNonZeroExit(string option, string value, string message)
    {
        var args = new Dictionary<string, string> { ["--q"] = "0.01", ["--sigma"] = "1", ["--steps"] = "10", ["--delta"] = "1e-5" };
        args[option] = value;
        var (exit, _, stderr) = Run(["privacy", "epsilon", .. args.SelectMany(kv => new[] { kv.Key, kv.Value })]);
        Assert.NotEqual(0, exit);
        Assert.Contains(message, stderr);
    }

    [Fact]
    public void Noise_BadEpsilon_ClearErrorAndNonZeroExit()
    {
        var (exit, _, stderr) = Run("privacy", "noise", "--q", "0.01", "--epsilon", "-1", "--steps", "10", "--delta", "1e-5");
        Assert.NotEqual(0, exit);
        Assert.Contains("--epsilon must be a positive number", stderr);
    }

    [Fact]
    public void Epsilon_MissingOption_NonZeroExit()
    {
        var (exit, _, stderr) = Run("privacy", "epsilon", "--q", "0.01", "--steps", "10", "--delta", "1e-5");
        Assert.NotEqual(0, exit);
        Assert.Contains("--sigma", stderr);
    }

    [Fact]
    public void SecAggParams_Issue13Acceptance_JsonHasKTAndFailureBelowTwoToMinus40()
    {
        var (exit, stdout, stderr) = Run("privacy", "secagg-params", "--vehicles", "1000", "--colluders", "0.05", "--dropout", "0.1", "--json");
        Assert.Equal(0, exit);
        Assert.Equal("", stderr);
        var json = LastLineJson(stdout);
        var expected = FleetLearn.Core.SecureAggregation.SecAggPlusParameters.Derive(1000, 0.05, 0.1);
        Assert.Equal(expected.Neighbors, json.GetProperty("neighbors").GetInt32());
        Assert.Equal(expected.Threshold, json.GetProperty("threshold").GetInt32());
        Assert.True(json.GetProperty("failure_log2").GetDouble() <= -40);
        Assert.True(expected.Neighbors < 100);
        Assert.Equal(["neighbors", "threshold", "failure_log2"], json.EnumerateObject().Select(p => p.Name));
    }

    [Theory]
    [InlineData("--vehicles", "2", "--colluders", "0.05", "--dropout", "0.1", "--vehicles must be within 3..")]
    [InlineData("--vehicles", "100", "--colluders", "1.5", "--dropout", "0.1", "--colluders must lie in [0, 1)")]
    [InlineData("--vehicles", "100", "--colluders", "0.6", "--dropout", "0.5", "must be below 1")]
    public void SecAggParams_BadInput_ClearErrorNamingTheOption(string a, string av, string b, string bv, string c, string cv, string message)
    {
        var (exit, _, stderr) = Run("privacy", "secagg-params", a, av, b, bv, c, cv);
        Assert.NotEqual(0, exit);
        Assert.Contains(message, stderr, StringComparison.Ordinal);
    }
}
