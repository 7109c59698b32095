using System.Globalization;

namespace FleetLearn.Reporting.Rendering;

/// <summary>A tick: data value and its label (empty for an unlabelled minor grid line).</summary>
internal readonly record struct Tick(double Value, string Label, bool Major = true);

/// <summary>An axis range with its ticks, linear or log10; maps data values to [0, 1].</summary>
internal sealed class Axis
{
    private Axis(double min, double max, bool log, IReadOnlyList<Tick> ticks)
    {
        Min = min;
        Max = max;
        Log = log;
        Ticks = ticks;
    }

    /// <summary>Lower limit in data units.</summary>
    public double Min { get; }

    /// <summary>Upper limit in data units.</summary>
    public double Max { get; }

    public bool Log { get; }

    public IReadOnlyList<Tick> Ticks { get; }

    /// <summary>Position of a value along the axis, 0 at <see cref="Min"/> and 1 at <see cref="Max"/>.</summary>
    public double Fraction(double v) => Log
        ? (Math.Log10(v) - Math.Log10(Min)) / (Math.Log10(Max) - Math.Log10(Min))
        : (v - Min) / (Max - Min);

    /// <summary>Whether a value can be placed on this axis (finite, and positive on a log axis).</summary>
    public bool Accepts(double v) => double.IsFinite(v) && (!Log || v > 0);

    /// <summary>
    /// A linear axis over the data with "nice" ticks (1, 2 or 5 × 10^k, Heckbert 1990) about
    /// <paramref name="targetTicks"/> of them; limits not fixed by the caller snap outwards to a tick.
    /// </summary>
    public static Axis Linear(double dataMin, double dataMax, double? fixedMin, double? fixedMax, int targetTicks, bool integerSteps)
    {
        var lo = fixedMin ?? dataMin;
        var hi = fixedMax ?? dataMax;
        if (!double.IsFinite(lo) || !double.IsFinite(hi))
            (lo, hi) = (0, 1);
        if (lo > hi)
            (lo, hi) = (hi, lo);
        if (hi - lo < Math.Max(Math.Abs(hi), Math.Abs(lo)) * 1e-12 || hi == lo)
        {
            // A flat series: open a window around the value so the line sits mid-plot.
            var pad = lo == 0 ? 1 : Math.Abs(lo) * 0.1;
            if (fixedMin is null) lo -= pad;
            if (fixedMax is null) hi += pad;
            if (hi <= lo) hi = lo + 2 * pad;
        }

        var step = ChooseStep(lo, hi, fixedMin is null, fixedMax is null, Math.Max(1, targetTicks - 1));
        if (integerSteps && step < 1)
            step = 1;
        if (fixedMin is null) lo = Math.Floor(lo / step + 1e-9) * step;
        if (fixedMax is null) hi = Math.Ceiling(hi / step - 1e-9) * step;

        var format = LinearFormat.For(step, Math.Max(Math.Abs(lo), Math.Abs(hi)));
        var ticks = new List<Tick>();
        var first = Math.Ceiling(lo / step - 1e-9);
        for (var k = first; k * step <= hi + step * 1e-9 && ticks.Count < 100; k++)
        {
            var v = k * step;
            if (Math.Abs(v) < step * 1e-9) v = 0; // no "-0"
            ticks.Add(new Tick(v, format.Format(v)));
        }
        return new Axis(lo, hi, log: false, ticks);
    }

    /// <summary>A log10 axis snapped outwards to whole decades, a labelled tick per decade (or every k-th).</summary>
    public static Axis Log10(double dataMin, double dataMax, double? fixedMin, double? fixedMax, int targetTicks)
    {
        var lo = fixedMin is > 0 ? fixedMin.Value : dataMin;
        var hi = fixedMax is > 0 ? fixedMax.Value : dataMax;
        if (!(lo > 0) || !double.IsFinite(lo) || !(hi > 0) || !double.IsFinite(hi))
            (lo, hi) = (1, 10);
        if (lo > hi)
            (lo, hi) = (hi, lo);
        var dLo = Math.Floor(Math.Log10(lo) + 1e-9);
        var dHi = Math.Ceiling(Math.Log10(hi) - 1e-9);
        if (dHi <= dLo) dHi = dLo + 1;
        if (fixedMin is null or <= 0) lo = Math.Pow(10, dLo);
        if (fixedMax is null or <= 0) hi = Math.Pow(10, dHi);

        var decades = (int)(dHi - dLo);
        var stride = Math.Max(1, (int)Math.Ceiling(decades / (double)Math.Max(1, targetTicks - 1)));
        var ticks = new List<Tick>();
        for (var d = (int)dLo; d <= (int)dHi; d++)
        {
            var v = Math.Pow(10, d);
            if ((d - (int)dLo) % stride == 0 && v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9))
                ticks.Add(new Tick(v, FormatDecade(d)));
            if (stride == 1 && decades <= 6)
            {
                for (var m = 2; m <= 9; m++)
                {
                    var mv = m * v;
                    if (mv > lo && mv < hi)
                        ticks.Add(new Tick(mv, "", Major: false));
                }
            }
        }
        return new Axis(lo, hi, log: true, ticks);
    }

    /// <summary>
    /// Picks among 1, 2, 2.5 (only where it stays a whole number), 5 and 10 × 10^k the step whose
    /// interval count is nearest the target, penalising ranges that snapping stretches far past the data.
    /// </summary>
    private static double ChooseStep(double lo, double hi, bool snapLo, bool snapHi, int targetIntervals)
    {
        var range = hi - lo;
        var mag = Math.Pow(10, Math.Floor(Math.Log10(range / targetIntervals)));
        if (!double.IsFinite(mag) || mag <= 0)
            return NiceStep(range / targetIntervals);
        var best = double.NaN;
        var bestScore = double.MaxValue;
        foreach (var m in (ReadOnlySpan<double>)[1, 2, 2.5, 5, 10, 20])
        {
            var step = m * mag;
            if (m == 2.5 && step < 10)
                continue;
            var l = snapLo ? Math.Floor(lo / step + 1e-9) * step : lo;
            var h = snapHi ? Math.Ceiling(hi / step - 1e-9) * step : hi;
            var intervals = (h - l) / step;
            var score = Math.Abs(intervals - targetIntervals) + 5 * ((h - l) - range) / range;
            if (score < bestScore - 1e-9)
                (best, bestScore) = (step, score);
        }
        return best;
    }

    /// <summary>The nice step (1, 2 or 5 × 10^k) nearest above a rough step.</summary>
    internal static double NiceStep(double rough)
    {
        if (!(rough > 0) || !double.IsFinite(rough))
            return 1;
        var mag = Math.Pow(10, Math.Floor(Math.Log10(rough)));
        var r = rough / mag;
        var nice = r <= 1 + 1e-9 ? 1 : r <= 2 + 1e-9 ? 2 : r <= 5 + 1e-9 ? 5 : 10;
        return nice * mag;
    }

    private static string FormatDecade(int d) => d switch
    {
        >= -4 and < 0 => Math.Pow(10, d).ToString("0.####", CultureInfo.InvariantCulture),
        >= 0 and < 3 => Math.Pow(10, d).ToString("0", CultureInfo.InvariantCulture),
        3 => "1k",
        6 => "1M",
        9 => "1G",
        _ => "1e" + d.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>How tick values of one axis are written: fixed decimals, with a k/M/G suffix for large values.</summary>
    private readonly record struct LinearFormat(double Divisor, string Suffix, int Decimals)
    {
        public static LinearFormat For(double step, double maxAbs)
        {
            var (div, suffix) = maxAbs >= 1e10 ? (1e9, "G") : maxAbs >= 1e7 ? (1e6, "M") : maxAbs >= 1e4 ? (1e3, "k") : (1, "");
            var decimals = Math.Max(0, (int)-Math.Floor(Math.Log10(step / div) + 1e-9));
            return new LinearFormat(div, suffix, Math.Min(decimals, 12));
        }

        public string Format(double v) => v == 0
            ? "0"
            : (v / Divisor).ToString("F" + Decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture) + Suffix;
    }
}
