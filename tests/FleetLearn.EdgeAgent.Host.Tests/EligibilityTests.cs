using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Random;
using FleetLearn.Core.Training;

namespace FleetLearn.EdgeAgent.Host.Tests;

/// <summary>The vehicle-state source and the eligibility policy: each state change, and training stopping within 1 s.</summary>
public sealed class EligibilityTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-eligibility-");

    public void Dispose() => _dir.Delete(true);

    private const string Parked = """{"ignition":false,"speed_kmh":0,"charging":true,"state_of_charge":0.5,"network":"wifi","soc_temperature_c":50}""";

    /// <summary>Writes the state file as a gateway does: a temporary file, then a rename (readers never see half a document).</summary>
    private void WriteState(string path, string json)
    {
        File.WriteAllText(path + ".new", json);
        File.Move(path + ".new", path, overwrite: true);
    }

    private static EligibilityPolicy Policy(Action<EligibilityOptions>? change = null)
    {
        var options = new EligibilityOptions();
        change?.Invoke(options);
        return new EligibilityPolicy(options);
    }

    private static VehicleState State(string json) => VehicleStateJson.Parse(Encoding.UTF8.GetBytes(json), "state.json");

    [Theory]
    [InlineData(Parked, null)]
    [InlineData("""{"ignition":true,"speed_kmh":0,"charging":true,"network":"wifi"}""", "ignition on")]
    [InlineData("""{"ignition":false,"speed_kmh":12,"charging":true,"network":"wifi"}""", "moving")]
    [InlineData("""{"ignition":false,"speed_kmh":0,"charging":false,"state_of_charge":0.5,"network":"wifi"}""", "not charging and state of charge 50 %")]
    [InlineData("""{"ignition":false,"speed_kmh":0,"charging":false,"state_of_charge":0.9,"network":"ethernet"}""", null)]
    [InlineData("""{"ignition":false,"speed_kmh":0,"charging":true,"network":"cellular"}""", "on a metered network (cellular)")]
    [InlineData("""{"ignition":false,"speed_kmh":0,"charging":true,"network":"wifi","soc_temperature_c":85}""", "SoC at 85 °C")]
    [InlineData("""{"ignition":"off"}""", "vehicle state unknown")]
    [InlineData("""{"ignition":false,"state_of_charge":1.5}""", "vehicle state unknown")]
    [InlineData("not json", "vehicle state unknown")]
    public void Policy_EachStateField_DecidesWithAReason(string json, string? reason)
    {
        var why = Policy().Ineligibility(State(json));
        if (reason is null) Assert.Null(why);
        else Assert.Contains(reason, why, StringComparison.Ordinal);
    }

    [Fact]
    public void Monitor_UnmeteredThenMetered_NextRoundDeclined()
    {
        string path = Path.Combine(_dir.FullName, "state.json");
        WriteState(path, Parked);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using var monitor = new VehicleStateMonitor(new EligibilityOptions { StateFile = path }, time);
        Assert.Null(monitor.Ineligibility());
        Assert.True(monitor.Current().Unmetered);
        WriteState(path, Parked.Replace("wifi", "cellular", StringComparison.Ordinal));
        time.Advance(TimeSpan.FromMilliseconds(200)); // one poll
        Assert.Equal("on a metered network (cellular)", monitor.Ineligibility());
        Assert.False(monitor.Current().Unmetered); // what the worker's Agent:RequireUnmetered check reads
        Assert.True(monitor.TrainingToken.IsCancellationRequested);
    }

    [Fact]
    public void Monitor_ChargeFloor_ReportedAsChargingForTheWorkersCheck()
    {
        string path = Path.Combine(_dir.FullName, "state.json");
        WriteState(path, """{"ignition":false,"speed_kmh":0,"charging":false,"state_of_charge":0.85,"network":"wifi"}""");
        using var monitor = new VehicleStateMonitor(new EligibilityOptions { StateFile = path, ChargeFloor = 0.8 }, new Microsoft.Extensions.Time.Testing.FakeTimeProvider());
        Assert.True(monitor.Current().Charging);
        Assert.False(monitor.State.Charging);
        Assert.Null(monitor.Ineligibility());
    }

    [Fact]
    public void Monitor_MissingFile_NeverEligible()
    {
        using var monitor = new VehicleStateMonitor(new EligibilityOptions { StateFile = Path.Combine(_dir.FullName, "absent.json") }, new Microsoft.Extensions.Time.Testing.FakeTimeProvider());
        Assert.Contains("does not exist", monitor.Ineligibility(), StringComparison.Ordinal);
        Assert.True(monitor.TrainingToken.IsCancellationRequested);
    }

    [Fact]
    public void Monitor_EligibleAgain_NewTrainingTokenNotCancelled()
    {
        string path = Path.Combine(_dir.FullName, "state.json");
        WriteState(path, Parked.Replace("\"ignition\":false", "\"ignition\":true", StringComparison.Ordinal));
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using var monitor = new VehicleStateMonitor(new EligibilityOptions { StateFile = path }, time);
        Assert.True(monitor.TrainingToken.IsCancellationRequested);
        WriteState(path, Parked);
        time.Advance(TimeSpan.FromMilliseconds(200));
        Assert.False(monitor.TrainingToken.IsCancellationRequested);
    }

    [Fact]
    public async Task Training_IgnitionOnMidTraining_StopsWithinOneSecond()
    {
        string path = Path.Combine(_dir.FullName, "state.json");
        WriteState(path, Parked);
        using var monitor = new VehicleStateMonitor(new EligibilityOptions { StateFile = path }); // the real clock: the 1 s is wall time
        var spec = ModelSpec.Parse("784-200-200-10");
        var rng = new DeterministicRandom(3);
        var features = new float[20_000 * 784];
        for (int i = 0; i < features.Length; i++) features[i] = rng.NextSingle();
        var labels = Enumerable.Range(0, 20_000).Select(i => (byte)(i % 10)).ToArray();
        var data = new LabeledData(features, labels, 784, 10);
        var token = monitor.TrainingToken;
        var firstBatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var training = Task.Run(() =>
        {
            using var trainer = new CpuTrainer(spec, 50);
            trainer.LoadParameters(ModelInitializer.Initialize(spec, 1));
            var rows = Enumerable.Range(0, data.Count).ToArray();
            long step = 0;
            var sgd = new SgdOptions(0.01f);
            var schedule = new LearningRateSchedule.Constant(0.01f);
            TrainingLoop.RunEpoch(trainer, data, rows[..50], 50, sgd, schedule, ref step, 0, rng, token); // one batch: training is under way
            firstBatch.TrySetResult();
            for (int epoch = 0; epoch < 1000; epoch++) // far longer than the test: only the state change ends it
                TrainingLoop.RunEpoch(trainer, data, rows, 50, sgd, schedule, ref step, 0, rng, token);
        });
        await firstBatch.Task.WaitAsync(TimeSpan.FromSeconds(30));
        var clock = Stopwatch.StartNew();
        WriteState(path, Parked.Replace("\"ignition\":false", "\"ignition\":true", StringComparison.Ordinal));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => training.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"training stopped {clock.Elapsed.TotalMilliseconds:F0} ms after the ignition came on");
        Assert.Equal("ignition on", monitor.Ineligibility());
    }

    [Fact]
    public async Task Monitor_UnixSocketStream_FollowsEachLine()
    {
        string path = Path.Combine(_dir.FullName, "gw.sock");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        using var monitor = new VehicleStateMonitor(new EligibilityOptions { StateSocket = path });
        var changes = new System.Collections.Concurrent.BlockingCollection<VehicleState>();
        monitor.Changed += changes.Add;
        Assert.Contains("no state received yet", monitor.Ineligibility(), StringComparison.Ordinal);
        using var gateway = await listener.AcceptAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await gateway.SendAsync(Encoding.UTF8.GetBytes(Parked + "\n"));
        Assert.True(changes.TryTake(out var first, TimeSpan.FromSeconds(10)));
        Assert.Null(new EligibilityPolicy(new EligibilityOptions()).Ineligibility(first!));
        var token = monitor.TrainingToken;
        await gateway.SendAsync(Encoding.UTF8.GetBytes(Parked.Replace("\"speed_kmh\":0", "\"speed_kmh\":30", StringComparison.Ordinal) + "\n"));
        Assert.True(changes.TryTake(out _, TimeSpan.FromSeconds(10)));
        Assert.True(token.IsCancellationRequested);
        Assert.Equal("moving", monitor.Ineligibility());
    }
}
