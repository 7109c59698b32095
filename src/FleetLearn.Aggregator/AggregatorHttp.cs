using System.Reflection;
using System.Security.Claims;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using FleetLearn.Storage;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace FleetLearn.Aggregator;

/// <summary>The aggregator's HTTP surface as ASP.NET Core services and minimal-API endpoints.</summary>
internal static class AggregatorHttp
{
    /// <summary>Authentication scheme of the optional bearer token (<see cref="AggregatorOptions.HttpToken"/>).</summary>
    public const string TokenScheme = "Bearer";

    /// <summary>Tag of the health checks that make up readiness (<c>/healthz</c>).</summary>
    public const string ReadyTag = "ready";

    /// <summary>
    /// Health checks (worker, broker, store, round progress), the OpenAPI document, the Prometheus exporter over the meter
    /// <see cref="AggregatorStatus.MeterName"/>, JSON settings and the bearer-token scheme. Needs
    /// <see cref="IOptions{AggregatorOptions}"/> and a <see cref="TimeProvider"/> registered; <paramref name="status"/> is
    /// the worker's (registered here when given).
    /// </summary>
    public static IServiceCollection AddFleetLearnAggregatorHttp(this IServiceCollection services, AggregatorStatus? status = null)
    {
        if (status is not null) services.AddSingleton(status);
        services.AddHealthChecks()
            .AddCheck<WorkerHealthCheck>("worker", tags: [ReadyTag])
            .AddCheck<BrokerHealthCheck>("broker", tags: [ReadyTag])
            .AddCheck<StoreHealthCheck>("store", tags: [ReadyTag])
            .AddCheck<RoundProgressHealthCheck>("round", tags: [ReadyTag]);
        services.AddOpenApi(o => o.AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "FleetLearn aggregator";
            document.Info.Description = "Rounds, vehicles and the aggregator's state. With Aggregator:HttpToken set, every path but /healthz and the dashboard's files needs 'Authorization: Bearer <token>'.";
            return Task.CompletedTask;
        }));
        services.ConfigureHttpJsonOptions(o =>
        {
            o.SerializerOptions.Converters.Add(new JsonStringEnumConverter(JsonNamingPolicy.CamelCase));
            o.SerializerOptions.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        });
        services.AddOpenTelemetry().ConfigureResource(r => r.AddService("fleetlearn-aggregator")).WithMetrics(m => m.AddMeter(AggregatorStatus.MeterName).AddPrometheusExporter(o =>
        {
            o.ScopeInfoEnabled = false; // series keep their plain names (fleetlearn_aggregator_updates_accepted_total)
            o.ScrapeResponseCacheDurationMilliseconds = 0; // every scrape is current (tests and the dashboard read after a change)
        }));
        services.AddAuthentication(TokenScheme).AddScheme<AuthenticationSchemeOptions, TokenAuthenticationHandler>(TokenScheme, null);
        services.AddAuthorization();
        return services;
    }

    /// <summary>
    /// Maps <c>/</c> (the live dashboard), <c>/healthz</c> (readiness) and <c>/healthz/live</c> (liveness), <c>/metrics</c>
    /// (Prometheus), <c>/api/status</c>, <c>/api/rounds</c>, <c>/api/rounds/{n}</c>, <c>/api/vehicles</c>,
    /// <c>/charts/*.png</c> (server-rendered charts) and <c>/openapi/v1.json</c>.
    /// </summary>
    public static IEndpointRouteBuilder MapFleetLearnAggregator(this IEndpointRouteBuilder endpoints)
    {
        var options = endpoints.ServiceProvider.GetRequiredService<IOptions<AggregatorOptions>>().Value;
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = c => c.Tags.Contains(ReadyTag), ResponseWriter = WriteHealthAsync });
        endpoints.MapHealthChecks("/healthz/live", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteHealthAsync });
        foreach (var (path, file, type) in new[] { ("/", "index.html", "text/html; charset=utf-8"), ("/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"), ("/dashboard.css", "dashboard.css", "text/css; charset=utf-8") })
        {
            var bytes = DashboardAsset(file);
            endpoints.MapGet(path, () => Results.Bytes(bytes, type)).ExcludeFromDescription();
        }

        var secured = endpoints.MapGroup("");
        if (!string.IsNullOrEmpty(options.HttpToken)) secured.RequireAuthorization();
        secured.MapPrometheusScrapingEndpoint("/metrics");
        secured.MapOpenApi("/openapi/{documentName}.json");
        var api = secured.MapGroup("/api").WithTags("aggregator");
        api.MapGet("/status", (AggregatorStatus status, IOptions<AggregatorOptions> o, TimeProvider time) => TypedResults.Ok(StatusJson.From(status, o.Value, time.GetUtcNow())))
            .WithName("GetStatus").WithSummary("What the worker is doing: round, phase progress, counters, fleet accuracy per model version.");
        api.MapGet("/rounds", (AggregatorStatus status) => TypedResults.Ok(RoundJson.All(status)))
            .WithName("GetRounds").WithSummary("Every round record, oldest first, with the bytes it moved.");
        api.MapGet("/rounds/{n:long}", Results<Ok<RoundJson>, ProblemHttpResult> (long n, AggregatorStatus status) =>
                RoundJson.All(status).FirstOrDefault(r => r.Round == n) is { } round
                    ? TypedResults.Ok(round)
                    : TypedResults.Problem($"No round {n}: the aggregator has recorded rounds {Range(status)}.", statusCode: StatusCodes.Status404NotFound))
            .WithName("GetRound").WithSummary("One round record.");
        api.MapGet("/vehicles", (AggregatorStatus status) => TypedResults.Ok(status.Vehicles.Select(VehicleJson.From).ToArray()))
            .WithName("GetVehicles").WithSummary("Every vehicle heard of: participation, last seen, ε spent, rejections, last evaluation.");
        secured.MapGet("/charts/{name}.png", (string name, AggregatorStatus status) => Charts.Render(name, status) is { } png
                ? Results.Bytes(png, "image/png")
                : Results.Problem($"No chart '{name}': try accuracy or rounds.", statusCode: StatusCodes.Status404NotFound))
            .ExcludeFromDescription();
        return endpoints;
    }

    private static string Range(AggregatorStatus status) =>
        status.Rounds is { Count: > 0 } rounds ? $"{rounds.Min(r => r.Round)}–{rounds.Max(r => r.Round)}" : "none yet";

    /// <summary>One dashboard file from the assembly's resources.</summary>
    internal static byte[] DashboardAsset(string file)
    {
        using var stream = typeof(AggregatorHttp).Assembly.GetManifestResourceStream($"FleetLearn.Aggregator.Dashboard.{file}")
            ?? throw new InvalidOperationException($"The dashboard file {file} is not embedded in {typeof(AggregatorHttp).Assembly.GetName().Name}.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    private static Task WriteHealthAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        var body = new
        {
            status = report.Status.ToString(),
            checks = report.Entries.Select(e => new { name = e.Key, status = e.Value.Status.ToString(), description = e.Value.Description }),
        };
        return context.Response.WriteAsync(JsonSerializer.Serialize(body, HealthJson) + "\n");
    }

    private static readonly JsonSerializerOptions HealthJson = new(JsonSerializerDefaults.Web) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Checks <c>Authorization: Bearer …</c> against <see cref="AggregatorOptions.HttpToken"/> in constant time.</summary>
    private sealed class TokenAuthenticationHandler(
        IOptionsMonitor<AuthenticationSchemeOptions> schemeOptions,
        ILoggerFactory logger,
        UrlEncoder encoder,
        IOptions<AggregatorOptions> aggregator) : AuthenticationHandler<AuthenticationSchemeOptions>(schemeOptions, logger, encoder)
    {
        protected override Task<AuthenticateResult> HandleAuthenticateAsync()
        {
            string? token = aggregator.Value.HttpToken;
            if (string.IsNullOrEmpty(token)) return Task.FromResult(AuthenticateResult.NoResult());
            string header = Request.Headers.Authorization.ToString();
            if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)) return Task.FromResult(AuthenticateResult.NoResult());
            var given = Encoding.UTF8.GetBytes(header[7..].Trim());
            if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, Encoding.UTF8.GetBytes(token)))
                return Task.FromResult(AuthenticateResult.Fail("wrong bearer token"));
            var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, "operator")], TokenScheme);
            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), TokenScheme)));
        }

        protected override Task HandleChallengeAsync(AuthenticationProperties properties)
        {
            Response.StatusCode = StatusCodes.Status401Unauthorized;
            Response.Headers.WWWAuthenticate = "Bearer realm=\"fleetlearn-aggregator\"";
            return Response.WriteAsync("a bearer token is required (Authorization: Bearer <Aggregator:HttpToken>)\n");
        }
    }
}

/// <summary>A round record as JSON, with its traffic (NaN loss as null: JSON has no NaN).</summary>
internal sealed record RoundJson(long Round, long ModelVersionIn, long? ModelVersionOut, RoundStatus Status, int CohortSize, int Participants,
    double? TrainLoss, DateTimeOffset StartedAt, DateTimeOffset? ClosedAt, string Note, long? BytesReceived, long? BytesSent)
{
    /// <summary>Every round the status holds, oldest first.</summary>
    public static IReadOnlyList<RoundJson> All(AggregatorStatus status)
    {
        var traffic = status.Traffic.ToDictionary(t => t.Round);
        return [.. status.Rounds.OrderBy(r => r.Round).Select(r =>
        {
            var t = traffic.GetValueOrDefault(r.Round);
            return new RoundJson(r.Round, r.ModelVersionIn, r.ModelVersionOut, r.Status, r.CohortSize, r.Participants,
                double.IsFinite(r.TrainLoss) ? r.TrainLoss : null, r.StartedAt, r.ClosedAt, r.Note, t?.BytesReceived, t?.BytesSent);
        })];
    }
}

/// <summary>A vehicle as JSON.</summary>
internal sealed record VehicleJson(string Vehicle, int Participations, long? LastRound, DateTimeOffset? LastSeen, double? Epsilon,
    long Rejected, IReadOnlyDictionary<string, long> RejectedByReason, double? LastAccuracy, long? LastEvaluatedVersion, double? ClockSkewSeconds = null)
{
    /// <summary>From the status's view.</summary>
    public static VehicleJson From(VehicleView v) => new(v.Vehicle, v.Participations, v.LastRound, v.LastSeen, v.Epsilon,
        v.Rejections.Values.Sum(), v.Rejections, v.LastEvaluation?.Accuracy, v.LastEvaluation?.ModelVersion, v.ClockSkewSeconds);
}

/// <summary>The aggregator's state as JSON: what the dashboard polls.</summary>
internal sealed record StatusJson(bool Running, string Activity, long CurrentRound, long ModelVersion, int CheckedIn, PhaseProgress? Phase,
    int RoundsApplied, int RoundsAborted, long AcceptedUpdates, long DuplicateUpdates, long RejectedMessages, IReadOnlyDictionary<string, long> RejectedByReason,
    long BytesReceived, long BytesSent, string Privacy, double? MaxVehicleEpsilon, double? EpsilonBudget, double Delta,
    IReadOnlyList<FleetAccuracy> Accuracy, DateTimeOffset ServerTime)
{
    /// <summary>Snapshot of <paramref name="status"/> under <paramref name="options"/>, taken at <paramref name="now"/>.</summary>
    public static StatusJson From(AggregatorStatus status, AggregatorOptions options, DateTimeOffset now)
    {
        var rounds = status.Rounds;
        return new StatusJson(status.Running, status.Activity, status.CurrentRound, status.ModelVersion, status.CheckedIn, status.Phase,
            rounds.Count(r => r.Status == RoundStatus.Applied), rounds.Count(r => r.Status == RoundStatus.Aborted),
            status.AcceptedUpdates, status.DuplicateUpdates, status.RejectedMessages, status.RejectedByReason, status.BytesUp, status.BytesDown,
            options.Privacy, double.IsFinite(status.MaxVehicleEpsilon) ? status.MaxVehicleEpsilon : null, options.EpsilonBudget, options.Delta,
            status.Accuracy, now);
    }
}
