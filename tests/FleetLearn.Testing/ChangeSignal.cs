namespace FleetLearn.Testing;

/// <summary>
/// Waits for a condition on something that announces its changes (e.g. <c>EdgeAgentWorker.Progressed</c>): the condition is
/// re-checked on every <see cref="Pulse"/>, never on a timer, and a timeout names what was awaited.
/// </summary>
public sealed class ChangeSignal
{
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Something changed: wake every waiter to re-check its condition.</summary>
    public void Pulse() => Interlocked.Exchange(ref _next, new(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    /// <summary>Returns once <paramref name="condition"/> holds; throws <see cref="TimeoutException"/> naming <paramref name="what"/> after <paramref name="timeout"/>.</summary>
    public async Task UntilAsync(Func<bool> condition, string what, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(condition);
        using var cts = new CancellationTokenSource(timeout);
        while (true)
        {
            var next = Volatile.Read(ref _next).Task; // taken before the check: a pulse in between is not lost
            if (condition()) return;
            try
            {
                await next.WaitAsync(cts.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                if (condition()) return;
                throw new TimeoutException($"Timed out after {timeout} waiting for {what}.");
            }
        }
    }
}

/// <summary>Waits for state that announces no changes (an MQTT client's connection count): polled, with the same timeout message.</summary>
public static class Poll
{
    /// <summary>Returns once <paramref name="condition"/> holds (checked every 20 ms); throws <see cref="TimeoutException"/> naming <paramref name="what"/>.</summary>
    public static async Task UntilAsync(Func<bool> condition, string what, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(condition);
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow >= deadline) throw new TimeoutException($"Timed out after {timeout} waiting for {what}.");
            await Task.Delay(20).ConfigureAwait(false);
        }
    }
}
