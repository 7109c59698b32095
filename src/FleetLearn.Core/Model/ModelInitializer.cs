using FleetLearn.Core.Random;

namespace FleetLearn.Core.Model;

/// <summary>Deterministic initialization of a flat parameter vector from a seed.</summary>
public static class ModelInitializer
{
    /// <summary>
    /// He-normal weights (std √(2/In)) for layers followed by ReLU, Glorot-uniform
    /// (±√(6/(In+Out))) for the output layer, zero biases. The same seed gives the same vector.
    /// </summary>
    public static float[] Initialize(ModelSpec spec, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var parameters = new float[spec.ParameterCount];
        Initialize(spec, seed, parameters);
        return parameters;
    }

    /// <inheritdoc cref="Initialize(ModelSpec, ulong)"/>
    public static void Initialize(ModelSpec spec, ulong seed, Span<float> parameters)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (parameters.Length != spec.ParameterCount)
            throw new ArgumentException($"Expected {spec.ParameterCount} parameters for {spec}, got {parameters.Length}.", nameof(parameters));
        for (int l = 0; l < spec.LayerCount; l++)
        {
            var rng = DeterministicRandom.Derive(seed, purpose: 0x1A17, index: (ulong)l);
            int fanIn = spec.InputsOf(l), fanOut = spec.OutputsOf(l);
            var weights = parameters.Slice(spec.WeightOffset(l), spec.WeightCount(l));
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
            parameters.Slice(spec.BiasOffset(l), fanOut).Clear();
        }
    }
}
