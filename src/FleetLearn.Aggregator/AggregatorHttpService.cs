using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator;

/// <summary>
/// Runs the aggregator's HTTP surface (<see cref="AggregatorHttp.MapFleetLearnAggregator"/>) on its own Kestrel server
/// inside any generic host, on <see cref="AggregatorOptions.HttpUrls"/> (off when there are none).
/// </summary>
/// <remarks>
/// Its own <see cref="WebApplication"/> keeps the surface optional and lets the worker live in a plain generic host
/// (the CLI, the simulator, someone else's service); an ASP.NET Core application can instead call
/// <see cref="AggregatorHttp.AddFleetLearnAggregatorHttp"/> and <see cref="AggregatorHttp.MapFleetLearnAggregator"/> itself.
/// </remarks>
internal sealed class AggregatorHttpService(
    IOptions<AggregatorOptions> options,
    AggregatorStatus status,
    ILoggerFactory loggerFactory,
    TimeProvider? time = null,
    IConfiguration? configuration = null) : IHostedService, IAsyncDisposable
{
    private readonly TaskCompletionSource<IReadOnlyList<Uri>> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private WebApplication? _app;

    /// <summary>Completes with the addresses Kestrel listens on once it accepts requests, or with an empty list when the surface is off.</summary>
    public Task<IReadOnlyList<Uri>> Listening => _listening.Task;

    /// <summary>Starts Kestrel on the configured addresses (does nothing when there are none).</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var settings = options.Value;
        var urls = settings.HttpUrls();
        if (urls.Count == 0)
        {
            _listening.TrySetResult([]);
            return;
        }
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = typeof(AggregatorHttpService).Assembly.GetName().Name });
        // The host's configuration (a Kestrel section with certificates for https:// addresses, for example) applies here too.
        if (configuration is not null) builder.Configuration.AddConfiguration(configuration);
        builder.WebHost.UseKestrelHttpsConfiguration();
        builder.WebHost.UseUrls([.. urls]);
        builder.Logging.ClearProviders();
        builder.Logging.AddProvider(new ForwardingLoggerProvider(loggerFactory));
        // One line per request at Information would drown the worker's own log under a polling dashboard.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        // An unhealthy check is the answer to a probe, not an error of this process: the probe's response says why.
        builder.Logging.AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks", LogLevel.Critical);
        // The host this service runs in owns Ctrl-C and SIGTERM; the web application stops when this service does.
        builder.Services.AddSingleton<IHostLifetime, PassiveLifetime>();
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(time ?? TimeProvider.System);
        builder.Services.AddFleetLearnAggregatorHttp(status);
        var app = builder.Build();
        app.MapFleetLearnAggregator();
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or System.Net.Sockets.SocketException)
        {
            await app.DisposeAsync().ConfigureAwait(false);
            var error = new InvalidOperationException($"aggregator: cannot listen on {string.Join(", ", urls)}: {e.Message} (Aggregator:Urls / Aggregator:HttpPort).", e);
            _listening.TrySetException(error);
            throw error;
        }
        _app = app;
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
        var bound = addresses.Select(a => new Uri(a.Replace("://[::]", "://localhost", StringComparison.Ordinal).Replace("://0.0.0.0", "://localhost", StringComparison.Ordinal))).ToArray();
        loggerFactory.CreateLogger<AggregatorHttpService>().LogInformation(
            "aggregator: HTTP surface on {Addresses} (/, /healthz, /metrics, /api/rounds, /api/vehicles, /openapi/v1.json){Token}.",
            string.Join(", ", addresses), string.IsNullOrEmpty(settings.HttpToken) ? "" : "; a bearer token is required beyond /healthz");
        _listening.TrySetResult(bound);
    }

    /// <summary>Stops Kestrel.</summary>
    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_app is { } app) await app.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Disposes the web application.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_app is { } app) await app.DisposeAsync().ConfigureAwait(false);
        _app = null;
    }

    /// <summary>A host lifetime that listens for no signal (the enclosing host's own lifetime does).</summary>
    private sealed class PassiveLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>Hands the web application's log to the host's logger factory without owning (disposing) it.</summary>
    private sealed class ForwardingLoggerProvider(ILoggerFactory target) : ILoggerProvider
    {
        public ILogger CreateLogger(string categoryName) => target.CreateLogger(categoryName);

        public void Dispose()
        {
        }
    }
}
