using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent.Ingest;

/// <summary>Wiring of the vehicle's own data (section <c>Ingest</c>) into the agent's host.</summary>
public static class VehicleDataServiceCollectionExtensions
{
    /// <summary>
    /// Binds <c>Ingest</c>, adds the feature store with its ingest service, and registers the <see cref="VehicleDataset"/>
    /// the worker trains on as the store's labelled frames after a first scan of the data folder (clips already complete
    /// are ingested before the worker starts; later clips are ingested while it runs, and <see cref="IVehicleDataSource"/>
    /// gives a fresh snapshot).
    /// </summary>
    public static IServiceCollection AddVehicleFeatureStore(this IServiceCollection services)
    {
        services.AddOptions<VehicleIngestOptions>().BindConfiguration(VehicleIngestOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<VehicleIngestOptions>>(new DataAnnotationsValidator<VehicleIngestOptions>());
        services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<VehicleIngestOptions>>().Value;
            var logger = sp.GetRequiredService<ILoggerFactory>().CreateLogger("FleetLearn.EdgeAgent.Ingest");
            return new VehicleFeatureData(options, sp.GetRequiredService<IOptions<EdgeAgentOptions>>().Value.DatabasePath,
                sp.GetService<TimeProvider>(), line => logger.LogInformation("{Line}", line));
        });
        services.AddSingleton<IVehicleDataSource>(sp => sp.GetRequiredService<VehicleFeatureData>());
        services.AddSingleton(sp => InitialDataset(sp.GetRequiredService<VehicleFeatureData>(), sp.GetRequiredService<IOptions<VehicleIngestOptions>>().Value,
            sp.GetRequiredService<ILoggerFactory>().CreateLogger("FleetLearn.EdgeAgent.Ingest")));
        services.AddHostedService<ClipIngestService>();
        return services;
    }

    /// <summary>Scans twice, <see cref="VehicleIngestOptions.StableAfter"/> apart (so complete clips pass the stability check), then snapshots.</summary>
    internal static VehicleDataset InitialDataset(VehicleFeatureData data, VehicleIngestOptions options, ILogger logger)
    {
        var first = data.Scan();
        if (first.Waiting > 0 && options.StableAfter > TimeSpan.Zero)
        {
            Thread.Sleep(options.StableAfter); // start-up only: the stability check needs two looks at the folder this far apart
            data.Scan();
        }
        var dataset = data.Snapshot(out var summary);
        logger.LogInformation("vehicle data: {Clips} clips in {Store}: {Frames} frames, {Train} to train on, {Holdout} held out, {Unlabelled} unlabelled, {Pseudo} pseudo-labelled; backbone {Backbone} ({Features} features)",
            summary.Clips, data.StoreFolder, summary.Frames, summary.Train, summary.Holdout, summary.Unlabelled, summary.Pseudo, data.Backbone.Name, data.FeatureSize);
        return dataset;
    }
}
