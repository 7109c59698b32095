using ILGPU.Runtime;

namespace FleetLearn.Compute.Gpu;

/// <summary>
/// One accelerator with its compiled kernels, shared by every trainer on it for the life of the
/// process. <see cref="Gate"/> serializes the trainers' work: they all use the accelerator's
/// default stream, and a CUDA context must be bound to the calling thread.
/// </summary>
internal sealed class IlgpuDevice
{
    public IlgpuDevice(Accelerator accelerator, string description)
    {
        Accelerator = accelerator;
        Description = description;
        Kernels = new IlgpuKernels(accelerator);
    }

    /// <summary>The ILGPU accelerator (never disposed: it lives as long as the process).</summary>
    public Accelerator Accelerator { get; }

    /// <summary>Kernels compiled once for <see cref="Accelerator"/>.</summary>
    public IlgpuKernels Kernels { get; }

    /// <summary>e.g. <c>ilgpu-cuda (NVIDIA H200)</c>.</summary>
    public string Description { get; }

    /// <summary>Held while a trainer launches work or copies data on this accelerator.</summary>
    public object Gate { get; } = new();

    /// <summary>CUDA, OpenCL or CPU.</summary>
    public AcceleratorType Type => Accelerator.AcceleratorType;
}
