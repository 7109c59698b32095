namespace FleetLearn.Core.Privacy;

/// <summary>
/// Double-precision special functions the privacy accountant needs and <see cref="Math"/> lacks:
/// accurate <c>log1p</c>/<c>expm1</c>, log-space addition, <c>erfc</c> and <c>log erfc</c>.
/// </summary>
/// <remarks>
/// <c>erfc</c> uses W. J. Cody's rational Chebyshev approximations ("Rational Chebyshev
/// approximations for the error function", Math. Comp. 23, 1969; Netlib SPECFUN <c>CALERF</c>),
/// about 1e-16 relative. For x &gt; 4 Cody's third interval writes erfc(x) = e^(−x²)·(1/√π − R(1/x²))/x,
/// which <see cref="LogErfc"/> evaluates in log space, so it stays exact where erfc itself underflows
/// (x ≳ 26.5) — the regime the fractional-order RDP series of Mironov, Talwar and Zhang (2019) reaches.
/// </remarks>
public static class SpecialFunctions
{
    private const double InvSqrtPi = 5.6418958354775628695e-1;

    private static readonly double[] A = [3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03, 1.85777706184603153e-1];
    private static readonly double[] B = [2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03];
    private static readonly double[] C = [5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8];
    private static readonly double[] D = [1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03];
    private static readonly double[] P = [3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2];
    private static readonly double[] Q = [2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1, 6.05183413124413191e-2, 2.33520497626869185e-3];

    /// <summary>log(1 + x), accurate for small |x| (Goldberg's correction).</summary>
    public static double Log1p(double x)
    {
        if (x <= -1.0) return x == -1.0 ? double.NegativeInfinity : double.NaN;
        double u = 1.0 + x;
        if (u == 1.0) return x;
        return Math.Log(u) * (x / (u - 1.0));
    }

    /// <summary>e^x − 1, accurate for small |x| (Kahan's correction).</summary>
    public static double Expm1(double x)
    {
        if (Math.Abs(x) < 1e-5) return x + 0.5 * x * x + x * x * x / 6.0;
        double u = Math.Exp(x);
        if (u == 1.0) return x;
        double um1 = u - 1.0;
        if (um1 == -1.0) return -1.0;
        if (double.IsPositiveInfinity(u)) return u;
        return um1 * (x / Math.Log(u));
    }

    /// <summary>log(e^a + e^b) without overflow.</summary>
    public static double LogAdd(double a, double b)
    {
        double lo = Math.Min(a, b), hi = Math.Max(a, b);
        if (double.IsNegativeInfinity(lo)) return hi;
        return Log1p(Math.Exp(lo - hi)) + hi;
    }

    /// <summary>log(e^a − e^b) for a ≥ b; throws if the result would be negative.</summary>
    public static double LogSub(double a, double b)
    {
        if (a < b) throw new ArithmeticException("log-space subtraction would give a negative number.");
        if (double.IsNegativeInfinity(b)) return a;
        if (a == b) return double.NegativeInfinity;
        double d = a - b;
        // For large gaps expm1 overflows; log(e^d − 1) = d + log1p(−e^−d).
        return d > 30 ? a + Log1p(-Math.Exp(-d)) : Math.Log(Expm1(d)) + b;
    }

    /// <summary>Complementary error function erfc(x) = 1 − erf(x) (Cody 1969).</summary>
    public static double Erfc(double x)
    {
        double y = Math.Abs(x);
        double r;
        if (y <= 0.46875)
        {
            return 1.0 - ErfSmall(x);
        }
        if (y <= 4.0)
        {
            r = ErfcMiddleScaled(y) * Math.Exp(-y * y);
        }
        else if (y < 26.6)
        {
            r = Math.Exp(-y * y) * ErfcLargeScaled(y);
        }
        else
        {
            r = 0.0;
        }
        return x < 0 ? 2.0 - r : r;
    }

    /// <summary>log(erfc(x)) for every finite x, computed in log space where erfc underflows.</summary>
    public static double LogErfc(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        if (double.IsPositiveInfinity(x)) return double.NegativeInfinity;
        if (x <= 4.0) return Math.Log(Erfc(x));
        // Cody's third interval in log space: log erfc(x) = −x² + log((1/√π − R(1/x²)) / x).
        return -x * x + Math.Log(ErfcLargeScaled(x));
    }

    /// <summary>
    /// The classic asymptotic series log erfc(x) ≈ −x² − log x − ½log π + log(1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + 105/(16x⁸)),
    /// kept as an independent cross-check of <see cref="LogErfc"/> for large x (x ≥ 10: error &lt; 1e-9).
    /// </summary>
    public static double LogErfcAsymptotic(double x)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(x, 1.0);
        double t = 1.0 / (2.0 * x * x);
        // Σ (−1)^n (2n−1)!! / (2x²)^n
        double series = 1.0 - t + 3.0 * t * t - 15.0 * t * t * t + 105.0 * t * t * t * t - 945.0 * t * t * t * t * t;
        return -x * x - Math.Log(x) - 0.5 * Math.Log(Math.PI) + Math.Log(series);
    }

    private static double ErfSmall(double x)
    {
        double y = Math.Abs(x);
        double ysq = y > 1.11e-16 ? y * y : 0.0;
        double num = A[4] * ysq, den = ysq;
        for (int i = 0; i < 3; i++)
        {
            num = (num + A[i]) * ysq;
            den = (den + B[i]) * ysq;
        }
        return x * (num + A[3]) / (den + B[3]);
    }

    // erfc(y)·e^(y²) on 0.46875 < y ≤ 4.
    private static double ErfcMiddleScaled(double y)
    {
        double num = C[8] * y, den = y;
        for (int i = 0; i < 7; i++)
        {
            num = (num + C[i]) * y;
            den = (den + D[i]) * y;
        }
        return (num + C[7]) / (den + D[7]);
    }

    // erfc(y)·e^(y²) for y > 4.
    private static double ErfcLargeScaled(double y)
    {
        double ysq = 1.0 / (y * y);
        double num = P[5] * ysq, den = ysq;
        for (int i = 0; i < 4; i++)
        {
            num = (num + P[i]) * ysq;
            den = (den + Q[i]) * ysq;
        }
        double r = ysq * (num + P[4]) / (den + Q[4]);
        return (InvSqrtPi - r) / y;
    }
}
