using FleetLearn.Core.Model;

namespace FleetLearn.Core.Tests.Model;

public sealed class ModelSpecTests
{
    [Fact]
    public void Parse_TwoNN_HasPaperParameterCountAndLayout()
    {
        var spec = ModelSpec.Parse("784-200-200-10");
        Assert.Equal(199_210, spec.ParameterCount);
        Assert.Equal(3, spec.LayerCount);
        Assert.Equal(0, spec.WeightOffset(0));
        Assert.Equal(784 * 200, spec.BiasOffset(0));
        Assert.Equal(784 * 200 + 200, spec.WeightOffset(1));
        Assert.Equal(784 * 200 + 200 + 200 * 200 + 200, spec.WeightOffset(2));
        Assert.Equal(spec.ParameterCount - 10, spec.BiasOffset(2));
        Assert.Equal("784-200-200-10", spec.ToString());
        Assert.Equal(ModelSpec.TwoNN, spec);
    }

    [Theory]
    [InlineData("784", "at least an input and an output")]
    [InlineData("784-abc-10", "'abc' is not a layer width")]
    [InlineData("784-0-10", "outside 1..")]
    [InlineData("784-1", "at least 2 classes")]
    [InlineData("-5-3", "is not a layer width")]
    public void Parse_BadText_ThrowsFormatExceptionNamingTheProblem(string text, string expected)
    {
        var e = Assert.Throws<FormatException>(() => ModelSpec.Parse(text));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Initialize_SameSeed_SameVector_DifferentSeed_Differs()
    {
        var spec = ModelSpec.Parse("20-7-3");
        var a = ModelInitializer.Initialize(spec, 42);
        var b = ModelInitializer.Initialize(spec, 42);
        var c = ModelInitializer.Initialize(spec, 43);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        // Biases start at zero; hidden weights have He scale (std √(2/20) ≈ 0.316).
        Assert.All(a.AsSpan(spec.BiasOffset(0), 7).ToArray(), v => Assert.Equal(0f, v));
        var w = a.AsSpan(0, spec.WeightCount(0)).ToArray();
        double std = Math.Sqrt(w.Select(v => (double)v * v).Average());
        Assert.InRange(std, 0.2, 0.45);
    }

    [Fact]
    public void Initialize_Uniform_MatchesPyTorchLinearBounds()
    {
        var spec = ModelSpec.Parse("400-50-10");
        var p = ModelInitializer.Initialize(spec, 7, InitScheme.Uniform);
        float bound = 1f / MathF.Sqrt(400);
        var w = p.AsSpan(0, spec.WeightCount(0)).ToArray();
        var b = p.AsSpan(spec.BiasOffset(0), 50).ToArray();
        Assert.All(w, v => Assert.InRange(v, -bound, bound));
        Assert.All(b, v => Assert.InRange(v, -bound, bound));
        Assert.Contains(b, v => v != 0);
        // Uniform on ±bound has standard deviation bound/√3.
        double std = Math.Sqrt(w.Select(v => (double)v * v).Average());
        Assert.InRange(std, 0.9 * bound / Math.Sqrt(3), 1.1 * bound / Math.Sqrt(3));
        Assert.Equal(InitScheme.Uniform, ModelInitializer.ParseScheme("torch"));
        Assert.Throws<FormatException>(() => ModelInitializer.ParseScheme("xavier"));
    }
}
