using FleetLearn.Core.Model;

namespace FleetLearn.Core.Training;

/// <summary>Hyper-parameters of one SGD step (PyTorch semantics).</summary>
/// <remarks>
/// With gradient g, weight decay λ, momentum μ, proximal weight ρ and anchor w₀ (FedProx, Li et al. 2020):
/// <c>d = g + λ·w + ρ·(w − w₀)</c>; <c>v ← μ·v + d</c> (v starts at d); <c>w ← w − lr·v</c>.
/// Weight decay applies to weights and biases alike, as in <c>torch.optim.SGD</c>.
/// </remarks>
public readonly record struct SgdOptions(float LearningRate, float Momentum = 0f, float WeightDecay = 0f)
{
    /// <summary>Throws when a value is negative, NaN or momentum is not below 1.</summary>
    public void Validate()
    {
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate))
            throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "Learning rate must be a positive finite number.");
        if (!(Momentum >= 0 && Momentum < 1))
            throw new ArgumentOutOfRangeException(nameof(Momentum), Momentum, "Momentum must be within [0, 1).");
        if (!(WeightDecay >= 0) || !float.IsFinite(WeightDecay))
            throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "Weight decay must be a non-negative finite number.");
    }
}

/// <summary>Mean loss and accuracy over a set of samples.</summary>
public readonly record struct EvaluationResult(double Loss, double Accuracy, int Count);

/// <summary>
/// A training backend holding one model's parameters and optimizer state (CPU SIMD or ILGPU).
/// Not thread-safe: one trainer serves one training loop at a time.
/// </summary>
public interface ITrainer : IDisposable
{
    /// <summary>The architecture this trainer was built for.</summary>
    ModelSpec Spec { get; }

    /// <summary>Which backend and device, e.g. <c>cpu (AVX-512, 1 thread)</c> or <c>ilgpu-cuda (NVIDIA H200)</c>.</summary>
    string Description { get; }

    /// <summary>Largest batch accepted by <see cref="TrainBatch"/> and <see cref="ComputeGradient"/>.</summary>
    int MaxBatchSize { get; }

    /// <summary>Replaces the parameters and clears the optimizer state (momentum buffers).</summary>
    void LoadParameters(ReadOnlySpan<float> parameters);

    /// <summary>Copies the current parameters out.</summary>
    void ReadParameters(Span<float> destination);

    /// <summary>Clears momentum buffers without touching the parameters.</summary>
    void ResetOptimizerState();

    /// <summary>
    /// Adds the FedProx proximal term <c>(ρ/2)·‖w − anchor‖²</c> to the local objective; ρ = 0 removes it.
    /// The anchor is copied.
    /// </summary>
    void SetProximalTerm(ReadOnlySpan<float> anchor, float mu);

    /// <summary>
    /// One SGD step on the rows <paramref name="indices"/> of <paramref name="data"/>. Returns the
    /// batch's mean cross-entropy loss before the step.
    /// </summary>
    float TrainBatch(LabeledData data, ReadOnlySpan<int> indices, in SgdOptions options);

    /// <summary>
    /// Mean cross-entropy loss over the rows <paramref name="indices"/> and its gradient with
    /// respect to every parameter (flat layout of <see cref="ModelSpec"/>), without updating anything.
    /// Excludes weight decay and the proximal term.
    /// </summary>
    float ComputeGradient(LabeledData data, ReadOnlySpan<int> indices, Span<float> gradient);

    /// <summary>Mean loss and accuracy of the current parameters over rows [start, start+count).</summary>
    EvaluationResult Evaluate(LabeledData data, int start = 0, int count = -1);

    /// <summary>Logits (pre-softmax) for <paramref name="count"/> rows of <paramref name="inputs"/>.</summary>
    void Forward(ReadOnlySpan<float> inputs, int count, Span<float> logits);
}
