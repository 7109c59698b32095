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
            BenchIngestCommand.Create(),
            BenchNoiseCommand.Create(),
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

    /// <summary>Exit codes (documented in the README): sysexits.h's EX_USAGE is 64, but 2 is what shells and System.CommandLine use for usage.</summary>
    internal static class ExitCodes
    {
        /// <summary>The command did what was asked.</summary>
        public const int Ok = 0;

        /// <summary>The command failed while running (a port in use, a broker that refused, an unexpected error).</summary>
        public const int Failure = 1;

        /// <summary>The command line is wrong: an unknown option, a missing or malformed value.</summary>
        public const int Usage = 2;

        /// <summary>Settings or files the command was pointed at are wrong or missing (sysexits.h EX_CONFIG).</summary>
        public const int Configuration = 78;
    }

    /// <summary>Runs the command line: one clear line on stderr for every expected error, exit codes per <see cref="ExitCodes"/>.</summary>
    public static int Run(string[] args, TextWriter? output = null, TextWriter? error = null)
    {
        error ??= Console.Error;
        var parse = Build().Parse(args);
        if (parse.Errors.Count > 0 && parse.Action is System.CommandLine.Invocation.ParseErrorAction)
        {
            foreach (var e in parse.Errors) error.WriteLine($"fleetlearn: {e.Message}");
            error.WriteLine($"Run '{string.Join(' ', ["fleetlearn", .. CommandPath(parse)])} --help' for the options.");
            return ExitCodes.Usage;
        }
        try
        {
            var configuration = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
            if (output is not null) configuration.Output = output;
            configuration.Error = error;
            return parse.Invoke(configuration);
        }
        catch (Exception e) when (ExitCodeFor(e) is { } code)
        {
            error.WriteLine($"fleetlearn: {e.Message}");
            return code;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("FLEETLEARN_DEBUG") != "1")
        {
            // Not one of the expected errors: still one line for the user; FLEETLEARN_DEBUG=1 shows the stack trace.
            error.WriteLine($"fleetlearn: unexpected error ({e.GetType().Name}): {e.Message} (FLEETLEARN_DEBUG=1 shows where)");
            return ExitCodes.Failure;
        }
    }

    private static IEnumerable<string> CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r is not null && r.Command is not RootCommand; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Insert(0, r.Command.Name);
        return names;
    }

    /// <summary>The exit code of an expected error, or null for one the user cannot act on from its message alone.</summary>
    internal static int? ExitCodeFor(Exception e) => e switch
    {
        CliConfigurationException or Perception.Datasets.DatasetNotFoundException or Microsoft.Extensions.Options.OptionsValidationException
            or InvalidDataException or UnauthorizedAccessException => ExitCodes.Configuration,
        ArgumentException or FormatException or FileNotFoundException or DirectoryNotFoundException or Perception.Datasets.IdxFormatException
            or Core.Model.CheckpointFormatException or Perception.Onnx.OnnxModelException or Perception.Features.FrameDecodeException => ExitCodes.Usage,
        InvalidOperationException or CliFailureException => ExitCodes.Failure,
        _ => null,
    };
}

/// <summary>Settings (appsettings, --Section:Key, environment, files they name) that are wrong or missing: exit 78.</summary>
internal sealed class CliConfigurationException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>An expected failure while running (a port in use, say): one line, exit 1.</summary>
internal sealed class CliFailureException(string message, Exception? inner = null) : Exception(message, inner);
