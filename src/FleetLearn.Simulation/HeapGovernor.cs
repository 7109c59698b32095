namespace FleetLearn.Simulation;

/// <summary>
/// Keeps a process that hosts hundreds of agents near its live memory: a full blocking collection whenever the managed heap
/// has grown by half its last live size (at least 256 MiB) since the last one. Each agent's round allocates about 10 MB of
/// large arrays that are garbage a moment later (model chunks, Δ, rotation, noise, masks, the encoded message and its
/// copies), and the GC's own gen2 budget let that garbage pile up to several times the live heap (docs/scale.md). The heap
/// is mostly large arrays of numbers, so marking it is cheap. For simulations only: a vehicle runs one agent.
/// </summary>
internal sealed class HeapGovernor : IAsyncDisposable
{
    private static readonly TimeSpan Period = TimeSpan.FromMilliseconds(200);
    private const long MinGrowth = 256L << 20;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _live = GC.GetTotalMemory(false);

    /// <summary>Starts watching the heap.</summary>
    public HeapGovernor() => _loop = RunAsync(_stop.Token);

    /// <summary>Collections the governor induced.</summary>
    public int Collections { get; private set; }

    private async Task RunAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(Period);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                if (GC.GetTotalMemory(false) < _live + Math.Max(MinGrowth, _live / 2)) continue;
                GC.Collect(2, GCCollectionMode.Forced, blocking: true);
                Collections++;
                _live = GC.GetTotalMemory(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _loop.ConfigureAwait(false);
        _stop.Dispose();
    }
}
