using System.Security.Cryptography;
using FleetLearn.Compute;
using FleetLearn.Core.Model;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Random;
using FleetLearn.Core.Rounds;
using FleetLearn.Core.SecureAggregation;
using FleetLearn.Core.Training;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>The agent's parts around <see cref="VehicleRound"/>: model downloads, the owned training task, the SecAgg inbox.</summary>
public sealed class AgentPartsTests
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("4-3");

    private static RoundPlan PlanFor(byte[] model, long version) => new()
    {
        Fleet = "test", Round = version + 1, ModelVersion = version, ModelSpec = Spec.ToString(), ModelBytes = model.Length,
        ModelSha256 = Convert.ToHexStringLower(SHA256.HashData(model)), Cohort = ["car-0"], DeadlineUnixMs = 1, IssuedUnixMs = 0,
    };

    private static byte[] Model(long version, float value) => new Checkpoint(Spec, version, Enumerable.Repeat(value, Spec.ParameterCount).ToArray()).ToBytes();

    [Fact]
    public void Models_VerifiedAgainstThePlan_ForgedCopyDroppedThenAGoodCopyTaken()
    {
        var models = new AgentModels(1 << 20, TimeProvider.System);
        var good = Model(3, 0.5f);
        var plan = PlanFor(good, 3);
        Assert.Null(models.TryTake(plan)); // not here yet

        var forged = Model(3, 9f);
        foreach (var chunk in ChunkCodec.Split(forged, 2200, Guid.NewGuid())) models.Add(3, chunk);
        var e = Assert.Throws<WireFormatException>(() => models.TryTake(plan));
        Assert.Equal(RejectReasons.Signature, e.Reason);
        Assert.Null(models.TryTake(plan)); // the forged copy is gone: nothing is trained on it

        foreach (var chunk in ChunkCodec.Split(good, 2200, Guid.NewGuid())) models.Add(3, chunk);
        Assert.Equal(0.5f, models.TryTake(plan)!.Parameters[0]);
    }

    [Fact]
    public void Models_QuietOnlyWhenNoChunkArrivedForTheInterval()
    {
        var clock = new FakeTimeProvider();
        var models = new AgentModels(1 << 20, clock);
        Assert.True(models.QuietFor(TimeSpan.FromSeconds(10))); // nothing ever came: ask
        var larger = ModelSpec.Parse("64-32");
        var chunks = ChunkCodec.Split(new Checkpoint(larger, 4, new float[larger.ParameterCount]).ToBytes(), 2200, Guid.NewGuid());
        Assert.True(chunks.Count >= 3, $"{chunks.Count} chunks");
        models.Add(4, chunks[0]);
        clock.Advance(TimeSpan.FromSeconds(9));
        Assert.False(models.QuietFor(TimeSpan.FromSeconds(10))); // the fan-out is still under way
        models.Add(4, chunks[1]);
        clock.Advance(TimeSpan.FromSeconds(9));
        Assert.False(models.QuietFor(TimeSpan.FromSeconds(10))); // each chunk starts the interval again
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(models.QuietFor(TimeSpan.FromSeconds(10))); // stalled: ask the aggregator
    }

    [Fact]
    public void Models_TwoAgentsOfOneProcess_ShareTheDecodedModel_AForgedCopyIsStillRefused_AnotherModelIsNotShared()
    {
        var good = Model(7, 0.25f);
        var plan = PlanFor(good, 7);
        var first = new AgentModels(1 << 20, TimeProvider.System);
        var second = new AgentModels(1 << 20, TimeProvider.System);
        var third = new AgentModels(1 << 20, TimeProvider.System);
        foreach (var chunk in ChunkCodec.Split(good, 2200, Guid.NewGuid())) first.Add(7, chunk);
        foreach (var chunk in ChunkCodec.Split(good, 2200, Guid.NewGuid())) second.Add(7, chunk);
        foreach (var chunk in ChunkCodec.Split(Model(7, 9f), 2200, Guid.NewGuid())) third.Add(7, chunk); // forged: same version, other bytes
        var taken = first.TryTake(plan)!;
        Assert.Same(taken, second.TryTake(plan)); // decoded once: 1,000 agents hold one copy of the model
        Assert.Equal(RejectReasons.Signature, Assert.Throws<WireFormatException>(() => third.TryTake(plan)).Reason); // each agent's own bytes are still checked

        var other = Model(8, 0.75f);
        var next = new AgentModels(1 << 20, TimeProvider.System);
        foreach (var chunk in ChunkCodec.Split(other, 2200, Guid.NewGuid())) next.Add(8, chunk);
        var model8 = next.TryTake(PlanFor(other, 8))!;
        Assert.NotSame(taken, model8);
        Assert.Equal(0.75f, model8.Parameters[0]);
        Assert.Equal(0.25f, taken.Parameters[0]);
    }

    [Fact]
    public async Task Training_TrainerFails_ReportedAsAStoppedRoundNamingTheError()
    {
        using var pool = new TrainerPool(_ => throw new InvalidOperationException("no device for 4-3"), 1);
        var training = new AgentTraining(pool, Spec, monitor: null, "car-0", NullLogger.Instance);
        var result = await TrainOnceAsync(training);
        Assert.Null(result.Delta);
        Assert.Equal("training failed: no device for 4-3", result.StopReason);
    }

    [Fact]
    public async Task Training_Succeeds_DeltaOfTheModelsSize()
    {
        using var pool = new TrainerPool(spec => TrainerFactory.Create(BackendChoice.Cpu, spec, TrainerPool.MaxBatch), 1);
        var training = new AgentTraining(pool, Spec, monitor: null, "car-0", NullLogger.Instance);
        var result = await TrainOnceAsync(training);
        Assert.Null(result.StopReason);
        Assert.Equal(Spec.ParameterCount, result.Delta!.Length);
        Assert.Contains(result.Delta, d => d != 0);
        Assert.Equal(8, result.Samples);
        await training.DrainAsync();
    }

    private static async Task<TrainingResult> TrainOnceAsync(AgentTraining training)
    {
        var features = Enumerable.Range(0, 8 * 4).Select(i => (i % 7) / 7f).ToArray();
        var data = new VehicleDataset(new LabeledData(features, [0, 1, 2, 0, 1, 2, 0, 1], 4, 3), [.. Enumerable.Range(0, 8)]);
        var plan = PlanFor(Model(0, 0), 0);
        using var round = Assert.IsType<Joined>(VehicleRound.Join(plan, ReadOnlyMemory<byte>.Empty, new VehicleProfile { VehicleId = "car-0", Pinned = Spec }, 0, null,
            r => new VehicleRoundRandomness(new SeededNoiseSource(1), new SeededNoiseSource(2), Guid.NewGuid()), TimeProvider.System)).Round;
        var done = new TaskCompletionSource<TrainingResult>();
        training.Start(round, new Checkpoint(Spec, 0, new float[Spec.ParameterCount]), new LocalTrainingSettings(1, 4, 0.1f, 0, 0), data,
            () => DeterministicRandom.Derive(1, 2, 3), r => { done.SetResult(r); return Task.CompletedTask; }, CancellationToken.None);
        return await done.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public void ReadSecAgg_OtherVehicle_Rejected_StaleRound_Ignored_Garbage_Rejected()
    {
        byte[] For(string vehicle, long round, byte[] payload) => new Envelope(EnvelopeKind.SecAgg, vehicle, round, Guid.NewGuid(), payload).Encode();
        var request = SecAggCodec.Encode(new UnmaskRequestMessage(4, 0, [1, 2], [3]));
        Assert.IsType<UnmaskRequestMessage>(AgentUplink.ReadSecAgg(For("car-0", 4, request), "car-0", 1 << 20, 4));
        Assert.Null(AgentUplink.ReadSecAgg(For("car-0", 3, request), "car-0", 1 << 20, 4));
        Assert.Null(AgentUplink.ReadSecAgg(For("car-0", 4, request), "car-0", 1 << 20, null)); // no round joined
        Assert.Contains("names another vehicle", Assert.Throws<WireFormatException>(() => AgentUplink.ReadSecAgg(For("car-1", 4, request), "car-0", 1 << 20, 4)).Message, StringComparison.Ordinal);
        Assert.StartsWith("Secure-aggregation message:", Assert.Throws<WireFormatException>(() => AgentUplink.ReadSecAgg(For("car-0", 4, [1, 2, 3]), "car-0", 1 << 20, 4)).Message, StringComparison.Ordinal);
    }
}
