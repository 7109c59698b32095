using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using FleetLearn.Core.Compression;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Cli.Tests.Commands;

[Collection("Console")]
public sealed class SimulateCodecCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        int exit = FleetLearnCommand.Build().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        return (exit, output.ToString(), error.ToString());
    }

    private static readonly string[] Small = ["simulate", "--vehicles", "20", "--fraction", "0.2", "--rounds", "1", "--local-epochs", "1", "--model", "784-32-10", "--workers", "1", "--json"];

    [Fact]
    public void Simulate_CodecQ8_BytesUpIsTheExactEnvelopeSize()
    {
        var (exit, stdout, _) = Run([.. Small, "--codec", "q8"]);
        Assert.Equal(0, exit);
        var round = JsonDocument.Parse(stdout.Split('\n')[0]).RootElement;
        long perVehicle = UpdateEnvelope.HeaderBytes + (784 * 32 + 32 + 32 * 10 + 10);
        Assert.Equal(perVehicle, round.GetProperty("bytes_up_per_vehicle").GetInt64());
        Assert.Equal(4 * perVehicle, round.GetProperty("bytes_up").GetInt64());
    }

    [Fact]
    public void Simulate_SecAggPlus_ReportsAllProtocolBytes()
    {
        var (exit, stdout, _) = Run([.. Small, "--codec", "rot+q8", "--secagg", "plus", "--clip", "5"]);
        Assert.Equal(0, exit);
        var round = JsonDocument.Parse(stdout.Split('\n')[0]).RootElement;
        Assert.Equal(4, round.GetProperty("participants").GetInt32());
        long masked = SecAggCodec.HeaderBytes + 1 + 4 + BitPacking.PackedLength(32768 + 1, 10); // padded 25,450 → 32,768 coordinates + weight, m = 8 + ⌈log₂ 4⌉
        long perVehicle = round.GetProperty("bytes_up_per_vehicle").GetInt64();
        Assert.True(perVehicle > masked && perVehicle < masked + 2000, $"{perVehicle} vs masked input {masked}");
    }

    [Fact]
    public void Simulate_TopKWithSecAgg_ExitsWithTheConflict()
    {
        var error = new StringWriter(CultureInfo.InvariantCulture);
        var saved = Console.Error;
        Console.SetError(error);
        try
        {
            Assert.Equal(2, FleetLearnCommand.Run([.. Small, "--codec", "topk0.01+ef+q8", "--secagg", "plus", "--clip", "5"]));
        }
        finally
        {
            Console.SetError(saved);
        }
        Assert.Contains("top-k picks different coordinates", error.ToString(), StringComparison.Ordinal);
    }
}
