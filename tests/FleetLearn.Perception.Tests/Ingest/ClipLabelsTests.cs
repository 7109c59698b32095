using CsCheck;
using FleetLearn.Perception.Ingest;

namespace FleetLearn.Perception.Tests.Ingest;

public sealed class ClipLabelsTests
{
    [Fact]
    public void Parse_FrameKeyed_LastRowAtOrBeforeWins_EmptyEndsLabel()
    {
        var labels = ClipLabels.Parse(["# driver tags", "frame,class", "0,3", "10,7", "20,", "30,-1", "40,1"], 10);
        Assert.False(labels.ByTime);
        Assert.Equal(3, labels.At(0));
        Assert.Equal(3, labels.At(9));
        Assert.Equal(7, labels.At(10));
        Assert.Equal(-1, labels.At(25));
        Assert.Equal(1, labels.At(1000));
    }

    [Fact]
    public void Parse_TimeKeyed_BeforeFirstRowUnlabelled()
    {
        var labels = ClipLabels.Parse(["time,class", "1.5,2"], 10);
        Assert.True(labels.ByTime);
        Assert.Equal(-1, labels.For(null, 1.0, "c"));
        Assert.Equal(2, labels.For(null, 1.5, "c"));
        Assert.Throws<ClipLabelsException>(() => labels.For(3, null, "c"));
    }

    [Theory]
    [InlineData(new[] { "index,class", "0,1" }, "expected the header")]
    [InlineData(new[] { "frame,class", "0,10" }, "class '10' is not within 0..9")]
    [InlineData(new[] { "frame,class", "5,1", "5,2" }, "rows must increase")]
    [InlineData(new[] { "frame,class", "x,1" }, "is not a frame index")]
    [InlineData(new[] { "frame,class", "1,2,3" }, "expected two cells")]
    [InlineData(new string[0], "is empty")]
    public void Parse_Malformed_NamesFileLineAndProblem(string[] lines, string expected)
    {
        var e = Assert.Throws<ClipLabelsException>(() => ClipLabels.Parse(lines, 10, "clip.mp4.labels.csv"));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Contains("clip.mp4.labels.csv", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Parse_RandomIncreasingRows_LookupMatchesLinearScan()
    {
        Gen.Int[0, 9].Select(Gen.Int[1, 5]).Array[1, 30].Sample(steps =>
        {
            var keys = new List<int>();
            int k = 0;
            foreach (var (_, gap) in steps) keys.Add(k += gap);
            var classes = steps.Select(s => s.Item1).ToArray();
            var labels = ClipLabels.Parse(["frame,class", .. keys.Select((key, i) => $"{key},{classes[i]}")], 10);
            for (int frame = 0; frame <= k + 2; frame++)
            {
                int expected = -1;
                for (int i = 0; i < keys.Count; i++) if (keys[i] <= frame) expected = classes[i];
                Assert.Equal(expected, labels.At(frame));
            }
        }, iter: 200);
    }
}
