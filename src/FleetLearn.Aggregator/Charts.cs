using FleetLearn.Reporting;

namespace FleetLearn.Aggregator;

/// <summary>The dashboard's server-rendered charts (PNG through the reporting library), for pages without JavaScript and for reports.</summary>
internal static class Charts
{
    /// <summary>The chart called <paramref name="name"/> (<c>accuracy</c> or <c>rounds</c>), or null when there is none by that name.</summary>
    public static byte[]? Render(string name, AggregatorStatus status) => name switch
    {
        "accuracy" => PngChartRenderer.Render(Accuracy(status), 800, 360),
        "rounds" => PngChartRenderer.Render(Rounds(status), 800, 360),
        _ => null,
    };

    /// <summary>Fleet accuracy per model version: the frame-weighted mean and the lowest and highest report.</summary>
    public static LineChart Accuracy(AggregatorStatus status)
    {
        var points = status.Accuracy;
        var xs = points.Select(p => (double)p.ModelVersion).ToArray();
        return new LineChart
        {
            Title = "Fleet accuracy (vehicles' hold-out reports)",
            XLabel = "Model version",
            YLabel = "Accuracy",
            Series =
            [
                ChartSeries.FromXY("mean", xs, points.Select(p => p.Accuracy)),
                ChartSeries.FromXY("lowest vehicle", xs, points.Select(p => p.Min)),
                ChartSeries.FromXY("highest vehicle", xs, points.Select(p => p.Max)),
            ],
            YMin = 0,
            YMax = 1,
        };
    }

    /// <summary>Cohort and participants per round.</summary>
    public static LineChart Rounds(AggregatorStatus status)
    {
        var rounds = status.Rounds.OrderBy(r => r.Round).ToArray();
        var xs = rounds.Select(r => (double)r.Round).ToArray();
        return new LineChart
        {
            Title = "Cohort and participants per round",
            XLabel = "Round",
            YLabel = "Vehicles",
            Series =
            [
                ChartSeries.FromXY("selected", xs, rounds.Select(r => (double)r.CohortSize)),
                ChartSeries.FromXY("participants", xs, rounds.Select(r => (double)r.Participants)),
            ],
            YMin = 0,
        };
    }
}
