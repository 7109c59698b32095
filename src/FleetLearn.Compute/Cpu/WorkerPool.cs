namespace FleetLearn.Compute.Cpu;

/// <summary>A piece of work split into a fixed number of parts, one per thread.</summary>
internal interface IPartitionedWork
{
    /// <summary>Runs part <paramref name="part"/> of <paramref name="parts"/>.</summary>
    void Execute(int part, int parts);
}

/// <summary>
/// A fixed set of dedicated threads that run the parts of one <see cref="IPartitionedWork"/> at a
/// time: the caller runs part 0 and waits for the others. Parts are assigned by index, never by
/// which thread is free, so the split is the same on every run. Nothing is allocated per run.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    private readonly Thread[] _threads;
    private readonly ManualResetEventSlim[] _start;
    private readonly ManualResetEventSlim _done = new(false, spinCount: 2000);
    private IPartitionedWork? _work;
    private int _remaining;
    private volatile bool _disposed;
    private Exception? _failure;

    public WorkerPool(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 2);
        Parts = threads;
        _threads = new Thread[threads - 1];
        _start = new ManualResetEventSlim[threads - 1];
        for (int i = 0; i < _threads.Length; i++)
        {
            _start[i] = new ManualResetEventSlim(false, spinCount: 2000);
            int part = i + 1;
            _threads[i] = new Thread(() => Loop(part)) { IsBackground = true, Name = $"fleetlearn-cpu-{part}" };
            _threads[i].Start();
        }
    }

    /// <summary>Number of parts each run is split into (threads including the caller).</summary>
    public int Parts { get; }

    /// <summary>Runs every part of <paramref name="work"/>, part 0 on the calling thread; rethrows a worker's failure.</summary>
    public void Run(IPartitionedWork work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _work = work;
        _failure = null;
        _done.Reset();
        Volatile.Write(ref _remaining, _threads.Length);
        foreach (var start in _start) start.Set();
        Exception? own = null;
        try
        {
            work.Execute(0, Parts);
        }
        catch (Exception e)
        {
            own = e;
        }
        _done.Wait();
        _work = null;
        if (own is not null) throw own;
        if (_failure is not null) throw new AggregateException("A CPU training worker failed.", _failure);
    }

    private void Loop(int part)
    {
        var start = _start[part - 1];
        while (true)
        {
            start.Wait();
            start.Reset();
            if (_disposed) return;
            try
            {
                _work!.Execute(part, Parts);
            }
            catch (Exception e)
            {
                Interlocked.CompareExchange(ref _failure, e, null);
            }
            if (Interlocked.Decrement(ref _remaining) == 0) _done.Set();
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var start in _start) start.Set();
        foreach (var thread in _threads) thread.Join();
        foreach (var start in _start) start.Dispose();
        _done.Dispose();
    }
}
