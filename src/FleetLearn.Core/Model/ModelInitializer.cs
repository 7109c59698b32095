using FleetLearn.Core.Random;

namespace FleetLearn.Core.Model;

/// <summary>How initial weights are drawn.</summary>
public enum InitScheme
{
    /// <summary>He-normal (std √(2/In)) for ReLU layers, Glorot-uniform for the output layer, zero biases. The default.</summary>
    He,

    /// <summary>
    /// PyTorch's <c>nn.Linear</c> default (kaiming-uniform with a = √5): weights and biases uniform in
    /// ±1/√In. Smaller than He; use it to compare like for like with PyTorch baselines.
    /// </summary>
    Uniform,
}

/// <summary>Deterministic initialization of a flat parameter vector from a seed.</summary>
public static class ModelInitializer
{
    /// <summary>Parses <c>he</c> or <c>uniform</c> (alias <c>torch</c>).</summary>
    public static InitScheme ParseScheme(string text) => text.Trim().ToLowerInvariant() switch
    {
        "he" => InitScheme.He,
        "uniform" or "torch" => InitScheme.Uniform,
        _ => throw new FormatException($"Unknown initialization '{text}'; expected he or uniform (PyTorch's nn.Linear default)."),
    };

    /// <summary>
    /// Initializes a new parameter vector; the same seed and scheme give the same vector. See
    /// <see cref="InitScheme"/> for the distributions.
    /// </summary>
    public static float[] Initialize(ModelSpec spec, ulong seed, InitScheme scheme = InitScheme.He)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parameters = new float[spec.ParameterCount];
        Initialize(spec, seed, parameters, scheme);
        return parameters;
    }

    /// <inheritdoc cref="Initialize(ModelSpec, ulong, InitScheme)"/>
    public static void Initialize(ModelSpec spec, ulong seed, Span<float> parameters, InitScheme scheme = InitScheme.He)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (parameters.Length != spec.ParameterCount)
            throw new ArgumentException($"Expected {spec.ParameterCount} parameters for {spec}, got {parameters.Length}.", nameof(parameters));
        for (int l = 0; l < spec.LayerCount; l++)
        {
            var rng = DeterministicRandom.Derive(seed, purpose: 0x1A17, index: (ulong)l);
            int fanIn = spec.InputsOf(l), fanOut = spec.OutputsOf(l);
            var weights = parameters.Slice(spec.WeightOffset(l), spec.WeightCount(l));
            var biases = parameters.Slice(spec.BiasOffset(l), fanOut);
            if (scheme == InitScheme.Uniform)
            {
                double bound = 1.0 / Math.Sqrt(fanIn);
                for (int i = 0; i < weights.Length; i++) weights[i] = (float)((rng.NextDouble() * 2.0 - 1.0) * bound);
                for (int i = 0; i < biases.Length; i++) biases[i] = (float)((rng.NextDouble() * 2.0 - 1.0) * bound);
                continue;
            }
            bool isOutput = l == spec.LayerCount - 1;
            if (isOutput)
            {
                double limit = Math.Sqrt(6.0 / (fanIn + fanOut));
                for (int i = 0; i < weights.Length; i++)
                    weights[i] = (float)((rng.NextDouble() * 2.0 - 1.0) * limit);
            }
            else
            {
                double std = Math.Sqrt(2.0 / fanIn);
                for (int i = 0; i < weights.Length; i++)
                    weights[i] = (float)(rng.NextGaussian() * std);
            }
            biases.Clear();
        }
    }
}
