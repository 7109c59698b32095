using System.CommandLine;

namespace FleetLearn.Cli;

/// <summary>The <c>fleetlearn</c> command: one sub-command per file under Commands/.</summary>
internal static class FleetLearnCommand
{
    public static RootCommand Build()
    {
        var root = new RootCommand("FleetLearn: federated learning for vehicle fleets.");
        return root;
    }

    public static int Run(string[] args) => Build().Parse(args).Invoke();
}
