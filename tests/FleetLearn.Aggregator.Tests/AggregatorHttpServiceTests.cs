using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using FleetLearn.Core.Rounds;
using FleetLearn.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace FleetLearn.Aggregator.Tests;

/// <summary>The ASP.NET Core surface on a free loopback port, over an <see cref="AggregatorStatus"/> filled by hand.</summary>
// Every AggregatorStatus creates the meter "FleetLearn.Aggregator", and an OpenTelemetry MeterProvider subscribes by name:
// status objects of tests running in parallel would be read by each other's /metrics (one aggregator per process is the product's shape).
[Collection("Aggregator meter")]
public sealed class AggregatorHttpServiceTests : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly AggregatorStatus _status = new();
    private readonly HttpClient _client = new() { Timeout = Timeout };
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-http-").FullName;
    private AggregatorHttpService _service = null!;
    private int _port;

    public async Task InitializeAsync()
    {
        var start = DateTimeOffset.UnixEpoch.AddDays(20_000);
        _status.Record(new RoundRecord(1, 0, null, RoundStatus.Open, 3, 0, double.NaN, start, null), null);
        _status.Received(1000);
        _status.Sent(5000);
        _status.Record(new RoundRecord(1, 0, 1, RoundStatus.Applied, 3, 3, 0.5, start, start.AddSeconds(5)), null);
        _status.Record(new RoundRecord(2, 1, null, RoundStatus.Aborted, 3, 1, double.NaN, start.AddSeconds(6), start.AddSeconds(9), "1 updates < minimum 2"), null);
        for (int i = 0; i < 4; i++) _status.Accepted();
        _status.Rejected(Core.Rounds.RejectReasons.Truncated);
        _status.VehicleRejected("car-1", Core.Rounds.RejectReasons.Truncated);
        _status.VehicleParticipated("car-0", 1);
        _status.VehicleParticipated("car-1", 1);
        _status.VehicleEpsilon("car-0", 0.75);
        _status.RecordEvaluation("car-0", """{"vehicle":"car-0","model_version":1,"count":60,"accuracy":0.8,"noised":false}"""u8);
        _status.RecordEvaluation("car-1", """{"vehicle":"car-1","model_version":1,"count":20,"accuracy":0.6,"noised":true}"""u8);
        _status.ModelVersion = 1;
        _status.Running = true;
        _port = EmbeddedBrokerPort();
        _service = Start(new AggregatorOptions { HttpPort = _port, DatabasePath = Path.Combine(_dir, "agg.db") });
        await _service.StartAsync(CancellationToken.None);
        var addresses = await _service.Listening.WaitAsync(Timeout);
        Assert.NotEmpty(addresses);
        _client.BaseAddress = new Uri($"http://localhost:{_port}/");
    }

    public async Task DisposeAsync()
    {
        await _service.StopAsync(CancellationToken.None);
        await _service.DisposeAsync();
        _client.Dispose();
        _status.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private AggregatorHttpService Start(AggregatorOptions options) => new(Options.Create(options), _status, NullLoggerFactory.Instance);

    [Theory]
    [InlineData("localhost")]
    [InlineData("127.0.0.1")]
    public async Task Healthz_WorkerRunning_ReadyUnderBothLoopbackNames(string host)
    {
        using var response = await _client.GetAsync(new Uri($"http://{host}:{_port}/healthz"));
        string body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(body);
        Assert.Equal("Healthy", json.RootElement.GetProperty("status").GetString());
        var checks = json.RootElement.GetProperty("checks").EnumerateArray().Select(c => c.GetProperty("name").GetString()).ToHashSet();
        Assert.Equal(["worker", "broker", "store", "round"], checks);
    }

    [Fact]
    public async Task Healthz_WorkerStopped_ServiceUnavailableButAlive()
    {
        _status.Running = false;
        using var ready = await _client.GetAsync(new Uri("healthz", UriKind.Relative));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("worker not running", await ready.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        using var live = await _client.GetAsync(new Uri("healthz/live", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
    }

    [Fact]
    public async Task Healthz_BrokerDown_ServiceUnavailable()
    {
        _status.ReportBroker(false);
        using var response = await _client.GetAsync(new Uri("healthz", UriKind.Relative));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("not connected to the broker", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Metrics_TwoRounds_ValidPrometheusTextWithCounters()
    {
        using var response = await _client.GetAsync(new Uri("metrics", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        string text = await response.Content.ReadAsStringAsync();
        var series = PrometheusText.Parse(text);
        Assert.Equal(1, series["fleetlearn_aggregator_rounds_total{status=\"applied\"}"]);
        Assert.Equal(1, series["fleetlearn_aggregator_rounds_total{status=\"aborted\"}"]);
        Assert.Equal(4, series["fleetlearn_aggregator_updates_accepted_total"]);
        Assert.Equal(1, series["fleetlearn_aggregator_messages_rejected_total{reason=\"truncated\"}"]);
        Assert.Equal(1, series["fleetlearn_aggregator_model_version"]);
        Assert.Equal(0.75, series["fleetlearn_aggregator_vehicle_epsilon_max"]);
        Assert.Contains("# TYPE fleetlearn_aggregator_rounds_total counter", text.Split('\n'));
        // Prometheus's own checker, where Debian's prometheus package is installed (scripts/install-deps.sh installs it).
        if (File.Exists("/usr/bin/promtool"))
        {
            var (code, output) = await RunAsync("/usr/bin/promtool", "check metrics", text);
            // promtool exits 3 for lint findings only (names, units); 1 for text it cannot parse.
            Assert.True(code is 0 or 3, $"promtool check metrics: exit {code}: {output}");
            Assert.DoesNotContain("error", output, StringComparison.OrdinalIgnoreCase);
        }
    }

    [Fact]
    public async Task ApiRounds_TwoRounds_JsonWithNullForNaNLossAndTraffic()
    {
        using var json = JsonDocument.Parse(await _client.GetStringAsync(new Uri("api/rounds", UriKind.Relative)));
        var rounds = json.RootElement.EnumerateArray().ToList();
        Assert.Equal(2, rounds.Count);
        Assert.Equal(1, rounds[0].GetProperty("round").GetInt64());
        Assert.Equal("applied", rounds[0].GetProperty("status").GetString());
        Assert.Equal(0.5, rounds[0].GetProperty("trainLoss").GetDouble());
        Assert.Equal(1000, rounds[0].GetProperty("bytesReceived").GetInt64());
        Assert.Equal(5000, rounds[0].GetProperty("bytesSent").GetInt64());
        Assert.Equal("aborted", rounds[1].GetProperty("status").GetString());
        Assert.Equal(JsonValueKind.Null, rounds[1].GetProperty("trainLoss").ValueKind);
    }

    [Fact]
    public async Task ApiRound_ByNumber_OneRecordOr404Problem()
    {
        using var json = JsonDocument.Parse(await _client.GetStringAsync(new Uri("api/rounds/2", UriKind.Relative)));
        Assert.Equal("1 updates < minimum 2", json.RootElement.GetProperty("note").GetString());
        using var missing = await _client.GetAsync(new Uri("api/rounds/9", UriKind.Relative));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("application/problem+json", missing.Content.Headers.ContentType?.MediaType);
        Assert.Contains("rounds 1–2", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ApiVehicles_ParticipationEpsilonRejectionsEvaluation()
    {
        using var json = JsonDocument.Parse(await _client.GetStringAsync(new Uri("api/vehicles", UriKind.Relative)));
        var cars = json.RootElement.EnumerateArray().ToDictionary(v => v.GetProperty("vehicle").GetString()!);
        Assert.Equal(1, cars["car-0"].GetProperty("participations").GetInt32());
        Assert.Equal(0.75, cars["car-0"].GetProperty("epsilon").GetDouble());
        Assert.Equal(0.8, cars["car-0"].GetProperty("lastAccuracy").GetDouble());
        Assert.Equal(1, cars["car-1"].GetProperty("rejected").GetInt64());
        Assert.Equal(1, cars["car-1"].GetProperty("rejectedByReason").GetProperty("truncated").GetInt64());
        Assert.Equal(JsonValueKind.Null, cars["car-1"].GetProperty("epsilon").ValueKind);
    }

    [Fact]
    public async Task ApiStatus_FleetAccuracyIsFrameWeightedAndStatesNoise()
    {
        using var json = JsonDocument.Parse(await _client.GetStringAsync(new Uri("api/status", UriKind.Relative)));
        var accuracy = json.RootElement.GetProperty("accuracy").EnumerateArray().Single();
        Assert.Equal(1, accuracy.GetProperty("modelVersion").GetInt64());
        Assert.Equal((0.8 * 60 + 0.6 * 20) / 80, accuracy.GetProperty("accuracy").GetDouble(), 12);
        Assert.Equal(2, accuracy.GetProperty("reports").GetInt32());
        Assert.Equal(1, accuracy.GetProperty("noisedReports").GetInt32());
        Assert.Equal(80, accuracy.GetProperty("frames").GetInt64());
        Assert.Equal(0.1, accuracy.GetProperty("standardError").GetDouble(), 12); // sd 0.1414 / sqrt 2
        Assert.True(json.RootElement.GetProperty("running").GetBoolean());
    }

    [Fact]
    public async Task OpenApi_DocumentDescribesTheApi()
    {
        using var json = JsonDocument.Parse(await _client.GetStringAsync(new Uri("openapi/v1.json", UriKind.Relative)));
        Assert.StartsWith("3.", json.RootElement.GetProperty("openapi").GetString(), StringComparison.Ordinal);
        var paths = json.RootElement.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToHashSet();
        Assert.Superset(new HashSet<string> { "/api/status", "/api/rounds", "/api/rounds/{n}", "/api/vehicles" }, paths);
    }

    [Fact]
    public async Task Dashboard_ServedFromTheAssembly_NoExternalResources()
    {
        using var response = await _client.GetAsync(new Uri("/", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/html", response.Content.Headers.ContentType?.MediaType);
        string html = await response.Content.ReadAsStringAsync();
        Assert.Contains("FleetLearn aggregator", html, StringComparison.Ordinal);
        Assert.Contains("dashboard.js", html, StringComparison.Ordinal);
        foreach (var asset in new[] { html, await _client.GetStringAsync(new Uri("dashboard.js", UriKind.Relative)), await _client.GetStringAsync(new Uri("dashboard.css", UriKind.Relative)) })
            Assert.DoesNotMatch(@"(src|href)=""https?:|url\(https?:|import\s", asset);
    }

    [Fact]
    public async Task Charts_AccuracyAndRounds_Png()
    {
        foreach (var name in new[] { "accuracy", "rounds" })
        {
            var png = await _client.GetByteArrayAsync(new Uri($"charts/{name}.png", UriKind.Relative));
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        }
        using var missing = await _client.GetAsync(new Uri("charts/nope.png", UriKind.Relative));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task Get_UnknownPath_NotFound()
    {
        using var response = await _client.GetAsync(new Uri("nope", UriKind.Relative));
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    [Fact]
    public async Task Token_Set_ApiNeedsItHealthAndPageDoNot()
    {
        int port = EmbeddedBrokerPort();
        const string token = "0123456789abcdef-token";
        await using var secured = Start(new AggregatorOptions { Urls = $"http://127.0.0.1:{port}", HttpToken = token, DatabasePath = Path.Combine(_dir, "agg.db") });
        await secured.StartAsync(CancellationToken.None);
        await secured.Listening.WaitAsync(Timeout);
        var root = new Uri($"http://127.0.0.1:{port}/");
        foreach (var path in new[] { "api/status", "api/rounds", "api/vehicles", "metrics", "openapi/v1.json", "charts/rounds.png" })
        {
            using var refused = await _client.GetAsync(new Uri(root, path));
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal("Bearer", refused.Headers.WwwAuthenticate.Single().Scheme);
            using var wrong = new HttpRequestMessage(HttpMethod.Get, new Uri(root, path)) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", token + "x") } };
            using var wrongAnswer = await _client.SendAsync(wrong);
            Assert.Equal(HttpStatusCode.Unauthorized, wrongAnswer.StatusCode);
            using var right = new HttpRequestMessage(HttpMethod.Get, new Uri(root, path)) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", token) } };
            using var answer = await _client.SendAsync(right);
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }
        foreach (var path in new[] { "healthz", "healthz/live", "", "dashboard.js" })
        {
            using var open = await _client.GetAsync(new Uri(root, path));
            Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        }
        await secured.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task StartAsync_NoAddress_ListensNowhere()
    {
        await using var off = Start(new AggregatorOptions());
        await off.StartAsync(CancellationToken.None);
        Assert.Empty(await off.Listening.WaitAsync(Timeout));
        await off.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task StartAsync_PortTaken_ErrorNamesTheAddressAndSetting()
    {
        await using var second = Start(new AggregatorOptions { Urls = $"http://127.0.0.1:{_port}" });
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => second.StartAsync(CancellationToken.None));
        Assert.Contains($"http://127.0.0.1:{_port}", error.Message, StringComparison.Ordinal);
        Assert.Contains("Aggregator:Urls", error.Message, StringComparison.Ordinal);
    }

    private static int EmbeddedBrokerPort() => Transport.Mqtt.Broker.EmbeddedBroker.FreePort();

    private static async Task<(int Code, string Output)> RunAsync(string file, string arguments, string input)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        await process.StandardInput.WriteAsync(input);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeout);
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout + await stderr);
    }
}

/// <summary>A strict reader of the Prometheus text exposition format (0.0.4): every line a comment, blank, or <c>name{labels} value [timestamp]</c>.</summary>
internal static class PrometheusText
{
    private static readonly System.Text.RegularExpressions.Regex Sample = new(
        @"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*=""(?:[^""\\]|\\.)*"",?)*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)( -?[0-9]+)?$",
        System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>Series (name with labels, as printed) → value; throws on a line that is not the format.</summary>
    public static Dictionary<string, double> Parse(string text)
    {
        var result = new Dictionary<string, double>(StringComparer.Ordinal);
        var typed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0) continue;
            if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
            {
                var parts = line.Split(' ');
                Assert.True(parts.Length == 4 && parts[3] is "counter" or "gauge" or "histogram" or "summary" or "untyped", $"bad TYPE line: {line}");
                Assert.True(typed.Add(parts[2]), $"TYPE given twice for {parts[2]}");
                continue;
            }
            if (line[0] == '#') continue;
            var match = Sample.Match(line);
            Assert.True(match.Success, $"not a Prometheus sample line: {line}");
            // "name{}" (no labels, as OpenTelemetry's exporter writes it) and "name" are the same series.
            string key = match.Groups[1].Value + (match.Groups[2].Value == "{}" ? "" : match.Groups[2].Value);
            Assert.True(result.TryAdd(key, double.Parse(match.Groups[3].Value, CultureInfo.InvariantCulture)), $"series twice: {key}");
        }
        Assert.NotEmpty(result);
        return result;
    }
}
