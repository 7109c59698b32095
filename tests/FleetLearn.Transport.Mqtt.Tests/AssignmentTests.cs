using System.Security.Cryptography;
using CsCheck;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt.Tests;

/// <summary>The signed FedBuff assignment: what the aggregator signs comes back, and no byte of it can change unnoticed.</summary>
public sealed class AssignmentTests
{
    private static readonly ECDsa Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    private static readonly Gen<Assignment> GenAssignment =
        Gen.Select(Gen.Int[0, 2], Gen.ULong, Gen.Int[1, 100_000], Gen.String[0, 40], Gen.Byte.Array[1, 300])
            .Select((kind, slot, k, reason, plan) => kind switch
            {
                0 => new Assignment(AckStatus.Accepted, "", slot, k, plan),
                1 => new Assignment(AckStatus.Accepted, reason, slot, k, []), // secure FedBuff: joined group `slot`, still forming
                _ => new Assignment(AckStatus.Rejected, reason, 0, k, []),
            });

    [Fact]
    public void SignThenVerify_ReturnsTheSameAssignment() =>
        GenAssignment.Sample(a =>
        {
            var back = Assignment.Verify(a.Sign(Key), Key);
            Assert.Equal((a.Status, a.Reason, a.Slot, a.BufferSize), (back.Status, back.Reason, back.Slot, back.BufferSize));
            Assert.Equal(a.SignedPlan, back.SignedPlan);
            Assert.Equal(a.Status == AckStatus.Accepted && a.SignedPlan.Length == 0, back.IsWaiting);
        }, iter: 300);

    [Fact]
    public void Verify_AnyByteFlipped_Refused() =>
        GenAssignment.SelectMany(a => Gen.Int[0, a.Sign(Key).Length - 1].Select(i => (a, i))).Sample(t =>
        {
            var bytes = t.a.Sign(Key);
            bytes[t.i] ^= 0x01;
            Assert.Throws<Core.Rounds.WireFormatException>(() => Assignment.Verify(bytes, Key));
        }, iter: 300);

    [Fact]
    public void Verify_SignedByAnotherKey_RefusedAsSignature()
    {
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var bytes = new Assignment(AckStatus.Accepted, "", 3, 10, [1, 2, 3]).Sign(other);

        var e = Assert.Throws<Core.Rounds.WireFormatException>(() => Assignment.Verify(bytes, Key));

        Assert.Equal(RejectReasons.Signature, e.Reason);
        Assert.Contains("not valid for the pinned aggregator key", e.Message, StringComparison.Ordinal);
    }
}
