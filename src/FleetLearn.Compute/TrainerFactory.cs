using FleetLearn.Compute.Cpu;
using FleetLearn.Compute.Gpu;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.Compute;

/// <summary>Which training backend to use.</summary>
public enum BackendChoice
{
    /// <summary>A GPU through ILGPU (CUDA, then OpenCL) when one is present, else the SIMD CPU backend.</summary>
    Auto,

    /// <summary>The SIMD CPU backend.</summary>
    Cpu,

    /// <summary>ILGPU on a GPU; fails when there is none.</summary>
    Ilgpu,

    /// <summary>ILGPU's CPU accelerator: a debugging simulator, thousands of times slower. Tests and diagnosis only.</summary>
    IlgpuCpu,
}

/// <summary>Creates trainers and reports which backend was picked and why.</summary>
public static class TrainerFactory
{
    /// <summary>Parses <c>auto|cpu|ilgpu|ilgpu-cpu</c>.</summary>
    public static BackendChoice Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => BackendChoice.Auto,
        "cpu" => BackendChoice.Cpu,
        "ilgpu" or "gpu" => BackendChoice.Ilgpu,
        "ilgpu-cpu" => BackendChoice.IlgpuCpu,
        _ => throw new FormatException($"--backend '{text}': expected auto, cpu, ilgpu (alias gpu) or ilgpu-cpu."),
    };

    /// <summary>
    /// Creates a trainer. <paramref name="log"/> receives one line saying which backend was picked
    /// (and, for <see cref="BackendChoice.Auto"/>, why a GPU was not).
    /// </summary>
    public static ITrainer Create(BackendChoice choice, ModelSpec spec, int maxBatchSize, int threads = 1, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(spec);
        switch (choice)
        {
            case BackendChoice.Cpu:
            {
                var cpu = new CpuTrainer(spec, maxBatchSize, threads);
                log?.Invoke($"backend: {cpu.Description}");
                return cpu;
            }
            case BackendChoice.Ilgpu:
            {
                if (IlgpuRuntime.TryCreateGpu(spec, maxBatchSize, out var gpu, out var reason) && gpu is not null)
                {
                    log?.Invoke($"backend: {gpu.Description}");
                    return gpu;
                }
                throw new InvalidOperationException($"--backend ilgpu (or its alias gpu) needs a CUDA or OpenCL GPU, and none was found: {reason}. Use --backend cpu or auto.");
            }
            case BackendChoice.IlgpuCpu:
            {
                var sim = IlgpuRuntime.CreateOnCpuAccelerator(spec, maxBatchSize);
                log?.Invoke($"backend: {sim.Description} (debugging simulator: very slow)");
                return sim;
            }
            default:
            {
                if (IlgpuRuntime.TryCreateGpu(spec, maxBatchSize, out var gpu, out var reason) && gpu is not null)
                {
                    log?.Invoke($"backend: auto picked {gpu.Description}");
                    return gpu;
                }
                var cpu = new CpuTrainer(spec, maxBatchSize, threads);
                log?.Invoke($"backend: auto picked {cpu.Description} ({reason})");
                return cpu;
            }
        }
    }
}
