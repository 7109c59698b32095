using FleetLearn.Compute;
using FleetLearn.Core.Model;
using FleetLearn.Core.Training;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// Trainers an agent borrows for one round's local training. A vehicle runs one agent and keeps one trainer
/// (<see cref="Single"/>); a simulator that hosts hundreds of agents in one process shares a few (one per core), so
/// that memory grows with the cores, not with the fleet. Thread-safe.
/// </summary>
public sealed class TrainerPool(Func<ModelSpec, ITrainer> create, int capacity) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(capacity, capacity);
    private readonly Stack<ITrainer> _idle = new();
    private readonly List<ITrainer> _all = [];

    /// <summary>Batches up to this size fit every pooled trainer (the plan's B is validated against it).</summary>
    public const int MaxBatch = 4096;

    /// <summary>One trainer of <paramref name="backend"/> (SIMD CPU by default; <c>auto</c> takes the vehicle's GPU through ILGPU when there is one), created on first use.</summary>
    public static TrainerPool Single(BackendChoice backend = BackendChoice.Cpu) => new(spec => TrainerFactory.Create(backend, spec, MaxBatch), 1);

    /// <summary>Runs <paramref name="work"/> with a trainer for <paramref name="spec"/> (waits while all are busy).</summary>
    public async Task<T> RunAsync<T>(ModelSpec spec, Func<ITrainer, T> work, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(work);
        await _slots.WaitAsync(cancellationToken).ConfigureAwait(false);
        ITrainer? trainer = null;
        try
        {
            lock (_idle)
            {
                while (_idle.Count > 0 && trainer is null)
                {
                    var t = _idle.Pop();
                    if (t.Spec.ToString() == spec.ToString()) trainer = t;
                    else
                    {
                        _all.Remove(t);
                        t.Dispose();
                    }
                }
            }
            if (trainer is null)
            {
                trainer = create(spec);
                lock (_idle) _all.Add(trainer);
            }
            var used = trainer;
            return await Task.Run(() => work(used), cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (trainer is not null) lock (_idle) _idle.Push(trainer);
            _slots.Release();
        }
    }

    public void Dispose()
    {
        lock (_idle)
        {
            foreach (var t in _all) t.Dispose();
            _all.Clear();
            _idle.Clear();
        }
        _slots.Dispose();
    }
}
