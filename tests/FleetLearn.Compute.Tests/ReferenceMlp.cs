using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute.Tests;

/// <summary>
/// Straightforward double-precision MLP (no SIMD, no tricks) used as ground truth in tests:
/// loss, analytic gradient and logits for the flat layout documented on <see cref="ModelSpec"/>.
/// </summary>
internal static class ReferenceMlp
{
    public static double[][] Activations(ModelSpec spec, ReadOnlySpan<float> p, ReadOnlySpan<float> x)
    {
        var acts = new double[spec.LayerCount + 1][];
        acts[0] = new double[spec.InputSize];
        for (int i = 0; i < x.Length; i++) acts[0][i] = x[i];
        for (int l = 0; l < spec.LayerCount; l++)
        {
            int nIn = spec.InputsOf(l), nOut = spec.OutputsOf(l);
            int wo = spec.WeightOffset(l), bo = spec.BiasOffset(l);
            var y = new double[nOut];
            for (int o = 0; o < nOut; o++)
            {
                double s = p[bo + o];
                for (int i = 0; i < nIn; i++) s += (double)p[wo + o * nIn + i] * acts[l][i];
                y[o] = l < spec.LayerCount - 1 ? Math.Max(0, s) : s;
            }
            acts[l + 1] = y;
        }
        return acts;
    }

    public static double[] Softmax(double[] z)
    {
        double max = z.Max();
        var e = z.Select(v => Math.Exp(v - max)).ToArray();
        double sum = e.Sum();
        return e.Select(v => v / sum).ToArray();
    }

    /// <summary>Mean cross-entropy over the rows and its gradient (mean over rows).</summary>
    public static double LossAndGradient(ModelSpec spec, ReadOnlySpan<float> p, LabeledData data, ReadOnlySpan<int> rows, double[]? gradient)
    {
        if (gradient is not null) Array.Clear(gradient);
        double loss = 0;
        foreach (int r in rows)
        {
            var acts = Activations(spec, p, data.Row(r));
            var prob = Softmax(acts[^1]);
            int label = data.Labels[r];
            loss -= Math.Log(Math.Max(prob[label], 1e-300));
            if (gradient is null) continue;
            var delta = prob.ToArray();
            delta[label] -= 1;
            for (int l = spec.LayerCount - 1; l >= 0; l--)
            {
                int nIn = spec.InputsOf(l), nOut = spec.OutputsOf(l);
                int wo = spec.WeightOffset(l), bo = spec.BiasOffset(l);
                var prev = new double[nIn];
                for (int o = 0; o < nOut; o++)
                {
                    gradient[bo + o] += delta[o] / rows.Length;
                    for (int i = 0; i < nIn; i++)
                    {
                        gradient[wo + o * nIn + i] += delta[o] * acts[l][i] / rows.Length;
                        prev[i] += delta[o] * p[wo + o * nIn + i];
                    }
                }
                if (l > 0)
                {
                    for (int i = 0; i < nIn; i++) prev[i] = acts[l][i] > 0 ? prev[i] : 0;
                }
                delta = prev;
            }
        }
        return loss / rows.Length;
    }

    /// <summary>Random dataset with features in [0, 1) and uniform labels.</summary>
    public static LabeledData RandomData(int rows, int features, int classes, ulong seed)
    {
        var rng = new FleetLearn.Core.Random.DeterministicRandom(seed);
        var x = new float[rows * features];
        for (int i = 0; i < x.Length; i++) x[i] = rng.NextSingle();
        var y = new byte[rows];
        for (int i = 0; i < rows; i++) y[i] = (byte)rng.NextInt(classes);
        return new LabeledData(x, y, features, classes, "random");
    }
}
