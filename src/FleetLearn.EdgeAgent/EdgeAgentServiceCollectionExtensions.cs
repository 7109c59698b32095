using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent;

/// <summary>Wiring of the edge agent into a host.</summary>
public static class EdgeAgentServiceCollectionExtensions
{
    /// <summary>Binds <c>Agent</c> and <c>Mqtt</c>, validates them on start, and adds the worker. The caller registers a <see cref="VehicleDataset"/>.</summary>
    public static IServiceCollection AddFleetLearnEdgeAgent(this IServiceCollection services)
    {
        services.AddOptions<EdgeAgentOptions>().BindConfiguration(EdgeAgentOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<EdgeAgentOptions>>(new DataAnnotationsValidator<EdgeAgentOptions>());
        services.AddOptions<MqttTransportOptions>().BindConfiguration(MqttTransportOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<MqttTransportOptions>>(new DataAnnotationsValidator<MqttTransportOptions>(o => o.Validate()));
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton<IVehicleStateProvider>(sp => new FileVehicleStateProvider(sp.GetRequiredService<IOptions<EdgeAgentOptions>>().Value));
        services.AddHostedService<EdgeAgentWorker>();
        return services;
    }
}
