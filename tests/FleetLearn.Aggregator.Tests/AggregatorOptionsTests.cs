using System.ComponentModel.DataAnnotations;

namespace FleetLearn.Aggregator.Tests;

/// <summary>Validation of <see cref="AggregatorOptions"/> that guards against what vehicles claim about themselves.</summary>
public sealed class AggregatorOptionsTests
{
    [Fact]
    public void TextSettings_ParsedOncePerValue_TheRoundCodeReadsModes()
    {
        var options = new AggregatorOptions { SecureAggregation = "Plus", Privacy = "distributed", Codec = "rot+q8" };
        Assert.Equal(Core.Compression.SecureAggregationMode.Plus, options.SecureMode);
        Assert.Equal(Core.Privacy.NoiseMode.Distributed, options.PrivacyMode);
        Assert.Equal("rot+q8", options.CodecSpec.ToString());
        Assert.Same(options.CodecSpec, options.CodecSpec); // parsed once, not per read
        options.Privacy = "off";
        Assert.Null(options.PrivacyMode); // a new value is parsed again
        options.SecureAggregation = "sometimes";
        Assert.Equal("SecureAggregation 'sometimes': expected off, full or plus.", Assert.Throws<FormatException>(() => options.SecureMode).Message);
    }

    private static List<string> Errors(AggregatorOptions options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results.Select(r => r.ErrorMessage ?? "").ToList();
    }

    [Fact]
    public void Defaults_CapTheWeightAVehicleMayClaim()
    {
        var options = new AggregatorOptions();
        Assert.NotNull(options.WeightCap);
        Assert.True(double.IsFinite(options.WeightCap!.Value));
        Assert.Empty(Errors(options));
    }

    [Theory]
    [InlineData(null)]
    [InlineData(0.0)]
    [InlineData(-1.0)]
    [InlineData(double.PositiveInfinity)]
    [InlineData(double.NaN)]
    public void WeightCap_MissingOrNotAPositiveFiniteNumber_IsRefusedNamingIt(double? cap)
    {
        // The weight is a sample count the vehicle reports itself: without a cap one vehicle claiming 10^9 samples
        // outweighs the whole cohort (and sets the round's public bound W).
        var errors = Errors(new AggregatorOptions { WeightCap = cap });
        Assert.Contains(errors, e => e.Contains("Aggregator:WeightCap", StringComparison.Ordinal));
    }

    [Fact]
    public void MaxWeight_AboveTheCap_IsRefused()
    {
        var errors = Errors(new AggregatorOptions { WeightCap = 1000, MaxWeight = 5000 });
        Assert.Contains(errors, e => e.Contains("Aggregator:MaxWeight", StringComparison.Ordinal));
        Assert.Empty(Errors(new AggregatorOptions { WeightCap = 1000, MaxWeight = 1000 }));
    }

    [Fact]
    public void WeightCap_UnderDp_IsStillRequiredButUnused()
    {
        // Under DP every update weighs 1; the cap is harmless there and keeps one rule for every configuration.
        var errors = Errors(new AggregatorOptions { Privacy = "central", ClipNorm = 1, WeightCap = null });
        Assert.Contains(errors, e => e.Contains("Aggregator:WeightCap", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(double.NaN)]
    [InlineData(1e10)]
    public void MaxUpdateNorm_OutOfRange_IsRefusedNamingIt(double bound) =>
        Assert.Contains(Errors(new AggregatorOptions { MaxUpdateNorm = bound }), e => e.Contains("Aggregator:MaxUpdateNorm", StringComparison.Ordinal));

    [Fact]
    public void CohortTimesCapTimesBound_ThatCouldOverflowTheSum_IsRefused() =>
        Assert.Contains(Errors(new AggregatorOptions { CohortSize = 1_000_000, WeightCap = 1e30, MaxUpdateNorm = 1e9 }), e => e.Contains("overflow", StringComparison.Ordinal));

    [Theory]
    [InlineData("plus", null, true)]
    [InlineData("off", "ca.crt", true)]
    [InlineData("plus", "ca.crt", false)]
    public void SecAggMaliciousServer_NeedsSecureAggregationAndTheDeviceCa(string secure, string? ca, bool refused)
    {
        var errors = Errors(new AggregatorOptions { SecureAggregation = secure, DeviceCaFile = ca, SecAggMaliciousServer = true, ClipNorm = 1, CohortSize = 10 });

        Assert.Equal(refused, errors.Any(e => e.Contains("Aggregator:SecAggMaliciousServer", StringComparison.Ordinal)));
    }

    [Fact]
    public void Shards_OverMqtt_SyncRoundsWithoutDistributedDpOrMaliciousMode()
    {
        const string Refusal = "Aggregator:Shards / ShardIndex: sharded rounds over MQTT run synchronous rounds, without the malicious-aggregator mode and without distributed DP (per-shard noise shares are built in process only: docs/scale.md).";
        Assert.Empty(Errors(new AggregatorOptions { Shards = 3, SecureAggregation = "plus", Codec = "q8", Privacy = "central", ClipNorm = 1 }));
        Assert.Empty(Errors(new AggregatorOptions { ShardIndex = 2, SecureAggregation = "plus", Codec = "q8", ClipNorm = 1 }));
        Assert.Contains(Refusal, Errors(new AggregatorOptions { Shards = 3, SecureAggregation = "plus", Privacy = "distributed", ClipNorm = 1 }));
        Assert.Contains(Refusal, Errors(new AggregatorOptions { ShardIndex = 0, Mode = "fedbuff" }));
        Assert.Contains("Aggregator:Shards (a coordinator) and Aggregator:ShardIndex (a shard) exclude each other.", Errors(new AggregatorOptions { Shards = 2, ShardIndex = 0 }));
        Assert.NotEmpty(Errors(new AggregatorOptions { Shards = 0 }));
        // A bad privacy text is reported, not thrown, with shards as without.
        Assert.Contains("Aggregator: Privacy 'sometimes': expected off, central or distributed.", Errors(new AggregatorOptions { Shards = 3, Privacy = "sometimes" }));
    }

    [Fact]
    public void Validate_FedBuffWithSecureAggregation_Accepted_MaliciousModeAndDistributedDpRefused()
    {
        Assert.Empty(Errors(new AggregatorOptions { Mode = "fedbuff", SecureAggregation = "plus", Codec = "q8", ClipNorm = 1, Privacy = "central" }));
        Assert.Contains("Aggregator:Mode fedbuff with Aggregator:SecAggMaliciousServer is not built: secure groups over MQTT run the semi-honest protocol (docs/async.md).",
            Errors(new AggregatorOptions { Mode = "fedbuff", SecureAggregation = "plus", Codec = "q8", ClipNorm = 1, SecAggMaliciousServer = true }));
        Assert.Contains("distributed noise shares need a cohort fixed in advance", string.Join("\n", Errors(new AggregatorOptions { Mode = "fedbuff", SecureAggregation = "plus", Codec = "q8", ClipNorm = 1, Privacy = "distributed" })), StringComparison.Ordinal);
    }
}
