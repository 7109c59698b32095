using System.Globalization;
using System.Net;
using System.Text.Json.Serialization;
using System.Text.Json;
using System.Text;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator;

/// <summary>
/// The aggregator's small HTTP surface on <see cref="AggregatorOptions.HttpPort"/> (off when 0): <c>/healthz</c>,
/// <c>/metrics</c> (Prometheus text exposition format 0.0.4) and <c>/api/rounds</c> (JSON). BCL
/// <see cref="HttpListener"/>, so no web stack is pulled in; requests are served one at a time (they are tiny).
/// </summary>
public sealed class AggregatorHttpService(
    IOptions<AggregatorOptions> options,
    AggregatorStatus status,
    ILogger<AggregatorHttpService> logger) : BackgroundService
{
    /// <summary>Content type of the Prometheus text exposition format.</summary>
    public const string MetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter(JsonNamingPolicy.CamelCase) } };
    private readonly TaskCompletionSource<string?> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with the listener's prefix once it accepts requests, or with null when the surface is off.</summary>
    public Task<string?> Listening => _listening.Task;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (settings.HttpPort == 0)
        {
            _listening.TrySetResult(null);
            return;
        }
        string prefix = string.Create(CultureInfo.InvariantCulture, $"http://{settings.HttpHost}:{settings.HttpPort}/");
        using var listener = new HttpListener();
        listener.Prefixes.Add(prefix);
        try
        {
            listener.Start();
        }
        catch (HttpListenerException e)
        {
            _listening.TrySetException(e);
            throw new InvalidOperationException($"aggregator: cannot listen on {prefix}: {e.Message} (Aggregator:HttpPort / Aggregator:HttpHost).", e);
        }
        // Stop() makes a pending GetContextAsync fail, which ends the loop below.
        await using var stop = stoppingToken.Register(listener.Stop).ConfigureAwait(false);
        logger.LogInformation("aggregator: HTTP surface on {Prefix} (/healthz, /metrics, /api/rounds).", prefix);
        _listening.TrySetResult(prefix);
        while (!stoppingToken.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync().ConfigureAwait(false);
            }
            catch (Exception e) when ((e is HttpListenerException or ObjectDisposedException or InvalidOperationException) && stoppingToken.IsCancellationRequested)
            {
                break;
            }
            try
            {
                await RespondAsync(context, stoppingToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException)
            {
                // The client went away mid-response: nothing to do.
                logger.LogDebug(e, "aggregator: HTTP response to {Url} failed.", context.Request.Url);
            }
            finally
            {
                context.Response.Close();
            }
        }
    }

    private async Task RespondAsync(HttpListenerContext context, CancellationToken cancellationToken)
    {
        var request = context.Request;
        var response = context.Response;
        if (request.HttpMethod is not ("GET" or "HEAD"))
        {
            response.AddHeader("Allow", "GET, HEAD");
            await WriteAsync(response, 405, "text/plain; charset=utf-8", "method not allowed\n", cancellationToken).ConfigureAwait(false);
            return;
        }
        var (code, type, body) = request.Url?.AbsolutePath switch
        {
            "/healthz" => status.Running ? (200, "text/plain; charset=utf-8", "ok\n") : (503, "text/plain; charset=utf-8", "not running\n"),
            "/metrics" => (200, MetricsContentType, Metrics(status)),
            "/api/rounds" => (200, "application/json; charset=utf-8", JsonSerializer.Serialize(status.Rounds.Select(RoundJson.From), Json)),
            "/" => (200, "text/html; charset=utf-8", Dashboard(status)),
            _ => (404, "text/plain; charset=utf-8", "not found: try /, /healthz, /metrics or /api/rounds\n"),
        };
        await WriteAsync(response, code, type, request.HttpMethod == "HEAD" ? null : body, cancellationToken).ConfigureAwait(false);
    }

    private static async Task WriteAsync(HttpListenerResponse response, int code, string type, string? body, CancellationToken cancellationToken)
    {
        response.StatusCode = code;
        response.ContentType = type;
        response.Headers["Cache-Control"] = "no-store";
        var bytes = Encoding.UTF8.GetBytes(body ?? "");
        response.ContentLength64 = bytes.Length;
        if (bytes.Length > 0) await response.OutputStream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The dashboard page: what the worker is doing, the counters, a chart of participants per round and the round table
    /// (self-contained HTML with inline SVG; reload to refresh).
    /// </summary>
    internal static string Dashboard(AggregatorStatus status)
    {
        var rounds = status.Rounds;
        var byReason = status.RejectedByReason;
        var report = new Reporting.HtmlReport("FleetLearn aggregator")
            .AddSummary("state", status.Running ? "running" : "stopped")
            .AddSummary("now", status.Activity)
            .AddSummary("current round", status.CurrentRound)
            .AddSummary("model version", status.ModelVersion)
            .AddSummary("vehicles checked in", status.CheckedIn)
            .AddSummary("rounds applied / aborted", $"{rounds.Count(r => r.Status == RoundStatus.Applied)} / {rounds.Count(r => r.Status == RoundStatus.Aborted)}")
            .AddSummary("updates accepted / duplicate", $"{status.AcceptedUpdates} / {status.DuplicateUpdates}")
            .AddSummary("messages rejected", byReason.Count == 0 ? "0" : string.Join(", ", byReason.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}")))
            .AddSummary("bytes received / published", $"{status.BytesUp:N0} / {status.BytesDown:N0}")
            .AddSummary("largest ε of a vehicle", double.IsFinite(status.MaxVehicleEpsilon) ? status.MaxVehicleEpsilon.ToString("F3", CultureInfo.InvariantCulture) : "no DP");
        if (rounds.Count > 0)
        {
            var xs = rounds.Select(r => (double)r.Round).ToArray();
            report.AddSection("Participants per round").AddChart(new Reporting.LineChart
            {
                Title = "Cohort and participants",
                XLabel = "Round",
                YLabel = "Vehicles",
                Series =
                [
                    Reporting.ChartSeries.FromXY("selected", xs, rounds.Select(r => (double)r.CohortSize)),
                    Reporting.ChartSeries.FromXY("participants", xs, rounds.Select(r => (double)r.Participants)),
                ],
                YMin = 0,
            }, 800, 320);
        }
        report.AddSection("Rounds").AddTable(["round", "status", "model in", "model out", "cohort", "participants", "train loss", "started", "closed", "note"],
            rounds.OrderByDescending(r => r.Round).Select(r => new object?[]
            {
                r.Round, r.Status.ToString(), r.ModelVersionIn, r.ModelVersionOut, r.CohortSize, r.Participants,
                double.IsFinite(r.TrainLoss) ? Math.Round(r.TrainLoss, 4) : null, r.StartedAt.ToString("u", CultureInfo.InvariantCulture),
                r.ClosedAt?.ToString("u", CultureInfo.InvariantCulture), r.Note,
            }));
        return report.ToHtml();
    }

    /// <summary>The Prometheus text exposition (format 0.0.4) of <paramref name="status"/>.</summary>
    internal static string Metrics(AggregatorStatus status)
    {
        var rounds = status.Rounds;
        var text = new StringBuilder();
        Family(text, "fleetlearn_aggregator_rounds_total", "counter", "Rounds closed, by outcome (including earlier runs from the store).");
        Sample(text, "fleetlearn_aggregator_rounds_total{status=\"applied\"}", rounds.Count(r => r.Status == RoundStatus.Applied));
        Sample(text, "fleetlearn_aggregator_rounds_total{status=\"aborted\"}", rounds.Count(r => r.Status == RoundStatus.Aborted));
        Family(text, "fleetlearn_aggregator_updates_accepted_total", "counter", "Updates folded into a round since start.");
        Sample(text, "fleetlearn_aggregator_updates_accepted_total", status.AcceptedUpdates);
        Family(text, "fleetlearn_aggregator_updates_duplicate_total", "counter", "Resent or second updates recognised and not folded again.");
        Sample(text, "fleetlearn_aggregator_updates_duplicate_total", status.DuplicateUpdates);
        Family(text, "fleetlearn_aggregator_messages_rejected_total", "counter", "Malformed, late, forged or out-of-cohort messages, by reason.");
        var byReason = status.RejectedByReason;
        foreach (var reason in Core.Rounds.RejectReasons.All.Union(byReason.Keys.Order(StringComparer.Ordinal)))
            Sample(text, $"fleetlearn_aggregator_messages_rejected_total{{reason=\"{reason}\"}}", byReason.GetValueOrDefault(reason));
        Family(text, "fleetlearn_aggregator_bytes_received_total", "counter", "Bytes of vehicle messages received.");
        Sample(text, "fleetlearn_aggregator_bytes_received_total", status.BytesUp);
        Family(text, "fleetlearn_aggregator_bytes_sent_total", "counter", "Bytes published to vehicles (models, plans, secure-aggregation messages, acks).");
        Sample(text, "fleetlearn_aggregator_bytes_sent_total", status.BytesDown);
        if (double.IsFinite(status.MaxVehicleEpsilon))
        {
            Family(text, "fleetlearn_aggregator_vehicle_epsilon_max", "gauge", "Largest (ε, δ)-DP ε any vehicle has spent (aggregator's ledger).");
            text.Append("fleetlearn_aggregator_vehicle_epsilon_max ").Append(status.MaxVehicleEpsilon.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        Family(text, "fleetlearn_aggregator_model_version", "gauge", "Version of the current global model.");
        Sample(text, "fleetlearn_aggregator_model_version", status.ModelVersion);
        Family(text, "fleetlearn_aggregator_current_round", "gauge", "Round in progress (0 when none).");
        Sample(text, "fleetlearn_aggregator_current_round", status.CurrentRound);
        Family(text, "fleetlearn_aggregator_checked_in_vehicles", "gauge", "Vehicles checked in and available.");
        Sample(text, "fleetlearn_aggregator_checked_in_vehicles", status.CheckedIn);
        Family(text, "fleetlearn_aggregator_up", "gauge", "1 while the aggregator worker runs.");
        Sample(text, "fleetlearn_aggregator_up", status.Running ? 1 : 0);
        return text.ToString();

        static void Family(StringBuilder text, string name, string type, string help) =>
            text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n').Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');

        static void Sample(StringBuilder text, string series, long value) =>
            text.Append(series).Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
    }

    /// <summary>A round record as JSON (NaN loss as null: JSON has no NaN).</summary>
    private sealed record RoundJson(long Round, long ModelVersionIn, long? ModelVersionOut, RoundStatus Status, int CohortSize, int Participants,
        double? TrainLoss, DateTimeOffset StartedAt, DateTimeOffset? ClosedAt, string Note)
    {
        public static RoundJson From(RoundRecord r) => new(r.Round, r.ModelVersionIn, r.ModelVersionOut, r.Status, r.CohortSize, r.Participants,
            double.IsFinite(r.TrainLoss) ? r.TrainLoss : null, r.StartedAt, r.ClosedAt, r.Note);
    }
}
