using FleetLearn.Perception.Ingest;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent.Ingest;

/// <summary>Scans the recorder's folder every <see cref="VehicleIngestOptions.ScanInterval"/> and ingests complete clips into the feature store.</summary>
internal sealed class ClipIngestService(VehicleFeatureData data, IOptions<VehicleIngestOptions> options, TimeProvider time, ILogger<ClipIngestService> logger) : BackgroundService
{
    /// <summary>Scans finished (for tests and status).</summary>
    public int Scans { get; private set; }

    /// <summary>The last scan's report.</summary>
    public IngestReport? LastReport { get; private set; }

    /// <inheritdoc/>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.ScanInterval, time);
        do
        {
            try
            {
                var report = await Task.Run(() => data.Scan(stoppingToken), stoppingToken).ConfigureAwait(false);
                LastReport = report;
                Scans++;
                if (report.Clips > 0 || report.Failed > 0)
                {
                    var stats = data.Stats;
                    logger.LogInformation("ingest: {Clips} clips ({Frames} frames; {Sidecar} sidecar labels, {Teacher} teacher labels, kept {Kept:P0} of the teacher's candidates), {Duplicates} duplicates, {Failed} failed; store {StoreClips} clips, {StoreFrames} frames, {Bytes} bytes",
                        report.Clips, report.Frames, report.SidecarLabels, report.TeacherLabels, double.IsNaN(report.TeacherKeptFraction) ? 0 : report.TeacherKeptFraction,
                        report.Duplicates, report.Failed, stats.Clips, stats.Frames, stats.Bytes);
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                logger.LogWarning("ingest: scan of {Folder} failed: {Error}", data.DataFolder, e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }
}
