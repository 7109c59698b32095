using FleetLearn.Compute.Gpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute.Tests.Gpu;

/// <summary>ILGPU-specific behaviour beyond the shared contract (CPU accelerator, tiny sizes).</summary>
public sealed class IlgpuTrainerTests
{
    private static readonly ModelSpec Tiny = ModelSpec.Parse("5-3-2");

    [Fact]
    public void TryCreateGpu_AnyMachine_ReturnsTrainerOrReasonWithoutThrowing()
    {
        bool created = IlgpuRuntime.TryCreateGpu(Tiny, 4, out var trainer, out var reason);
        using (trainer)
        {
            if (created)
            {
                Assert.NotNull(trainer);
                Assert.StartsWith("ilgpu-", trainer.Description, StringComparison.Ordinal);
                Assert.Equal(string.Empty, reason);
            }
            else
            {
                Assert.Null(trainer);
                Assert.False(string.IsNullOrWhiteSpace(reason));
            }
        }
    }

    [Fact]
    public void TryCreateGpu_InvalidBatchSize_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => IlgpuRuntime.TryCreateGpu(Tiny, 0, out _, out _));
    }

    [Fact]
    public void CreateOnCpuAccelerator_Description_NamesSimulator()
    {
        using var trainer = IlgpuRuntime.CreateOnCpuAccelerator(Tiny, 4);
        Assert.Equal("ilgpu-cpu (simulator)", trainer.Description);
        Assert.Equal(4, trainer.MaxBatchSize);
        Assert.Same(Tiny, trainer.Spec);
    }

    [Fact]
    public void Evaluate_SameDatasetTwice_UploadsOnceAndEvictsOldestBeyondCapacity()
    {
        using var trainer = IlgpuRuntime.CreateOnCpuAccelerator(Tiny, 4);
        trainer.LoadParameters(ModelInitializer.Initialize(Tiny, 1));
        var sets = Enumerable.Range(0, IlgpuTrainer.MaxCachedDatasets + 1)
            .Select(i => ReferenceMlp.RandomData(3, Tiny.InputSize, Tiny.OutputSize, seed: (ulong)(20 + i)))
            .ToArray();
        var first = trainer.Evaluate(sets[0]);
        var again = trainer.Evaluate(sets[0]);
        Assert.Equal(1, trainer.CachedDatasetCount);
        Assert.Equal(first, again);
        foreach (var set in sets) trainer.Evaluate(set);
        Assert.Equal(IlgpuTrainer.MaxCachedDatasets, trainer.CachedDatasetCount);
        // The evicted set is uploaded again on demand and still gives the same answer.
        Assert.Equal(first, trainer.Evaluate(sets[0]));
    }

    [Fact]
    public void Evaluate_EmptyRange_ReturnsZeroCount()
    {
        using var trainer = IlgpuRuntime.CreateOnCpuAccelerator(Tiny, 4);
        var data = ReferenceMlp.RandomData(3, Tiny.InputSize, Tiny.OutputSize, seed: 30);
        var result = trainer.Evaluate(data, 3, 0);
        Assert.Equal(0, result.Count);
        Assert.Throws<ArgumentOutOfRangeException>(() => trainer.Evaluate(data, 2, 2));
    }

    [Fact]
    public void TrainBatch_WrongFeatureWidth_ThrowsArgumentException()
    {
        using var trainer = IlgpuRuntime.CreateOnCpuAccelerator(Tiny, 4);
        var data = ReferenceMlp.RandomData(3, Tiny.InputSize + 1, Tiny.OutputSize, seed: 31);
        Assert.Throws<ArgumentException>(() => trainer.TrainBatch(data, [0], new SgdOptions(0.1f)));
    }

    [Fact]
    public void TrainBatch_AfterDispose_ThrowsObjectDisposed()
    {
        var trainer = IlgpuRuntime.CreateOnCpuAccelerator(Tiny, 4);
        var data = ReferenceMlp.RandomData(3, Tiny.InputSize, Tiny.OutputSize, seed: 32);
        trainer.Dispose();
        trainer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => trainer.TrainBatch(data, [0], new SgdOptions(0.1f)));
    }
}
