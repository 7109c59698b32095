using System.Globalization;
using FleetLearn.Core.Random;

namespace FleetLearn.Perception.Onnx;

/// <summary>
/// A small frozen convolutional backbone that FleetLearn generates itself (no download): fixed Gabor filters, a
/// seeded random projection, pooling. Written as ONNX by FleetLearn's own exporter, so tests and demos run the same
/// ONNX Runtime path as a user's backbone.
/// </summary>
/// <remarks>
/// <para>Graph (opset 13), for <c>image [batch, 1, 28, 28]</c> in [0, 1]:</para>
/// <code>
/// Conv 5×5, pad 2: 1 Gaussian low-pass + 16 Gabor filters (4 orientations × 4 phases, λ = 6 px, σ = 2 px) → Relu
///   → MaxPool 2×2 (14×14)
///   → Conv 3×3, stride 2, pad 1: 32 seeded random filters (He-normal) → Relu (7×7)
///   → AveragePool 3×3, stride 2 (3×3) → Flatten → features [batch, 288]
/// </code>
/// <para>Why this shape: oriented edge detectors at the first layer are what trained CNNs learn anyway (and what
/// V1 computes), so fixing them loses little; four phases make the Relu keep both edge polarities. The random second
/// layer mixes orientations nonlinearly (random features, Rahimi and Recht 2007), and the coarse 3×3 pooling grid
/// keeps where on the garment an edge is, which Fashion-MNIST needs (global pooling would lose sleeves against
/// trousers). The output scale is fixed so that features lie roughly in [0, 1] like raw pixels, so the same learning
/// rates work. The same seed always gives the same bytes.</para>
/// </remarks>
public static class GeneratedBackbone
{
    /// <summary>The input tensor.</summary>
    public const string InputName = "image";

    /// <summary>The feature tensor.</summary>
    public const string OutputName = "features";

    /// <summary>Default seed of the random projection (the fleet's backbone is one fixed artifact, independent of a run's seed).</summary>
    public const ulong DefaultSeed = 1;

    /// <summary>Frame shape: one grey channel, 28×28 (Fashion-MNIST).</summary>
    public static IReadOnlyList<int> FrameShape { get; } = [1, 28, 28];

    private const int Side = 28, C1 = 17, K1 = 5, C2 = 32, K2 = 3, Pooled = 3;

    /// <summary>Features per frame: 32 channels × 3 × 3.</summary>
    public const int FeatureSize = C2 * Pooled * Pooled;

    // Chosen so the mean feature over Fashion-MNIST training images is about 0.1 and the 99th percentile about 1
    // (measured with the test GeneratedBackbone_FeatureScale_LikePixels).
    private const float OutputScale = 0.5f;

    /// <summary>The backbone as ONNX bytes.</summary>
    public static byte[] Create(ulong seed = DefaultSeed)
    {
        var graph = new OnnxGraph("backbone/");
        graph.Input(InputName, "batch", 1, Side, Side);

        graph.Initializer("conv1/weight", FirstLayer(), C1, 1, K1, K1);
        graph.Initializer("conv1/bias", new float[C1], C1);
        graph.Node("Conv", [InputName, "conv1/weight", "conv1/bias"], ["conv1"],
            new OnnxAttribute.Ints("kernel_shape", [K1, K1]), new OnnxAttribute.Ints("pads", [2, 2, 2, 2]), new OnnxAttribute.Ints("strides", [1, 1]));
        graph.Node("Relu", ["conv1"], ["relu1"]);
        graph.Node("MaxPool", ["relu1"], ["pool1"], new OnnxAttribute.Ints("kernel_shape", [2, 2]), new OnnxAttribute.Ints("strides", [2, 2]));

        graph.Initializer("conv2/weight", SecondLayer(seed), C2, C1, K2, K2);
        graph.Initializer("conv2/bias", new float[C2], C2);
        graph.Node("Conv", ["pool1", "conv2/weight", "conv2/bias"], ["conv2"],
            new OnnxAttribute.Ints("kernel_shape", [K2, K2]), new OnnxAttribute.Ints("pads", [1, 1, 1, 1]), new OnnxAttribute.Ints("strides", [2, 2]));
        graph.Node("Relu", ["conv2"], ["relu2"]);
        graph.Node("AveragePool", ["relu2"], ["pool2"], new OnnxAttribute.Ints("kernel_shape", [3, 3]), new OnnxAttribute.Ints("strides", [2, 2]));
        graph.Node("Flatten", ["pool2"], [OutputName], new OnnxAttribute.Int("axis", 1));
        graph.Output(OutputName, "batch", FeatureSize);

        var metadata = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["fleetlearn.kind"] = "generated-backbone",
            ["fleetlearn.backbone_seed"] = seed.ToString(CultureInfo.InvariantCulture),
            ["fleetlearn.frame_shape"] = "1x28x28",
            ["fleetlearn.feature_size"] = FeatureSize.ToString(CultureInfo.InvariantCulture),
        };
        return OnnxGraph.Model(graph.ToGraphBytes("fleetlearn_generated_backbone", "Gabor bank + seeded random projection; see GeneratedBackbone."),
            OnnxProto.IrVersion, [("", OnnxProto.Opset)], 1, metadata, "FleetLearn's generated backbone for 28×28 grey frames.");
    }

    /// <summary>Channel 0: Gaussian low-pass (silhouette); channels 1–16: zero-mean unit-norm Gabor filters.</summary>
    private static float[] FirstLayer()
    {
        var w = new float[C1 * K1 * K1];
        const double sigma = 2.0, lambda = 6.0;
        int half = K1 / 2;
        // Low-pass: normalized to sum 1, so it passes local mean intensity.
        double sum = 0;
        for (int y = 0; y < K1; y++)
            for (int x = 0; x < K1; x++)
                sum += Math.Exp(-((x - half) * (x - half) + (y - half) * (y - half)) / (2 * sigma * sigma));
        for (int y = 0; y < K1; y++)
            for (int x = 0; x < K1; x++)
                w[y * K1 + x] = (float)(Math.Exp(-((x - half) * (x - half) + (y - half) * (y - half)) / (2 * sigma * sigma)) / sum);
        var kernel = new double[K1 * K1];
        int c = 1;
        for (int o = 0; o < 4; o++)
        {
            double theta = o * Math.PI / 4;
            for (int p = 0; p < 4; p++, c++)
            {
                double phase = p * Math.PI / 2;
                double mean = 0;
                for (int y = 0; y < K1; y++)
                {
                    for (int x = 0; x < K1; x++)
                    {
                        double dx = x - half, dy = y - half;
                        double u = dx * Math.Cos(theta) + dy * Math.Sin(theta);
                        double v = -dx * Math.Sin(theta) + dy * Math.Cos(theta);
                        kernel[y * K1 + x] = Math.Exp(-(u * u + v * v) / (2 * sigma * sigma)) * Math.Cos(2 * Math.PI * u / lambda + phase);
                        mean += kernel[y * K1 + x];
                    }
                }
                mean /= kernel.Length;
                double norm = 0;
                for (int i = 0; i < kernel.Length; i++)
                {
                    kernel[i] -= mean; // zero mean: responds to edges, not to brightness
                    norm += kernel[i] * kernel[i];
                }
                norm = Math.Sqrt(norm);
                for (int i = 0; i < kernel.Length; i++) w[c * K1 * K1 + i] = (float)(kernel[i] / norm);
            }
        }
        return w;
    }

    /// <summary>He-normal random filters from the seed, times the fixed output scale (Relu and pooling are positively homogeneous).</summary>
    private static float[] SecondLayer(ulong seed)
    {
        var rng = DeterministicRandom.Derive(seed, purpose: 0xBAC0B0E, index: 2);
        var w = new float[C2 * C1 * K2 * K2];
        double std = Math.Sqrt(2.0 / (C1 * K2 * K2));
        for (int i = 0; i < w.Length; i++) w[i] = (float)(rng.NextGaussian() * std * OutputScale);
        return w;
    }
}
