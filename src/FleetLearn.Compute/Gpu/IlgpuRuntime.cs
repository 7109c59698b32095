using FleetLearn.Core.Model;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace FleetLearn.Compute.Gpu;

/// <summary>
/// The process's single ILGPU <see cref="Context"/> (created lazily, thread-safe, with
/// ILGPU.Algorithms enabled) and the accelerators made from it: the GPU (CUDA first, then OpenCL)
/// and, only when asked for, ILGPU's CPU accelerator, a debugging simulator meant for tests.
/// </summary>
/// <remarks>
/// Accelerators and their compiled kernels are created once and kept until the process exits;
/// trainers share them. Probing never throws: a machine without GPU drivers reports why.
/// </remarks>
public static class IlgpuRuntime
{
    /// <summary>
    /// The simulated CPU device: one multiprocessor of 2 warps × 32 threads, the 64-thread groups
    /// the kernels use (ILGPU's default CPU device allows only 16). The simulator runs every thread
    /// of a group on its own OS thread, so a larger group only adds threads spinning at barriers.
    /// </summary>
    private static readonly CPUDevice s_simulator = new(numThreadsPerWarp: 32, numWarpsPerMultiprocessor: 2, numMultiprocessors: 1);

    private static readonly Lazy<ContextState> s_context = new(CreateContext, LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<GpuProbe> s_gpu = new(ProbeGpu, LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly Lazy<IlgpuDevice> s_cpu = new(CreateCpuDevice, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// Creates a trainer on the GPU (CUDA first, then OpenCL). Returns false with a reason such as
    /// <c>no CUDA or OpenCL device found</c> when there is none or it cannot be used; never throws
    /// for a missing or broken GPU stack (argument errors still throw).
    /// </summary>
    public static bool TryCreateGpu(ModelSpec spec, int maxBatchSize, out IlgpuTrainer? trainer, out string reason)
    {
        IlgpuTrainer.ValidateArguments(spec, maxBatchSize);
        trainer = null;
        if (!TryGetGpuDevice(out var device, out reason))
            return false;
        try
        {
            trainer = new IlgpuTrainer(device, spec, maxBatchSize);
            reason = string.Empty;
            return true;
        }
        catch (Exception e)
        {
            reason = $"{device.Description}: could not create the trainer: {Describe(e)}";
            return false;
        }
    }

    /// <summary>
    /// Creates a trainer on ILGPU's CPU accelerator. It simulates GPU threads with OS threads and is
    /// thousands of times slower than SIMD code: for tests that check the kernels only.
    /// </summary>
    public static IlgpuTrainer CreateOnCpuAccelerator(ModelSpec spec, int maxBatchSize)
    {
        IlgpuTrainer.ValidateArguments(spec, maxBatchSize);
        return new IlgpuTrainer(s_cpu.Value, spec, maxBatchSize);
    }

    /// <summary>The GPU device (compiled kernels included), probed once per process.</summary>
    internal static bool TryGetGpuDevice([System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IlgpuDevice? device, out string reason)
    {
        var probe = s_gpu.Value;
        device = probe.Device;
        reason = probe.Reason;
        return device is not null;
    }

    /// <summary>The CPU simulator device (compiled kernels included), created on first use.</summary>
    internal static IlgpuDevice CpuDevice => s_cpu.Value;

    private static ContextState CreateContext()
    {
        try
        {
            var context = Context.Create(builder => builder.Cuda().OpenCL().CPU(s_simulator).EnableAlgorithms());
            return new ContextState(context, null);
        }
        catch (Exception e)
        {
            // A broken GPU stack must not take the CPU simulator down with it: fall back to a
            // CPU-only context (still the only context in the process, the first one never existed).
            var context = Context.Create(builder => builder.CPU(s_simulator).EnableAlgorithms());
            return new ContextState(context, $"GPU runtimes could not be loaded: {Describe(e)}");
        }
    }

    private static GpuProbe ProbeGpu()
    {
        ContextState state;
        try
        {
            state = s_context.Value;
        }
        catch (Exception e)
        {
            return new GpuProbe(null, $"the ILGPU context could not be created: {Describe(e)}");
        }
        if (state.Error is not null)
            return new GpuProbe(null, state.Error);

        var failures = new List<string>();
        try
        {
            foreach (var cuda in state.Context.GetCudaDevices())
            {
                var device = TryOpen(state.Context, cuda, "ilgpu-cuda", failures);
                if (device is not null) return new GpuProbe(device, string.Empty);
            }
        }
        catch (Exception e)
        {
            failures.Add($"CUDA: {Describe(e)}");
        }
        try
        {
            // GPUs before other OpenCL devices (an OpenCL CPU runtime such as PoCL is no GPU).
            var openCl = new List<CLDevice>();
            foreach (var cl in state.Context.GetCLDevices()) openCl.Add(cl);
            foreach (var cl in openCl.OrderBy(d => d.DeviceType.ToString().Contains("GPU", StringComparison.OrdinalIgnoreCase) ? 0 : 1))
            {
                var device = TryOpen(state.Context, cl, "ilgpu-opencl", failures);
                if (device is not null) return new GpuProbe(device, string.Empty);
            }
        }
        catch (Exception e)
        {
            failures.Add($"OpenCL: {Describe(e)}");
        }
        return new GpuProbe(null, failures.Count == 0
            ? "no CUDA or OpenCL device found"
            : "no usable CUDA or OpenCL device: " + string.Join("; ", failures));
    }

    private static IlgpuDevice? TryOpen(Context context, Device device, string kind, List<string> failures)
    {
        Accelerator? accelerator = null;
        try
        {
            accelerator = device.CreateAccelerator(context);
            return new IlgpuDevice(accelerator, $"{kind} ({accelerator.Name})");
        }
        catch (Exception e)
        {
            accelerator?.Dispose();
            failures.Add($"{kind} {device.Name}: {Describe(e)}");
            return null;
        }
    }

    private static IlgpuDevice CreateCpuDevice()
    {
        var context = s_context.Value.Context;
        var accelerator = s_simulator.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel);
        try
        {
            return new IlgpuDevice(accelerator, "ilgpu-cpu (simulator)");
        }
        catch
        {
            accelerator.Dispose();
            throw;
        }
    }

    private static string Describe(Exception e) =>
        e is AggregateException { InnerException: { } inner } ? Describe(inner) : $"{e.GetType().Name}: {e.Message}";

    private sealed record ContextState(Context Context, string? Error);

    private sealed record GpuProbe(IlgpuDevice? Device, string Reason);
}
