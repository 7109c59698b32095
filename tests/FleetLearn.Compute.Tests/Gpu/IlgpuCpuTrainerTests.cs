using FleetLearn.Compute.Gpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute.Tests.Gpu;

/// <summary>The trainer contract on ILGPU's CPU accelerator: proves the kernels on any machine.</summary>
public sealed class IlgpuCpuTrainerTests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize) =>
        IlgpuRuntime.CreateOnCpuAccelerator(spec, maxBatchSize);
}
