using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.SecureAggregation;

namespace FleetLearn.Cli.Commands;

/// <summary>
/// <c>fleetlearn privacy epsilon|noise|secagg-params</c>: the Rényi-DP accountant of the Poisson-sampled Gaussian mechanism
/// (Mironov, Talwar, Zhang 2019) with the improved RDP → (ε, δ) conversion (Balle et al. 2020), and SecAgg+'s k and t
/// (Bell et al. 2020) for a colluder and dropout fraction.
/// </summary>
/// <remarks>With <c>--json</c> the last line of stdout is one JSON object, for scripts.</remarks>
internal static class PrivacyCommand
{
    public static Command Create()
    {
        var privacy = new Command("privacy", "Differential-privacy accounting for DP-FedAvg: ε from a noise multiplier, or the noise multiplier for a target ε.");
        privacy.Subcommands.Add(CreateEpsilon());
        privacy.Subcommands.Add(CreateNoise());
        privacy.Subcommands.Add(CreateSecAggParams());
        return privacy;
    }

    private static Command CreateEpsilon()
    {
        var q = SamplingRateOption();
        var sigma = new Option<double>("--sigma") { Description = "Noise multiplier σ: noise standard deviation divided by the clipping norm C (> 0).", Required = true };
        sigma.Validators.Add(r => Check(r, sigma.Name, v => v > 0 && double.IsFinite(v), "must be a positive number"));
        var steps = StepsOption();
        var delta = DeltaOption();
        var conversion = ConversionOption();
        var json = JsonOption();
        var cmd = new Command("epsilon", "ε after T rounds of the sampled Gaussian mechanism at sampling rate q and noise multiplier σ.")
        {
            q, sigma, steps, delta, conversion, json,
        };
        cmd.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            double qv = parseResult.GetValue(q), sv = parseResult.GetValue(sigma), dv = parseResult.GetValue(delta);
            int tv = parseResult.GetValue(steps);
            var conv = parseResult.GetValue(conversion);
            var spent = RdpAccountant.GetEpsilon(qv, sv, tv, dv, conversion: conv);
            output.WriteLine(Invariant($"Sampled Gaussian mechanism: q = {qv}, σ = {sv}, {tv} rounds, δ = {dv}"));
            output.WriteLine(Invariant($"ε = {spent.Epsilon:0.######} at Rényi order α = {spent.Order} ({Describe(conv)})"));
            if (parseResult.GetValue(json))
                output.WriteLine(JsonSerializer.Serialize(new EpsilonResult(spent.Epsilon, spent.Order), JsonOptions));
            return 0;
        });
        return cmd;
    }

    private static Command CreateNoise()
    {
        var q = SamplingRateOption();
        var epsilon = new Option<double>("--epsilon") { Description = "Target ε (> 0).", Required = true };
        epsilon.Validators.Add(r => Check(r, epsilon.Name, v => v > 0 && double.IsFinite(v), "must be a positive number"));
        var steps = StepsOption();
        var delta = DeltaOption();
        var conversion = ConversionOption();
        var json = JsonOption();
        var cmd = new Command("noise", "Smallest noise multiplier σ whose ε after T rounds at sampling rate q is at most the target.")
        {
            q, epsilon, steps, delta, conversion, json,
        };
        cmd.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            double qv = parseResult.GetValue(q), ev = parseResult.GetValue(epsilon), dv = parseResult.GetValue(delta);
            int tv = parseResult.GetValue(steps);
            var conv = parseResult.GetValue(conversion);
            double sigma;
            try
            {
                sigma = RdpAccountant.GetNoiseMultiplier(qv, ev, tv, dv, conversion: conv);
            }
            catch (ArgumentException e)
            {
                parseResult.InvocationConfiguration.Error.WriteLine($"error: {e.Message}");
                return 1;
            }
            var check = RdpAccountant.GetEpsilon(qv, sigma, tv, dv, conversion: conv);
            output.WriteLine(Invariant($"Target (ε = {ev}, δ = {dv}) over {tv} rounds at q = {qv} ({Describe(conv)})"));
            output.WriteLine(Invariant($"σ = {sigma:0.######} (gives ε = {check.Epsilon:0.######} at α = {check.Order})"));
            if (parseResult.GetValue(json))
                output.WriteLine(JsonSerializer.Serialize(new NoiseResult(sigma), JsonOptions));
            return 0;
        });
        return cmd;
    }

    private static Command CreateSecAggParams()
    {
        var vehicles = new Option<int>("--vehicles") { Description = "n: vehicles in one secure sum (3..1048576).", Required = true };
        vehicles.Validators.Add(r =>
        {
            int v = r.GetValueOrDefault<int>();
            if (v < 3 || v > SecAggParameters.MaxCohortSize) r.AddError(Invariant($"--vehicles must be within 3..{SecAggParameters.MaxCohortSize}; got {v}."));
        });
        var colluders = new Option<double>("--colluders") { Description = "γ: fraction of vehicles that may collude with the aggregator, in [0, 1).", Required = true };
        colluders.Validators.Add(r => Check(r, colluders.Name, v => v >= 0 && v < 1, "must lie in [0, 1)"));
        var dropout = new Option<double>("--dropout") { Description = "δ: fraction of vehicles that may drop out mid-round, in [0, 1).", Required = true };
        dropout.Validators.Add(r => Check(r, dropout.Name, v => v >= 0 && v < 1, "must lie in [0, 1)"));
        var target = new Option<double>("--failure-log2") { Description = "log2 of the largest acceptable failure probability (Bell et al. 2020 target 2^-40).", DefaultValueFactory = _ => SecAggPlusParameters.DefaultTargetLog2 };
        target.Validators.Add(r => Check(r, target.Name, v => v < 0 && double.IsFinite(v), "must be a negative number"));
        var holders = new Option<string>("--holders")
        {
            Description = "How share holders are picked: ring (the Harary ring of the round seed, semi-honest aggregator) or self (each vehicle draws its own, the mode against a malicious aggregator).",
            DefaultValueFactory = _ => "ring",
        };
        holders.AcceptOnlyFromAmong("ring", "self");
        var json = JsonOption();
        var cmd = new Command("secagg-params", "SecAgg+ neighbours k and threshold t whose failure probability (colluders reconstructing a secret, a partial sum revealed, or too few live share holders) is at most 2^target.")
        {
            vehicles, colluders, dropout, target, holders, json,
        };
        cmd.SetAction(parseResult =>
        {
            var output = parseResult.InvocationConfiguration.Output;
            int n = parseResult.GetValue(vehicles);
            double g = parseResult.GetValue(colluders), d = parseResult.GetValue(dropout);
            if (g + d >= 1)
            {
                parseResult.InvocationConfiguration.Error.WriteLine(Invariant($"error: --colluders {g} + --dropout {d} must be below 1: no honest survivor would be left."));
                return 1;
            }
            bool self = parseResult.GetValue(holders) == "self";
            var c = self ? SecAggPlusParameters.DeriveSelfChosen(n, g, d, parseResult.GetValue(target)) : SecAggPlusParameters.Derive(n, g, d, parseResult.GetValue(target));
            string graph = c.Neighbors >= n - 1 ? "complete graph (SecAgg)"
                : self ? Invariant($"k = {c.Neighbors} self-chosen holders (≈ {2.0 * c.Neighbors - (double)c.Neighbors * c.Neighbors / (n - 1):0.#} mask neighbours on average)")
                : Invariant($"k = {c.Neighbors} neighbours");
            output.WriteLine(Invariant($"SecAgg+ for n = {n}, colluders γ = {g}, dropout δ = {d}: {graph}, threshold t = {c.Threshold}"));
            output.WriteLine(double.IsNegativeInfinity(c.FailureLog2)
                ? "failure impossible: too few colluders or dropouts to reach any failure event (JSON failure_log2 = -1074, the smallest double exponent)"
                : Invariant($"failure ≤ 2^{c.FailureLog2:0.##} (colluding holders 2^{c.ColludingHoldersLog2:0.##}, partition 2^{c.PartitionLog2:0.##}, too few live holders 2^{c.DropoutLog2:0.##})"));
            if (parseResult.GetValue(json))
                output.WriteLine(JsonSerializer.Serialize(new SecAggParamsResult(c.Neighbors, c.Threshold, double.IsNegativeInfinity(c.FailureLog2) ? -1074 : c.FailureLog2)));
            return 0;
        });
        return cmd;
    }

    private sealed record SecAggParamsResult(
        [property: JsonPropertyName("neighbors")] int Neighbors,
        [property: JsonPropertyName("threshold")] int Threshold,
        [property: JsonPropertyName("failure_log2")] double FailureLog2);

    private static readonly JsonSerializerOptions JsonOptions = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    private sealed record EpsilonResult(double Epsilon, double Order);

    private sealed record NoiseResult(double Sigma);

    private static Option<double> SamplingRateOption()
    {
        var q = new Option<double>("--q") { Description = "Sampling rate q ∈ (0, 1]: probability that a vehicle is in a round (1 when vehicles check in when they please).", Required = true };
        q.Validators.Add(r => Check(r, q.Name, v => v > 0 && v <= 1, "must lie in (0, 1]"));
        return q;
    }

    private static Option<int> StepsOption()
    {
        var steps = new Option<int>("--steps") { Description = "Number of rounds T (≥ 1).", Required = true };
        steps.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() < 1) r.AddError(Invariant($"--steps must be at least 1; got {r.GetValueOrDefault<int>()}."));
        });
        return steps;
    }

    private static Option<double> DeltaOption()
    {
        var delta = new Option<double>("--delta") { Description = "δ ∈ (0, 1) of the (ε, δ) guarantee; choose it well below 1/(number of vehicles).", Required = true };
        delta.Validators.Add(r => Check(r, delta.Name, v => v > 0 && v < 1, "must lie in (0, 1)"));
        return delta;
    }

    private static Option<RdpConversion> ConversionOption() => new("--conversion")
    {
        Description = "RDP → (ε, δ) conversion: Improved (Balle et al. 2020, as Opacus and TF-Privacy) or Classic (Mironov 2017).",
        DefaultValueFactory = _ => RdpConversion.Improved,
    };

    private static Option<bool> JsonOption() => new("--json") { Description = "Also print the result as one JSON object on the last line of stdout." };

    private static void Check(OptionResult result, string name, Func<double, bool> valid, string rule)
    {
        double v = result.GetValueOrDefault<double>();
        if (!valid(v)) result.AddError(Invariant($"{name} {rule}; got {v}."));
    }

    private static string Describe(RdpConversion conversion) => conversion == RdpConversion.Improved
        ? "improved conversion, Balle et al. 2020"
        : "classic conversion, Mironov 2017";

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
