namespace FleetLearn.Core.Privacy;

/// <summary>
/// Permanent randomized response for one vehicle (Erlingsson et al. 2014, RAPPOR's permanent step; Apple's "Learning with
/// Privacy at Scale", 2017): the randomized report of a value is drawn once and reused every round, so averaging many
/// rounds' reports cannot undo the noise (issue 13 item 9). The first report of a value costs ε (charge it with
/// <see cref="ChargeFor"/> under <see cref="ReleaseId"/>); repeating it costs nothing.
/// </summary>
/// <remarks>Not thread-safe. Persist <see cref="Memo"/> with the vehicle's state and pass it back when it restarts: a lost memo means fresh draws and fresh charges.</remarks>
public sealed class MemoizedRandomizedResponse
{
    /// <summary>Release ids of telemetry values start here, above round numbers and below evaluation reports.</summary>
    public const long TelemetryReleaseBase = 1L << 61;

    private readonly Dictionary<int, int> _memo;

    /// <summary>Wraps <paramref name="mechanism"/>; <paramref name="memo"/> restores earlier reports (true value → report).</summary>
    public MemoizedRandomizedResponse(RandomizedResponse mechanism, IReadOnlyDictionary<int, int>? memo = null)
    {
        Mechanism = mechanism ?? throw new ArgumentNullException(nameof(mechanism));
        _memo = [];
        if (memo is null) return;
        foreach (var (value, report) in memo)
        {
            if (value < 0 || value >= mechanism.Categories || report < 0 || report >= mechanism.Categories)
                throw new ArgumentException($"Memoized report {value} → {report} is outside the {mechanism.Categories} categories.", nameof(memo));
            _memo[value] = report;
        }
    }

    /// <summary>The k-ary randomized response used for first reports.</summary>
    public RandomizedResponse Mechanism { get; }

    /// <summary>Every value reported so far and its permanent report.</summary>
    public IReadOnlyDictionary<int, int> Memo => _memo;

    /// <summary>The report of <paramref name="value"/>: the memoized one, or a fresh draw (then <paramref name="isNew"/>: charge it).</summary>
    public int Report(int value, INoiseSource? source, out bool isNew)
    {
        if (_memo.TryGetValue(value, out int report))
        {
            isNew = false;
            return report;
        }
        report = Mechanism.Perturb(value, source);
        _memo[value] = report;
        isNew = true;
        return report;
    }

    /// <summary>The ledger charge of a first report: ε-LDP as the Gaussian mechanism at multiplier 1/ε, q = 1 (<see cref="PrivateCount.LaplaceCharge"/>).</summary>
    public PrivacyCharge ChargeFor() => PrivateCount.LaplaceCharge(Mechanism.Epsilon);

    /// <summary>The ledger release id of the first report of <paramref name="value"/>.</summary>
    public long ReleaseId(int value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(value);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(value, Mechanism.Categories);
        return TelemetryReleaseBase + value;
    }
}
