using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>The shard table on the wire: a sharded plan is format version 3 (older readers refuse it), unsharded plans stay version 2.</summary>
public sealed class RoundPlanShardWireTests : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public void Dispose() => _key.Dispose();

    private static RoundPlan Plan(bool sharded) => new()
    {
        Fleet = "fleet-a", Round = 2, ModelVersion = 1, ModelSpec = "4-2", ModelSha256 = new string('a', 64), ModelBytes = 10,
        Cohort = ["car-0", "car-1", "car-2", "car-3"], DeadlineUnixMs = 10, IssuedUnixMs = 1,
        Shards = sharded ? [new PlanShard { Index = 1, Members = [0, 2] }, new PlanShard { Index = 4, Members = [1, 3] }] : null,
    };

    [Fact]
    public void SignVerify_ShardedPlan_Version3AndTheTableRoundTrips()
    {
        var bytes = RoundPlanCodec.Sign(Plan(sharded: true), _key);

        var plan = RoundPlanCodec.Verify(bytes, _key, "fleet-a");

        Assert.Equal(RoundPlanCodec.ShardedFormatVersion, bytes[4]);
        Assert.Equal([1, 4], plan.Shards!.Select(s => s.Index));
        Assert.Equal([1, 3], plan.Shards![1].Members);
        Assert.Equal(["car-1", "car-3"], PlanShards.Of(plan, "car-3")!.Cohort);
        Assert.Equal(RoundPlanCodec.FormatVersion, RoundPlanCodec.Sign(Plan(sharded: false), _key)[4]);
    }

    [Fact]
    public void Verify_ShardTableUnderVersion2_Refused()
    {
        // A correctly signed frame that claims version 2 but carries shards: a version-2 reader would have run the whole cohort's sum.
        var json = Encoding.UTF8.GetBytes("""{"fleet":"fleet-a","round":2,"modelVersion":1,"modelSpec":"4-2","modelSha256":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","modelBytes":10,"cohort":["car-0","car-1"],"shards":[{"index":0,"members":[0,1]}],"deadlineUnixMs":10,"issuedUnixMs":1}""");
        var body = new byte[12 + json.Length];
        "FLRP"u8.CopyTo(body);
        body[4] = RoundPlanCodec.FormatVersion;
        BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(8), (uint)json.Length);
        json.CopyTo(body, 12);

        var signature = _key.SignData(body, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        byte[] frame = [.. body, (byte)signature.Length, 0, .. signature];

        var e = Assert.Throws<WireFormatException>(() => RoundPlanCodec.Verify(frame, _key, "fleet-a"));

        Assert.Equal("Round plan format version 2 does not match its shard table (present).", e.Message);
    }
}
