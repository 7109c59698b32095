using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace FleetLearn.Cli.Commands;

/// <summary>Runs a host for a command; invalid settings become one clear configuration error (exit 78).</summary>
internal static class HostRunner
{
    /// <summary>Builds and runs the host until Ctrl-C (or the worker stops it); returns the process exit code.</summary>
    public static async Task<int> RunAsync(HostApplicationBuilder builder, CancellationToken cancellationToken)
    {
        using var host = builder.Build();
        List<BackgroundService> workers;
        try
        {
            // Resolved now (RunAsync disposes the service provider); constructing them may already validate options.
            workers = [.. host.Services.GetServices<IHostedService>().OfType<BackgroundService>()];
            await host.RunAsync(cancellationToken);
        }
        catch (OptionsValidationException e)
        {
            throw new CliConfigurationException(string.Join(" ", e.Failures), e);
        }
        catch (AggregateException e) when (e.InnerExceptions.All(i => i is OptionsValidationException))
        {
            throw new CliConfigurationException(string.Join(" ", e.InnerExceptions.SelectMany(i => ((OptionsValidationException)i).Failures)), e);
        }
        // A failed worker stops the host (BackgroundServiceExceptionBehavior.StopHost), which logs the exception, but
        // RunAsync still completes normally in .NET 10 (dotnet/runtime#67146): report the failure in the exit code.
        return workers.Any(w => w.ExecuteTask?.IsFaulted == true) ? 1 : 0;
    }
}
