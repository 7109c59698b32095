using System.Text.Json;
using System.Text.RegularExpressions;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// <c>simulate --transport mqtt --secagg plus --secagg-malicious</c> as a real process (issue 13 item 5): real agents in
/// malicious-aggregator mode over the embedded broker under mutual TLS give the in-process model, and with
/// <c>--processes 2</c> the child's agents find the run's device certificates.
/// </summary>
[Collection("Console")]
public sealed partial class MaliciousModeSimulateTests : IDisposable
{
    private static string[] Fleet(int vehicles) =>
        ["--vehicles", vehicles.ToString(System.Globalization.CultureInfo.InvariantCulture), "--cohort", "6", "--rounds", "2", "--local-epochs", "1", "--model", "784-16-10", "--secagg", "plus", "--secagg-malicious", "--clip", "1", "--workers", "1", "--seed", "3"];

    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fl-malicious-cli-");

    public void Dispose() => _dir.Delete(recursive: true);

    [Fact]
    public async Task Simulate_MaliciousModeOverMqttWithDropout_SameModelSha256AsInProcess()
    {
        var mqtt = await SummaryAsync("mqtt", [.. Fleet(12), "--dropout", "0.2", "--transport", "mqtt", "--json"]);
        var inProcess = await SummaryAsync("inproc", [.. Fleet(12), "--dropout", "0.2", "--transport", "inproc", "--json"]);

        Assert.Equal(inProcess.GetProperty("model_sha256").GetString(), mqtt.GetProperty("model_sha256").GetString());
        Assert.Equal(2, mqtt.GetProperty("rounds").GetInt32());
        Assert.True(mqtt.GetProperty("rounds_applied").GetInt32() >= 1, mqtt.ToString());
        Assert.Equal(0, mqtt.GetProperty("pending_in_outboxes").GetInt32());
    }

    [Fact]
    public async Task Simulate_MaliciousModeTwoProcesses_ChildAgentsUseTheRunsCertificates()
    {
        using var run = FleetProcess.Start("simulate", _dir.FullName, new Dictionary<string, string>(),
            ["simulate", .. Fleet(6), "--transport", "mqtt", "--processes", "2"]);
        int exit = await run.WaitForExitAsync(TimeSpan.FromMinutes(4));
        Assert.True(exit == 0, run.Output);
        Assert.Matches(StartedChild(), run.Output);
        Assert.Contains("done: 2/2 rounds applied over MQTT", run.Output, StringComparison.Ordinal);
        Assert.Equal(2, Regex.Matches(run.Output, @"participants\s+6/6\s+applied").Count);
    }

    private async Task<JsonElement> SummaryAsync(string name, string[] args)
    {
        using var run = FleetProcess.Start(name, Path.Combine(_dir.FullName, name), new Dictionary<string, string>(), ["simulate", .. args]);
        int exit = await run.WaitForExitAsync(TimeSpan.FromMinutes(4));
        Assert.True(exit == 0, run.Output);
        string line = run.Output.Split('\n').Last(l => l.Contains("{\"summary\":true", StringComparison.Ordinal));
        using var json = JsonDocument.Parse(line[line.IndexOf('{', StringComparison.Ordinal)..]);
        return json.RootElement.Clone();
    }

    [GeneratedRegex(@"started agent process \d+ for vehicles 3\.\.5")]
    private static partial Regex StartedChild();
}
