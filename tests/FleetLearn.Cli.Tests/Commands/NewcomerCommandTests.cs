using System.Globalization;
using Microsoft.Extensions.Configuration;

namespace FleetLearn.Cli.Tests.Commands;

/// <summary>What a new user meets: exit codes, refusals before any work, one-line errors naming the thing.</summary>
[Collection("Console")]
public sealed class NewcomerCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-newcomer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        int exit = FleetLearnCommand.Run(args, output, error);
        return (exit, output.ToString(), error.ToString());
    }

    [Fact]
    public void Run_UnknownOption_Usage2WithOneLineAndTheHelpHint()
    {
        var (exit, _, stderr) = Run("simulate", "--rounds", "2", "2");
        Assert.Equal(FleetLearnCommand.ExitCodes.Usage, exit);
        Assert.Contains("fleetlearn simulate --help", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_Version_PrintsItAndExits0()
    {
        var (exit, stdout, _) = Run("--version");
        Assert.Equal(0, exit);
        Assert.Matches(@"^\d+\.\d+\.\d+", stdout);
    }

    [Fact]
    public void Simulate_DataFolderWithoutData_Configuration78NamingIt()
    {
        string missing = Path.Combine(_dir, "nothing-here");
        var (exit, _, stderr) = Run("simulate", "--rounds", "1", "--data", missing);
        Assert.Equal(FleetLearnCommand.ExitCodes.Configuration, exit);
        Assert.Contains($"--data '{missing}'", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Simulate_OutIsAFile_RefusedBeforeTraining()
    {
        string file = Path.Combine(_dir, "results");
        File.WriteAllText(file, "keep me");
        var (exit, stdout, stderr) = Run("simulate", "--vehicles", "4", "--fraction", "1", "--rounds", "1", "--local-epochs", "1", "--out", file);
        Assert.Equal(FleetLearnCommand.ExitCodes.Usage, exit);
        Assert.Contains($"--out '{file}' is a file", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("round", stdout, StringComparison.Ordinal); // no round ran
        Assert.Equal("keep me", File.ReadAllText(file));
    }

    [Fact]
    public void Train_NegativeLimitOrOutFile_RefusedBeforeTraining()
    {
        Assert.Equal(FleetLearnCommand.ExitCodes.Usage, Run("train", "--limit", "-5").Exit);
        string file = Path.Combine(_dir, "model");
        File.WriteAllText(file, "x");
        var (exit, stdout, _) = Run("train", "--epochs", "1", "--limit", "100", "--out", file);
        Assert.Equal(FleetLearnCommand.ExitCodes.Usage, exit);
        Assert.DoesNotContain("epoch", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void ExportOnnx_OutIsAFolder_RefusedAndNothingLeftBehind()
    {
        var (exit, _, stderr) = Run("export-onnx", "--checkpoint", Path.Combine(_dir, "missing.ckpt"), "--out", _dir);
        Assert.Equal(FleetLearnCommand.ExitCodes.Usage, exit);
        Assert.Contains("is a folder", stderr, StringComparison.Ordinal);
        Assert.False(Directory.Exists(_dir + ".tmp") || File.Exists(_dir + ".tmp"));
    }

    [Fact]
    public void ReplaceRun_FolderOfSomethingElse_Refused_PreviousRunReplaced()
    {
        string other = Path.Combine(_dir, "photos");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "holiday.jpg"), "x");
        Assert.Throws<ArgumentException>(() => CliOutput.ReplaceRun(other));
        Assert.True(File.Exists(Path.Combine(other, "holiday.jpg")));

        string run = Path.Combine(_dir, "run");
        Directory.CreateDirectory(Path.Combine(run, "mqtt", "agents"));
        File.WriteAllText(Path.Combine(run, "rounds.csv"), "round");
        CliOutput.ReplaceRun(run);
        Assert.Empty(Directory.EnumerateFileSystemEntries(run));
    }

    [Fact]
    public void Agent_AggregatorKeyMissing_Configuration78NamingTheFile()
    {
        string key = Path.Combine(_dir, "aggregator-signing.pub.pem");
        var (exit, _, stderr) = Run("agent", "--vehicles", "4", "--index", "0", $"--Agent:AggregatorPublicKey={key}", $"--Agent:DatabasePath={Path.Combine(_dir, "car-0.db")}");
        Assert.Equal(FleetLearnCommand.ExitCodes.Configuration, exit);
        Assert.Contains(key, stderr, StringComparison.Ordinal);
        Assert.Contains("Start the aggregator first", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void CheckCertificates_VehicleWithoutCertificate_NamedWithTheCommandThatMakesIt()
    {
        File.WriteAllText(Path.Combine(_dir, "ca.crt"), "x");
        foreach (var id in new[] { "aggregator", "vehicle-0", "vehicle-1" })
        {
            File.WriteAllText(Path.Combine(_dir, $"{id}.crt"), "x");
            File.WriteAllText(Path.Combine(_dir, $"{id}.key"), "x");
        }
        FleetLearn.Cli.Commands.SimulateCommand.CheckCertificates("mqtts://127.0.0.1:8883", _dir, 2);
        var e = Assert.Throws<CliConfigurationException>(() => FleetLearn.Cli.Commands.SimulateCommand.CheckCertificates("mqtts://127.0.0.1:8883", _dir, 4));
        Assert.Contains("vehicle-2.crt", e.Message, StringComparison.Ordinal);
        Assert.Contains($"make-dev-ca.sh {_dir} vehicle-2 vehicle-3", e.Message, StringComparison.Ordinal);
        FleetLearn.Cli.Commands.SimulateCommand.CheckCertificates("embedded", null, 100); // nothing to check without TLS
    }

    [Theory]
    [InlineData(10, 1.0, 199_210, true)]
    [InlineData(20, 1.0, 199_210, true)]
    [InlineData(50, 1.0, 199_210, false)]
    [InlineData(4, 1.0, 25_450, true)]
    [InlineData(4, 0.1, 25_450, false)]
    public void DpSignalCheck_SmallCohortLargeNoise_Warns(int cohort, double sigma, int dimension, bool warns)
    {
        var warning = DpSignalCheck.Warning(cohort, sigma, 1.0, dimension);
        Assert.Equal(warns, warning is not null);
        if (warning is not null) Assert.Contains($"at least {DpSignalCheck.CohortFor(DpSignalCheck.Minimum, sigma, dimension)}", warning, StringComparison.Ordinal);
    }

    [Fact]
    public void Aggregator_DpOnFourVehicles_WarnsNamingItsSetting()
    {
        var configuration = new Microsoft.Extensions.Configuration.ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Aggregator:CohortSize"] = "4", ["Aggregator:Privacy"] = "distributed", ["Aggregator:Model"] = "784-32-10", ["Aggregator:ClipNorm"] = "1",
        }).Build();
        Assert.Contains("Aggregator:NoiseMultiplier", FleetLearn.Cli.Commands.AggregatorCommand.DpWarning(configuration), StringComparison.Ordinal);
        configuration["Aggregator:NoiseMultiplier"] = "0.2";
        Assert.Null(FleetLearn.Cli.Commands.AggregatorCommand.DpWarning(configuration));
        configuration["Aggregator:Privacy"] = "off";
        configuration["Aggregator:NoiseMultiplier"] = "1";
        Assert.Null(FleetLearn.Cli.Commands.AggregatorCommand.DpWarning(configuration));
    }

    [Fact]
    public void Simulate_DistributedDpOnATinyCohort_WarnsBeforeTheRun()
    {
        var (exit, stdout, stderr) = Run("simulate", "--vehicles", "4", "--fraction", "1", "--rounds", "1", "--local-epochs", "1", "--dp", "distributed", "--json");
        Assert.Equal(0, exit);
        Assert.Contains("DP noise will likely swamp the signal", stderr, StringComparison.Ordinal);
        Assert.DoesNotContain("warning", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void SimulateMqtt_Json_StdoutHoldsOnlyJsonAndANormalRunLogsNoWarning()
    {
        var stdout = new StringWriter(CultureInfo.InvariantCulture);
        var stderr = new StringWriter(CultureInfo.InvariantCulture);
        var (savedOut, savedError) = (Console.Out, Console.Error);
        Console.SetOut(stdout); // loggers write to the process's console: catch anything that lands on stdout
        Console.SetError(stderr);
        int exit;
        try
        {
            exit = FleetLearnCommand.Run(["simulate", "--transport", "mqtt", "--vehicles", "4", "--cohort", "4", "--rounds", "1", "--local-epochs", "1",
                "--model", "784-16-10", "--json", "--verbose-workers"], stdout, stderr);
        }
        finally
        {
            Console.SetOut(savedOut);
            Console.SetError(savedError);
        }
        Assert.True(exit == 0, stderr.ToString());
        var lines = stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length); // one round object, one summary
        Assert.All(lines, l => Assert.StartsWith("{", l, StringComparison.Ordinal));
        Assert.Contains("info: ", stderr.ToString(), StringComparison.Ordinal); // the workers' logs went to stderr
        Assert.DoesNotContain("warn: ", stderr.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Broker_PortInUse_Failure1WithOneLineNamingThePort()
    {
        using var holder = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        holder.Start();
        int port = ((System.Net.IPEndPoint)holder.LocalEndpoint).Port;
        string? saved = Environment.GetEnvironmentVariable("FLEETLEARN_AGGREGATOR_PASSWORD");
        Environment.SetEnvironmentVariable("FLEETLEARN_AGGREGATOR_PASSWORD", "secret");
        try
        {
            var (exit, _, stderr) = Run("broker", "--port", port.ToString(CultureInfo.InvariantCulture), "--retained-store", "");
            Assert.Equal(FleetLearnCommand.ExitCodes.Failure, exit);
            Assert.Contains($"port {port} is already in use", stderr, StringComparison.Ordinal);
            Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries), l => l.StartsWith("fleetlearn:", StringComparison.Ordinal));
        }
        finally
        {
            Environment.SetEnvironmentVariable("FLEETLEARN_AGGREGATOR_PASSWORD", saved);
        }
    }
}
