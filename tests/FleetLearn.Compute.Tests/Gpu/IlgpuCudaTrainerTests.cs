using FleetLearn.Compute.Gpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;
using ILGPU.Runtime;

namespace FleetLearn.Compute.Tests.Gpu;

/// <summary>
/// The trainer contract on a CUDA GPU; skipped where there is none, failed instead when
/// <c>FLEETLEARN_REQUIRE_CUDA=1</c> (set it on GPU machines so a broken driver cannot pass as a skip).
/// </summary>
public sealed class IlgpuCudaTrainerTests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize)
    {
        if (!IlgpuRuntime.TryGetGpuDevice(out var device, out var reason))
            SkipOrFail($"No CUDA device: {reason}.");
        else if (device.Type != AcceleratorType.Cuda)
            SkipOrFail($"The GPU found is not CUDA: {device.Description}.");
        Assert.True(IlgpuRuntime.TryCreateGpu(spec, maxBatchSize, out var trainer, out reason), reason);
        return trainer!;
    }

    /// <summary>Full-size 2NN: many K tiles and hundreds of groups per GEMM, only affordable on a GPU.</summary>
    [SkippableFact]
    public void ComputeGradient_TwoNNFullBatch_MatchesReference()
    {
        var spec = ModelSpec.TwoNN;
        var data = ReferenceMlp.RandomData(64, spec.InputSize, spec.OutputSize, seed: 50);
        var p = ModelInitializer.Initialize(spec, seed: 51);
        using var trainer = CreateTrainer(spec, 64);
        trainer.LoadParameters(p);
        int[] rows = Enumerable.Range(0, 64).Reverse().ToArray();
        var grad = new float[spec.ParameterCount];
        float loss = trainer.ComputeGradient(data, rows, grad);

        var expected = new double[spec.ParameterCount];
        double refLoss = ReferenceMlp.LossAndGradient(spec, p, data, rows, expected);
        Assert.Equal(refLoss, loss, Tolerance);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - grad[i]) <= Tolerance * (1 + Math.Abs(expected[i])), $"gradient[{i}]: expected {expected[i]}, got {grad[i]}");
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void SkipOrFail(string reason)
    {
        if (Environment.GetEnvironmentVariable("FLEETLEARN_REQUIRE_CUDA") == "1")
            Assert.Fail(reason + " FLEETLEARN_REQUIRE_CUDA=1 demands a CUDA device.");
        throw new SkipException(reason);
    }
}
