using System.CommandLine;
using FleetLearn.Cli.Commands;

namespace FleetLearn.Cli;

/// <summary>The <c>fleetlearn</c> command: one sub-command per file under Commands/.</summary>
internal static class FleetLearnCommand
{
    public static RootCommand Build()
    {
        var bench = new Command("bench", "Benchmarks (report ratios against a peer measured in the same run).")
        {
            BenchTrainCommand.Create(),
            BenchAggregateCommand.Create(),
            BenchSecAggCommand.Create(),
            BenchExtractCommand.Create(),
        };
        var root = new RootCommand("FleetLearn: federated learning for vehicle fleets.")
        {
            SimulateCommand.Create(),
            TrainCommand.Create(),
            PrivacyCommand.Create(),
            AuditCommand.Create(),
            ExportOnnxCommand.Create(),
            BrokerCommand.Create(),
            AggregatorCommand.Create(),
            AgentCommand.Create(),
            IngestCommand.Create(),
            bench,
        };
        return root;
    }

    /// <summary>Runs the command line; expected user errors print one clear line and exit 2.</summary>
    public static int Run(string[] args)
    {
        var parse = Build().Parse(args);
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e) when (IsUserError(e))
        {
            Console.Error.WriteLine($"fleetlearn: {e.Message}");
            return 2;
        }
    }

    private static bool IsUserError(Exception e) => e is ArgumentException or FormatException or FileNotFoundException
        or InvalidOperationException or Perception.Datasets.DatasetNotFoundException or Perception.Datasets.IdxFormatException
        or Core.Model.CheckpointFormatException or Perception.Onnx.OnnxModelException or Perception.Features.FrameDecodeException;
}
