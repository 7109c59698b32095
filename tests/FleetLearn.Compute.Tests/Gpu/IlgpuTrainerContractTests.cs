using FleetLearn.Compute.Gpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;
using ILGPU.Runtime;

namespace FleetLearn.Compute.Tests.Gpu;

/// <summary>The trainer contract on ILGPU's CPU accelerator: proves the kernels on any machine.</summary>
public sealed class IlgpuCpuTrainerTests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize) =>
        IlgpuRuntime.CreateOnCpuAccelerator(spec, maxBatchSize);
}

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

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void SkipOrFail(string reason)
    {
        if (Environment.GetEnvironmentVariable("FLEETLEARN_REQUIRE_CUDA") == "1")
            Assert.Fail(reason + " FLEETLEARN_REQUIRE_CUDA=1 demands a CUDA device.");
        throw new SkipException(reason);
    }
}
