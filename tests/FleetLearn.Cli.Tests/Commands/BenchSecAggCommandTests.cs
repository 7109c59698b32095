using System.Text.Json;
using FleetLearn.Cli.Commands;

namespace FleetLearn.Cli.Tests.Commands;

/// <summary>Redirects Console.Out/Error: every test class that does so must join the "Console" collection.</summary>
[Collection("Console")]
public sealed class BenchSecAggCommandTests
{
    [Fact]
    public void Invoke_SmallRoundWithJson_LastStdoutLineIsTheFourFigures()
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        Console.SetOut(stdout);
        Console.SetError(stderr);
        int rc;
        try
        {
            rc = BenchSecAggCommand.Create().Parse(["--clients", "10", "--dim", "64", "--dropout", "0.2", "--neighbors", "4", "--seed", "2", "--json"]).Invoke();
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }

        Assert.Equal(0, rc);
        var last = stdout.ToString().TrimEnd().Split('\n')[^1];
        using var doc = JsonDocument.Parse(last);
        Assert.Equal(["client_seconds", "server_seconds", "bytes_per_client", "expansion"], doc.RootElement.EnumerateObject().Select(p => p.Name).ToArray());
        Assert.True(doc.RootElement.GetProperty("expansion").GetDouble() > 1);
        Assert.Contains("sum verified bit for bit", stderr.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Invoke_OddNeighbourCount_ExitCode2WithMessage()
    {
        var stderr = new StringWriter();
        var oldErr = Console.Error;
        Console.SetError(stderr);
        int rc;
        try
        {
            rc = BenchSecAggCommand.Create().Parse(["--clients", "10", "--dim", "4", "--dropout", "0", "--neighbors", "3"]).Invoke();
        }
        finally
        {
            Console.SetError(oldErr);
        }

        Assert.Equal(2, rc);
        Assert.Contains("k = 3 must be even", stderr.ToString(), StringComparison.Ordinal);
    }
}
