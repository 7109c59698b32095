namespace FleetLearn.Core.Compression;

/// <summary>
/// Top-k sparsification: keep the k coordinates of largest magnitude (ties broken by index). With error feedback
/// (Stich et al. 2018, "Sparsified SGD with Memory"; Karimireddy et al. 2019) the vehicle adds the residual it did not
/// send last time before selecting and keeps the new remainder, so no coordinate is lost, only delayed.
/// </summary>
public static class TopK
{
    /// <summary>max(1, round(p·n)).</summary>
    public static int Count(int length, double fraction) => Math.Clamp((int)Math.Round(fraction * length), 1, length);

    /// <summary>Writes the indices of the k largest |x_i|, ascending, into <paramref name="indices"/> (length k). O(n) expected (quickselect).</summary>
    public static void Select(ReadOnlySpan<float> values, Span<int> indices)
    {
        int k = indices.Length;
        if (k < 1 || k > values.Length) throw new ArgumentOutOfRangeException(nameof(indices), k, $"k must be within 1..{values.Length}.");
        var mags = new float[values.Length];
        for (int i = 0; i < mags.Length; i++)
        {
            float a = Math.Abs(values[i]);
            if (float.IsNaN(a)) throw new ArgumentException($"Value {i} is NaN.", nameof(values));
            mags[i] = a;
        }
        float threshold = QuickSelect(mags, values.Length - k); // k-th largest
        int above = 0;
        foreach (var v in values) if (Math.Abs(v) > threshold) above++;
        int ties = k - above, n = 0;
        for (int i = 0; i < values.Length && n < k; i++)
        {
            float a = Math.Abs(values[i]);
            if (a > threshold) indices[n++] = i;
            else if (a == threshold && ties > 0) { indices[n++] = i; ties--; }
        }
    }

    /// <summary>The element of rank <paramref name="rank"/> (0 = smallest); reorders <paramref name="a"/>.</summary>
    private static float QuickSelect(float[] a, int rank)
    {
        int lo = 0, hi = a.Length - 1;
        while (lo < hi)
        {
            int mid = lo + (hi - lo) / 2;
            // median of three as pivot
            if (a[mid] < a[lo]) (a[mid], a[lo]) = (a[lo], a[mid]);
            if (a[hi] < a[lo]) (a[hi], a[lo]) = (a[lo], a[hi]);
            if (a[hi] < a[mid]) (a[hi], a[mid]) = (a[mid], a[hi]);
            float pivot = a[mid];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (a[i] < pivot) i++;
                while (a[j] > pivot) j--;
                if (i <= j) { (a[i], a[j]) = (a[j], a[i]); i++; j--; }
            }
            if (rank <= j) hi = j;
            else if (rank >= i) lo = i;
            else return a[rank];
        }
        return a[rank];
    }
}

/// <summary>
/// Per-vehicle error-feedback residuals, kept only for vehicles that have one (created at a vehicle's first top-k+EF upload).
/// Memory: 4·P bytes per vehicle holding a residual (P = model parameters; 797 KB for the 2NN), bounded by
/// <see cref="MaxResiduals"/>: past it the least recently used residual is dropped, as if that vehicle had lost its local state
/// (error feedback then restarts from zero for it — never wrong, only less accurate).
/// </summary>
public sealed class ErrorFeedbackStore(int dimension, int maxResiduals)
{
    private readonly Dictionary<long, (float[] Residual, long LastUse)> _residuals = [];
    private long _clock;

    /// <summary>Coordinates per residual.</summary>
    public int Dimension { get; } = dimension > 0 ? dimension : throw new ArgumentOutOfRangeException(nameof(dimension));

    /// <summary>Most residuals held at once.</summary>
    public int MaxResiduals { get; } = maxResiduals > 0 ? maxResiduals : throw new ArgumentOutOfRangeException(nameof(maxResiduals));

    /// <summary>Residuals held now.</summary>
    public int Count { get { lock (_residuals) return _residuals.Count; } }

    /// <summary>Residuals dropped because of <see cref="MaxResiduals"/>.</summary>
    public long Evicted { get; private set; }

    /// <summary>Bytes held by residuals now.</summary>
    public long Bytes => 4L * Dimension * Count;

    /// <summary>The residual of <paramref name="vehicle"/>, created (zero) when it has none. Thread-safe; the array is the vehicle's own.</summary>
    public float[] GetOrCreate(long vehicle)
    {
        lock (_residuals)
        {
            long now = ++_clock;
            if (_residuals.TryGetValue(vehicle, out var entry))
            {
                _residuals[vehicle] = (entry.Residual, now);
                return entry.Residual;
            }
            if (_residuals.Count >= MaxResiduals)
            {
                long oldest = _residuals.MinBy(p => p.Value.LastUse).Key;
                _residuals.Remove(oldest);
                Evicted++;
            }
            var residual = new float[Dimension];
            _residuals[vehicle] = (residual, now);
            return residual;
        }
    }

    /// <summary>Whether <paramref name="vehicle"/> holds a residual.</summary>
    public bool Contains(long vehicle) { lock (_residuals) return _residuals.ContainsKey(vehicle); }
}
