using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

namespace FleetLearn.Aggregator;

/// <summary>Wiring of the aggregator into a host.</summary>
public static class AggregatorServiceCollectionExtensions
{
    /// <summary>
    /// Binds <c>Aggregator</c> and <c>Mqtt</c>, validates them on start, adds <see cref="AggregatorStatus"/>, the worker and
    /// the HTTP surface (<see cref="AggregatorHttpService"/>, which does nothing unless <c>Aggregator:Urls</c> or <c>Aggregator:HttpPort</c> is set).
    /// </summary>
    public static IServiceCollection AddFleetLearnAggregator(this IServiceCollection services)
    {
        services.AddOptions<AggregatorOptions>().BindConfiguration(AggregatorOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<AggregatorOptions>>(new DataAnnotationsValidator<AggregatorOptions>());
        services.AddOptions<MqttTransportOptions>().BindConfiguration(MqttTransportOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<MqttTransportOptions>>(new DataAnnotationsValidator<MqttTransportOptions>(o => o.Validate()));
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<AggregatorStatus>();
        // The status's instruments through OpenTelemetry; OTLP export follows the standard OTEL_EXPORTER_OTLP_* variables.
        var metrics = services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(AggregatorStatus.MeterName));
        if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT")))
            metrics.WithMetrics(m => m.AddOtlpExporter());
        services.AddHostedService<AggregatorWorker>();
        services.AddHostedService<AggregatorHttpService>();
        return services;
    }
}
