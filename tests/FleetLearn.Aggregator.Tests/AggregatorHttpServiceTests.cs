using System.Net.Sockets;
using System.Net;
using System.Text.Json;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>The HTTP surface on a free loopback port, over an <see cref="AggregatorStatus"/> filled by hand.</summary>
public sealed class AggregatorHttpServiceTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly AggregatorStatus _status = new();
    private readonly HttpClient _client = new() { Timeout = Timeout };
    private AggregatorHttpService _service = null!;

    public async Task InitializeAsync()
    {
        var start = DateTimeOffset.UnixEpoch.AddDays(20_000);
        _status.Record(new RoundRecord(1, 0, 1, RoundStatus.Applied, 3, 3, 0.5, start, start.AddSeconds(5)), null);
        _status.Record(new RoundRecord(2, 1, null, RoundStatus.Aborted, 3, 1, double.NaN, start.AddSeconds(6), start.AddSeconds(9), "1 updates < minimum 2"), null);
        _status.Accepted();
        _status.Accepted();
        _status.Accepted();
        _status.Accepted();
        _status.Rejected(Core.Rounds.RejectReasons.Truncated);
        _status.ModelVersion = 1;
        _status.Running = true;
        _service = new AggregatorHttpService(Options.Create(new AggregatorOptions { HttpPort = FreePort() }), _status, NullLogger<AggregatorHttpService>.Instance);
        await _service.StartAsync(CancellationToken.None);
        string? prefix = await _service.Listening.WaitAsync(Timeout);
        _client.BaseAddress = new Uri(prefix!);
    }

    public async Task DisposeAsync()
    {
        await _service.StopAsync(CancellationToken.None);
        _service.Dispose();
        _client.Dispose();
    }

    [Fact]
    public async Task Healthz_WorkerRunning_OkText()
    {
        using var response = await _client.GetAsync(new Uri("healthz", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("ok", (await response.Content.ReadAsStringAsync()).Trim());
    }

    [Fact]
    public async Task Healthz_WorkerStopped_ServiceUnavailable()
    {
        _status.Running = false;
        using var response = await _client.GetAsync(new Uri("healthz", UriKind.Relative));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
    }

    [Fact]
    public async Task Metrics_TwoRounds_PrometheusTextWithCounters()
    {
        using var response = await _client.GetAsync(new Uri("metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        var lines = (await response.Content.ReadAsStringAsync()).Split('\n');
        Assert.Contains("fleetlearn_aggregator_rounds_total{status=\"applied\"} 1", lines);
        Assert.Contains("fleetlearn_aggregator_rounds_total{status=\"aborted\"} 1", lines);
        Assert.Contains("fleetlearn_aggregator_updates_accepted_total 4", lines);
        Assert.Contains("fleetlearn_aggregator_messages_rejected_total{reason=\"truncated\"} 1", lines);
        Assert.Contains("fleetlearn_aggregator_messages_rejected_total{reason=\"signature\"} 0", lines);
        Assert.Contains("fleetlearn_aggregator_model_version 1", lines);
        Assert.Contains("# TYPE fleetlearn_aggregator_rounds_total counter", lines);
        // Every non-empty line is a comment or "series value" (text exposition format).
        Assert.All(lines.Where(l => l.Length > 0 && !l.StartsWith('#')), l => Assert.True(double.TryParse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture, out _), l));
    }

    [Fact]
    public async Task Dashboard_TwoRounds_HtmlWithCountersChartAndRoundTable()
    {
        using var response = await _client.GetAsync(new Uri("/", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        string html = await response.Content.ReadAsStringAsync();
        Assert.Contains("FleetLearn aggregator", html, StringComparison.Ordinal);
        Assert.Contains("<svg", html, StringComparison.Ordinal); // participants per round
        Assert.Contains("truncated 1", html, StringComparison.Ordinal); // rejected by reason
        Assert.Contains("1 updates &lt; minimum 2", html, StringComparison.Ordinal); // the aborted round's note, escaped
        Assert.Contains("Applied", html, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApiRounds_TwoRounds_JsonArrayWithNullForNaNLoss()
    {
        using var response = await _client.GetAsync(new Uri("api/rounds", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var rounds = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(2, rounds.Count);
        Assert.Equal(1, rounds[0].GetProperty("round").GetInt64());
        Assert.Equal("applied", rounds[0].GetProperty("status").GetString());
        Assert.Equal(0.5, rounds[0].GetProperty("trainLoss").GetDouble());
        Assert.Equal("aborted", rounds[1].GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, rounds[1].GetProperty("trainLoss").ValueKind);
    }

    [Fact]
    public async Task Get_UnknownPath_NotFound()
    {
        using var response = await _client.GetAsync(new Uri("nope", UriKind.Relative));
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task ExecuteAsync_PortZero_ListensNowhere()
    {
        using var off = new AggregatorHttpService(Options.Create(new AggregatorOptions()), _status, NullLogger<AggregatorHttpService>.Instance);
        await off.StartAsync(CancellationToken.None);
        Assert.Null(await off.Listening.WaitAsync(Timeout));
        await off.StopAsync(CancellationToken.None);
    }

    /// <summary>A loopback port free a moment ago (HttpListener cannot bind port 0 itself).</summary>
    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        int port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }
}
