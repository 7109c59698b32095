using System.CommandLine;
using System.Globalization;
using FleetLearn.Cli.Commands;
using FleetLearn.Core.Federated;
using FleetLearn.Core.Training;

namespace FleetLearn.Cli.Tests.Commands;

/// <summary><c>fleetlearn aggregator</c> and <c>fleetlearn agent</c>: settings wiring and the agent's choice of rows.</summary>
[Collection("Console")]
public sealed class HostedCommandTests
{
    private static int Run(params string[] args)
    {
        var root = new RootCommand { AggregatorCommand.Create(), AgentCommand.Create() };
        using var output = new StringWriter(CultureInfo.InvariantCulture);
        using var error = new StringWriter(CultureInfo.InvariantCulture);
        return root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
    }

    private static LabeledData Data(int rows)
    {
        var labels = new byte[rows];
        for (int i = 0; i < rows; i++) labels[i] = (byte)(i * 7 % 10);
        return new LabeledData(new float[rows * 2], labels, 2, 10, "test");
    }

    [Fact]
    public void Aggregator_InvalidSettingOnCommandLine_ConfigurationErrorNamingIt()
    {
        var e = Assert.Throws<CliConfigurationException>(() => Run("aggregator", "--Aggregator:CohortSize=2", "--Aggregator:MinParticipants=3"));
        Assert.Contains("MinParticipants", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Broker_BindAllWithoutMutualTls_RefusedBeforeListening()
    {
        var root = new RootCommand { BrokerCommand.Create() };
        var config = new InvocationConfiguration { Output = TextWriter.Null, Error = TextWriter.Null, EnableDefaultExceptionHandler = false };
        var e = Assert.Throws<ArgumentException>(() => root.Parse(["broker", "--bind-all", "--port", "0", "--retained-store", ""]).Invoke(config));
        Assert.Contains("mutual TLS", e.Message, StringComparison.Ordinal);
        Assert.Contains("--bind-all", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Agent_IndexOutOfRange_ArgumentException()
    {
        var e = Assert.Throws<ArgumentException>(() => Run("agent", "--vehicles", "4", "--index", "4"));
        Assert.Contains("--index", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("iid")]
    [InlineData("shards")]
    [InlineData("dirichlet:0.5")]
    public void SelectRows_EachVehicle_TrainAndHoldoutSplitItsPartDisjointly(string partition)
    {
        var data = Data(1000);
        var scheme = PartitionScheme.Parse(partition);
        var parts = Partitioner.Split(data.Labels, 5, scheme, 3);
        for (int v = 0; v < 5; v++)
        {
            var set = AgentCommand.SelectRows(data, 5, v, scheme, 3, 0.1);
            var holdout = set.HoldoutRows ?? [];
            Assert.Equal((int)Math.Round(0.1 * parts[v].Length, MidpointRounding.AwayFromZero), holdout.Length);
            Assert.Empty(set.Rows.Intersect(holdout));
            Assert.Equal(parts[v], set.Rows.Concat(holdout).Order());
            Assert.Same(data, set.Data);
        }
    }

    [Fact]
    public void SelectRows_SameSeedTwice_SameRows()
    {
        var data = Data(500);
        var a = AgentCommand.SelectRows(data, 3, 1, new PartitionScheme.Iid(), 9, 0.2);
        var b = AgentCommand.SelectRows(data, 3, 1, new PartitionScheme.Iid(), 9, 0.2);
        Assert.Equal(a.Rows, b.Rows);
        Assert.Equal(a.HoldoutRows, b.HoldoutRows);
    }

    [Fact]
    public void SelectRows_ZeroHoldout_NoHoldoutRows()
    {
        var set = AgentCommand.SelectRows(Data(100), 2, 0, new PartitionScheme.Iid(), 1, 0);
        Assert.Null(set.HoldoutRows);
        Assert.Equal(50, set.Rows.Length);
    }

    [Theory]
    [InlineData(0, 0, 0.1)]
    [InlineData(2, -1, 0.1)]
    [InlineData(2, 0, 1.0)]
    [InlineData(2, 0, double.NaN)]
    public void SelectRows_BadArguments_ArgumentException(int vehicles, int index, double holdout) =>
        Assert.Throws<ArgumentException>(() => AgentCommand.SelectRows(Data(100), vehicles, index, new PartitionScheme.Iid(), 1, holdout));
}
