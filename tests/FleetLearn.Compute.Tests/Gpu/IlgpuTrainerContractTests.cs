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

/// <summary>The trainer contract on a CUDA GPU; skipped where there is none.</summary>
public sealed class IlgpuCudaTrainerTests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize)
    {
        if (!IlgpuRuntime.TryGetGpuDevice(out var device, out var reason))
            throw new SkipException($"No CUDA device: {reason}.");
        if (device.Type != AcceleratorType.Cuda)
            throw new SkipException($"The GPU found is not CUDA: {device.Description}.");
        Assert.True(IlgpuRuntime.TryCreateGpu(spec, maxBatchSize, out var trainer, out reason), reason);
        return trainer!;
    }
}
