using CsCheck;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Core.Tests.Rounds;

public sealed class VehicleIdOrderTests
{
    private static readonly Gen<string> GenId = Gen.String[Gen.Char["ab-_.09"], 1, 8];

    [Fact]
    public void Order_SimulatedFleetNames_SortInIndexOrder()
    {
        var names = Enumerable.Range(0, 120).Select(v => $"vehicle-{v}").ToArray();
        var shuffled = names.OrderBy(n => n.GetHashCode(StringComparison.Ordinal)).ToArray();

        Assert.Equal(names, shuffled.Order(VehicleId.Order));
        // Ordinal order differs (vehicle-10 before vehicle-2): the reason for this order.
        Assert.NotEqual(names, shuffled.Order(StringComparer.Ordinal));
    }

    [Theory]
    [InlineData("vehicle-2", "vehicle-10", -1)]
    [InlineData("a9b", "a10a", -1)]
    [InlineData("v007", "v7", 1)] // same value: more leading zeros after
    [InlineData("v7", "v7", 0)]
    [InlineData("v", "v0", -1)]
    [InlineData("VIN-WDB1", "VIN-WDB1a", -1)]
    [InlineData("b", "a100", 1)]
    public void Order_Examples(string x, string y, int sign)
    {
        Assert.Equal(sign, Math.Sign(VehicleId.Order.Compare(x, y)));
        Assert.Equal(-sign, Math.Sign(VehicleId.Order.Compare(y, x)));
    }

    [Fact]
    public void Order_IsATotalOrderThatTellsEveryTwoIdsApart()
    {
        Gen.Select(GenId, GenId, GenId).Sample((a, b, c) =>
        {
            int ab = Math.Sign(VehicleId.Order.Compare(a, b));
            Assert.Equal(-ab, Math.Sign(VehicleId.Order.Compare(b, a)));
            Assert.Equal(a == b, ab == 0);
            if (ab <= 0 && VehicleId.Order.Compare(b, c) <= 0) Assert.True(VehicleId.Order.Compare(a, c) <= 0, $"{a} ≤ {b} ≤ {c} but not {a} ≤ {c}");
        }, iter: 20_000);
    }
}
