namespace FleetLearn.Core.Training;

/// <summary>Learning rate as a function of the step, for <c>train</c> and local client training.</summary>
public abstract record LearningRateSchedule
{
    /// <summary>Learning rate at step <paramref name="step"/> of <paramref name="totalSteps"/>.</summary>
    public abstract float At(long step, long totalSteps);

    /// <summary>Parses <c>constant</c> or <c>cosine</c>.</summary>
    public static LearningRateSchedule Parse(string text, float baseRate) => text.Trim().ToLowerInvariant() switch
    {
        "constant" or "const" => new Constant(baseRate),
        "cosine" or "cos" => new Cosine(baseRate),
        _ => throw new FormatException($"Unknown learning-rate schedule '{text}'; expected 'constant' or 'cosine'."),
    };

    /// <summary>The same rate at every step.</summary>
    public sealed record Constant(float Rate) : LearningRateSchedule
    {
        public override float At(long step, long totalSteps) => Rate;
    }

    /// <summary>Cosine annealing from <paramref name="Rate"/> to 0 over the run, per step (Loshchilov &amp; Hutter 2017, no restarts).</summary>
    public sealed record Cosine(float Rate) : LearningRateSchedule
    {
        public override float At(long step, long totalSteps) =>
            totalSteps <= 0 ? Rate : (float)(0.5 * Rate * (1 + Math.Cos(Math.PI * Math.Min(step, totalSteps) / totalSteps)));
    }
}
