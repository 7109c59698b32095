using FleetLearn.Compute.Cpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute.Tests.Cpu;

/// <summary>The trainer contract on the CPU backend at the widest accelerated vector width, one thread.</summary>
public sealed class CpuTrainerTests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize) => new CpuTrainer(spec, maxBatchSize);
}

/// <summary>The trainer contract with every phase split over two threads.</summary>
public sealed class CpuTrainerTwoThreadTests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize) => new CpuTrainer(spec, maxBatchSize, threads: 2) { ParallelThreshold = 0 };
}

/// <summary>The trainer contract with 256-bit kernels (the path of x64 machines without AVX-512).</summary>
public sealed class CpuTrainerVector256Tests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize)
    {
        Skip.IfNot(System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated, "256-bit vectors are not accelerated here.");
        return new CpuTrainer(spec, maxBatchSize, 1, SimdWidth.Vector256);
    }
}

/// <summary>The trainer contract with 128-bit kernels (the path of arm64 vehicles).</summary>
public sealed class CpuTrainerVector128Tests : TrainerContractTests
{
    protected override ITrainer CreateTrainer(ModelSpec spec, int maxBatchSize) => new CpuTrainer(spec, maxBatchSize, 1, SimdWidth.Vector128);
}
