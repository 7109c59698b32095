using System.Security.Cryptography;
using FleetLearn.Core.Model;
using FleetLearn.Core.Rounds;
using FleetLearn.Transport.Mqtt;

namespace FleetLearn.EdgeAgent.Tests;

/// <summary>The agents of one process hold one array per model content (<see cref="SharedModels.Intern"/>), and each still verifies it against its plan.</summary>
public sealed class SharedModelBytesTests
{
    private static readonly ModelSpec Spec = ModelSpec.Parse("4-3");

    private static byte[] Model(long version, float value) => new Checkpoint(Spec, version, Enumerable.Repeat(value, Spec.ParameterCount).ToArray()).ToBytes();

    [Fact]
    public void Intern_SameBytes_OneArray_OtherBytesTheirOwn()
    {
        var model = Model(11, 0.125f);
        var first = SharedModels.Intern(model);
        Assert.Same(model, first);
        Assert.Same(model, SharedModels.Intern([.. model])); // a second agent's reassembled copy: the first array instead
        var other = Model(11, 0.5f); // same version and length, other content
        Assert.Same(other, SharedModels.Intern(other));
        Assert.Equal(model, first); // not written to
    }

    [Fact]
    public void Models_TwoAgentsReassembleTheSameModel_BothTakeIt_AForgedCopyIsRefused()
    {
        var good = Model(12, 0.375f);
        var plan = new RoundPlan
        {
            Fleet = "test", Round = 13, ModelVersion = 12, ModelSpec = Spec.ToString(), ModelBytes = good.Length,
            ModelSha256 = Convert.ToHexStringLower(SHA256.HashData(good)), Cohort = ["car-0"], DeadlineUnixMs = 1, IssuedUnixMs = 0,
        };
        var agents = new[] { new AgentModels(1 << 20, TimeProvider.System), new AgentModels(1 << 20, TimeProvider.System) };
        foreach (var agent in agents)
            foreach (var chunk in ChunkCodec.Split(good, 2200, Guid.NewGuid())) agent.Add(12, chunk);
        var forged = new AgentModels(1 << 20, TimeProvider.System);
        foreach (var chunk in ChunkCodec.Split(Model(12, 7f), 2200, Guid.NewGuid())) forged.Add(12, chunk);
        Assert.Equal(0.375f, agents[0].TryTake(plan)!.Parameters[0]);
        Assert.Equal(0.375f, agents[1].TryTake(plan)!.Parameters[0]);
        Assert.Equal(RejectReasons.Signature, Assert.Throws<WireFormatException>(() => forged.TryTake(plan)).Reason);
    }

    [Fact]
    public void NotSelected_DropsModelsUpToThePlansVersion_KeepsNewerOnes()
    {
        var v12 = Model(12, 0.25f);
        var v13 = Model(13, 0.75f);
        RoundPlan Plan(long version, byte[] bytes, string member) => new()
        {
            Fleet = "test", Round = version + 1, ModelVersion = version, ModelSpec = Spec.ToString(), ModelBytes = bytes.Length,
            ModelSha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)), Cohort = [member], DeadlineUnixMs = 1, IssuedUnixMs = 0,
        };
        var models = new AgentModels(1 << 20, TimeProvider.System);
        foreach (var chunk in ChunkCodec.Split(v12, 2200, Guid.NewGuid())) models.Add(12, chunk);
        Assert.NotNull(models.TryTake(Plan(12, v12, "car-0"))); // trained on 12: the decoded model is kept
        foreach (var chunk in ChunkCodec.Split(v13, 2200, Guid.NewGuid())) models.Add(13, chunk);
        Assert.Equal(2, models.Held);

        models.NotSelected(Plan(12, v12, "car-9")); // a plan on 12 without this vehicle: 12 goes, 13 stays
        Assert.Equal(1, models.Held);
        Assert.Null(models.TryTake(Plan(12, v12, "car-0")));
        models.NotSelected(Plan(13, v13, "car-9"));
        Assert.Equal(0, models.Held);
        Assert.Null(models.TryTake(Plan(13, v13, "car-0"))); // asked for again by the round (up/model), as any model that did not come
    }
}
