using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace FleetLearn.Cli.Tests.Commands;

[Collection("Console")]
public sealed class SimulateShardsCommandTests
{
    private static (int Exit, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        int exit = FleetLearnCommand.Build().Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        return (exit, output.ToString(), error.ToString());
    }

    private static readonly string[] Small =
        ["simulate", "--vehicles", "30", "--cohort", "9", "--rounds", "2", "--local-epochs", "1", "--model", "784-32-10", "--workers", "1", "--codec", "rot+q8", "--secagg", "plus", "--json"];

    private static JsonElement[] Lines(string stdout) =>
        [.. stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)];

    [Theory]
    [InlineData("--clip", "5")]
    [InlineData("--dp", "central")]
    public void Simulate_ThreeShards_SameModelSha256AsOne(string option, string value)
    {
        var (exit1, out1, err1) = Run([.. Small, option, value]);
        Assert.True(exit1 == 0, err1);
        var (exit3, out3, err3) = Run([.. Small, option, value, "--shards", "3"]);
        Assert.True(exit3 == 0, err3);
        var one = Lines(out1);
        var three = Lines(out3);
        Assert.All(three[..^1], r => Assert.Equal((3, 9, true), (r.GetProperty("shards").GetInt32(), r.GetProperty("participants").GetInt32(), r.GetProperty("applied").GetBoolean())));
        Assert.All(one[..^1], r => Assert.Equal(1, r.GetProperty("shards").GetInt32()));
        Assert.Equal(one[^1].GetProperty("model_sha256").GetString(), three[^1].GetProperty("model_sha256").GetString());
    }

    /// <summary>Three shard workers and the coordinator over the embedded broker (each its own connection and identity): the in-process unsharded model, bit for bit.</summary>
    [Theory]
    [InlineData("--clip", "5")]
    [InlineData("--dp", "central")]
    public void Simulate_ThreeShardsOverMqtt_SameModelSha256AsOneInProcess(string option, string value)
    {
        var (exit1, out1, err1) = Run([.. Small, option, value]);
        Assert.True(exit1 == 0, err1);
        var (exit3, out3, err3) = Run([.. Small, option, value, "--shards", "3", "--transport", "mqtt"]);
        Assert.True(exit3 == 0, err3);
        var one = Lines(out1);
        var three = Lines(out3);
        Assert.All(three[..^1], r => Assert.Equal((9, true), (r.GetProperty("participants").GetInt32(), r.GetProperty("applied").GetBoolean())));
        Assert.Equal(0, three[^1].GetProperty("pending_in_outboxes").GetInt32()); // every uplink was acknowledged by its shard
        Assert.Equal(one[^1].GetProperty("model_sha256").GetString(), three[^1].GetProperty("model_sha256").GetString());
    }

    /// <summary>
    /// Issue 16: plaintext rounds over MQTT shards (embedded broker, shard workers in the test's process) stalled in round 1
    /// after the first update. Both rounds must apply with all 9, every uplink acknowledged by its shard, and the model must be
    /// the in-process sharded run's, bit for bit (each shard folds its part in the same order; the combiner adds the same means).
    /// </summary>
    [Fact]
    public async Task Simulate_PlaintextThreeShardsOverMqtt_SameModelSha256AsInProcessShards()
    {
        string[] plain = [.. Small.Where(a => a is not ("--secagg" or "plus")), "--clip", "5", "--shards", "3"];
        var (exitIn, outIn, errIn) = Run(plain);
        Assert.True(exitIn == 0, errIn);
        // A stall would hang the run: give it far more than it needs (about 10 s), then fail instead of waiting for the round's deadline.
        var overMqtt = Task.Run(() => Run([.. plain, "--transport", "mqtt"]));
        Assert.Same(overMqtt, await Task.WhenAny(overMqtt, Task.Delay(TimeSpan.FromMinutes(3))));
        var (exit3, out3, err3) = await overMqtt;
        Assert.True(exit3 == 0, err3);
        var inProcess = Lines(outIn);
        var three = Lines(out3);
        Assert.Equal(2, three.Length - 1);
        Assert.All(three[..^1], r => Assert.Equal((9, true), (r.GetProperty("participants").GetInt32(), r.GetProperty("applied").GetBoolean())));
        Assert.Equal(0, three[^1].GetProperty("pending_in_outboxes").GetInt32());
        Assert.Equal(inProcess[^1].GetProperty("model_sha256").GetString(), three[^1].GetProperty("model_sha256").GetString());
    }

    [Fact]
    public void Simulate_ShardsOverMqttWithDistributedDp_RefusedAsInProcessOnly()
    {
        var e = Assert.Throws<ArgumentException>(() => Run([.. Small, "--dp", "distributed", "--shards", "3", "--transport", "mqtt"]));
        Assert.StartsWith("--transport mqtt --shards runs plain secure aggregation and central DP", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1:5", "--shards", "3")]
    [InlineData("1:0", "--shards", "1")]
    [InlineData("3:0", "--shards", "3")]
    public void Simulate_ShardKillNamingNoShardOrRound_Refused(string kill, string option, string value)
    {
        var e = Assert.Throws<ArgumentException>(() => Run([.. Small, "--clip", "5", option, value, "--shard-kill", kill]));
        Assert.StartsWith($"--shard-kill {kill}: names no shard of this run", e.Message, StringComparison.Ordinal);
    }
}
