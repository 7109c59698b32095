using System.Globalization;
using System.Reflection;
using FleetLearn.Core.Numerics;

namespace FleetLearn.Core.Federated;

/// <summary>
/// Combines the cohort's updates Δ_k = w_k − w_global into one update. Streaming aggregators
/// fold each update as it arrives (memory O(model)); the others say why they must buffer.
/// </summary>
public interface IUpdateAggregator
{
    /// <summary>True when memory stays O(model) whatever the cohort size.</summary>
    bool IsStreaming { get; }

    /// <summary>Updates folded so far.</summary>
    int Count { get; }

    /// <summary>Sum of the weights folded so far.</summary>
    double TotalWeight { get; }

    /// <summary>Folds one update with its weight (e.g. the vehicle's sample count).</summary>
    void Add(ReadOnlySpan<float> delta, double weight);

    /// <summary>Folds one update held as float32 segments (as received, not copied); aggregators that cannot fold in place copy it into an array first.</summary>
    void Add(in FloatSegments delta, double weight) => Add(delta.ToArray(), weight);

    /// <summary>
    /// Folds several updates that arrived together (e.g. drained from the receive queue). The
    /// result is the same as adding them one by one in order, up to float rounding; streaming
    /// aggregators fold them in one pass over their accumulator.
    /// </summary>
    void AddMany(ReadOnlySpan<ReadOnlyMemory<float>> deltas, ReadOnlySpan<double> weights)
    {
        if (deltas.Length != weights.Length) throw new ArgumentException("One weight per update is required.");
        for (int i = 0; i < deltas.Length; i++) Add(deltas[i].Span, weights[i]);
    }

    /// <summary>Writes the combined update (e.g. the weighted mean). Throws when no update was added.</summary>
    void Complete(Span<float> combined);
}

/// <summary>
/// A federated strategy: the local objective's proximal weight, how updates combine, and the
/// server optimizer that turns the combined update into the next global model.
/// </summary>
/// <remarks>To add a strategy, write one class with <see cref="StrategyNameAttribute"/> and a
/// constructor taking <see cref="StrategyArgs"/>; <see cref="StrategyCatalog.Parse"/> finds it.</remarks>
public interface IFederatedStrategy
{
    /// <summary>Canonical name with arguments, e.g. <c>fedprox:0.01</c>.</summary>
    string Name { get; }

    /// <summary>FedProx μ for the vehicles' local objective; 0 for none.</summary>
    float ProximalMu { get; }

    /// <summary>Server learning rate in use.</summary>
    float ServerLearningRate { get; }

    /// <summary>Creates the aggregator for one round over <paramref name="dimension"/> parameters.</summary>
    IUpdateAggregator CreateAggregator(int dimension);

    /// <summary>Server optimizer step: updates <paramref name="global"/> in place from the combined update.</summary>
    void ApplyUpdate(Span<float> global, ReadOnlySpan<float> combined);
}

/// <summary>Names a strategy for the command line, e.g. <c>[StrategyName("fedprox", "fedprox:μ")]</c>.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class StrategyNameAttribute(string name, string usage) : Attribute
{
    public string Name { get; } = name;

    public string Usage { get; } = usage;
}

/// <summary>What the command line gives a strategy: the text after the colon and the server learning rate, if set.</summary>
public sealed record StrategyArgs(string? Argument, float? ServerLearningRate)
{
    /// <summary>The argument as a number, or <paramref name="fallback"/> when absent; throws a clear error when malformed.</summary>
    public double Number(string strategy, double fallback, double min, double max)
    {
        if (Argument is null) return fallback;
        if (!double.TryParse(Argument, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v >= min && v <= max))
            throw new FormatException($"Strategy '{strategy}': argument '{Argument}' must be a number within [{min}, {max}].");
        return v;
    }
}

/// <summary>Finds strategies by name.</summary>
public static class StrategyCatalog
{
    private static readonly Lazy<Dictionary<string, (Type Type, string Usage)>> Registry = new(() =>
        typeof(IFederatedStrategy).Assembly.GetTypes()
            .Select(t => (Type: t, Attr: t.GetCustomAttribute<StrategyNameAttribute>()))
            .Where(x => x.Attr is not null && typeof(IFederatedStrategy).IsAssignableFrom(x.Type))
            .ToDictionary(x => x.Attr!.Name, x => (x.Type, x.Attr!.Usage), StringComparer.OrdinalIgnoreCase));

    /// <summary>Usage strings of every strategy, e.g. <c>fedprox:μ</c>.</summary>
    public static IReadOnlyList<string> Usages => Registry.Value.Values.Select(v => v.Usage).Order(StringComparer.Ordinal).ToArray();

    /// <summary>Parses <c>name[:argument]</c>.</summary>
    public static IFederatedStrategy Parse(string text, float? serverLearningRate = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        string name = (colon < 0 ? text : text[..colon]).Trim();
        string? argument = colon < 0 ? null : text[(colon + 1)..].Trim();
        if (!Registry.Value.TryGetValue(name, out var entry))
            throw new FormatException($"Unknown strategy '{text}'; expected one of {string.Join(", ", Usages)}.");
        if (serverLearningRate is { } lr && !(lr > 0 && float.IsFinite(lr)))
            throw new FormatException($"Server learning rate must be a positive number, not {lr}.");
        try
        {
            return (IFederatedStrategy)Activator.CreateInstance(entry.Type, new StrategyArgs(argument, serverLearningRate))!;
        }
        catch (TargetInvocationException e) when (e.InnerException is FormatException f)
        {
            throw f;
        }
    }
}
