using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Core.Tests.SecureAggregation;

/// <summary>k and t for share holders drawn by each vehicle (issue 13 items 5 and 6).</summary>
public sealed class SelfChosenParametersTests
{
    [Fact]
    public void DeriveSelfChosen_Issue13Acceptance_SmallestKBelowTwoToMinus40()
    {
        var c = SecAggPlusParameters.DeriveSelfChosen(1000, 0.05, 0.1);

        Assert.Equal((54, 28), (c.Neighbors, c.Threshold));
        Assert.True(c.FailureLog2 <= -40, $"failure 2^{c.FailureLog2}");
        Assert.True(2 * c.Threshold > c.Neighbors + 1);
        for (int t = (52 + 1) / 2 + 1; t <= 53; t++) Assert.True(SecAggPlusParameters.EvaluateSelfChosen(1000, 52, t, 0.05, 0.1).FailureLog2 > -40);
        Assert.Equal(54, SecAggPlusParameters.DefaultSelfChosenHolders(1000));
    }

    [Fact]
    public void EvaluateSelfChosen_ColludingHolders_CountsTheVehiclesOwnShare()
    {
        // A malicious server can hide u's honest holders: t − 1 colluders and u's own share reach t. The ring's event at t − 1.
        var self = SecAggPlusParameters.EvaluateSelfChosen(500, 20, 12, 0.05, 0.1);
        var ring = SecAggPlusParameters.Evaluate(500, 20, 11, 0.05, 0.1);

        Assert.Equal(ring.ColludingHoldersLog2, self.ColludingHoldersLog2, 9);
        Assert.Equal(SecAggPlusParameters.Evaluate(500, 20, 12, 0.05, 0.1).DropoutLog2, self.DropoutLog2, 9);
    }

    [Fact]
    public void EvaluateSelfChosen_Partition_FallsWithK()
    {
        double previous = 0;
        for (int k = 2; k <= 12; k++)
        {
            double p = SecAggPlusParameters.EvaluateSelfChosen(200, k, (k + 1) / 2 + 1, 0.05, 0.1).PartitionLog2;
            Assert.True(p <= previous, $"k = {k}: 2^{p} after 2^{previous}");
            previous = p;
        }
        Assert.True(previous < -40, $"2^{previous}");
    }

    [Fact]
    public void SimulationDefaults_MaliciousMode_DerivesKForSelfChosenHolders()
    {
        // k = 5 would meet it at n = 20; k stays even so that the pipeline's check holds for either holder mode.
        Assert.Equal(6, SecAggPlusParameters.DefaultSelfChosenHolders(20));
        Assert.True(SecAggPlusParameters.EvaluateSelfChosen(20, 6, 4, 0.05, 0.1).FailureLog2 <= -40);
        Assert.True(SecAggPlusParameters.EvaluateSelfChosen(20, 4, 3, 0.05, 0.1).FailureLog2 > -40);
    }
}
