// A vehicle service of its own (here: a heartbeat) that also runs the FleetLearn edge agent in the same generic host.
using FleetLearn.Core.Federated;
using FleetLearn.EdgeAgent;
using FleetLearn.Perception.Datasets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

var builder = Host.CreateApplicationBuilder(args);
builder.Services.AddFleetLearnEdgeAgent(); // settings in sections Agent and Mqtt, validated when the host starts
// The vehicle's own labelled features; this sample takes vehicle 0's tenth of Fashion-MNIST (Data:Folder, else the default).
builder.Services.AddSingleton(_ => VehicleDataset.FromPartition(FashionMnist.LoadTrain(builder.Configuration["Data:Folder"]),
    vehicles: 10, index: 0, new PartitionScheme.Iid(), seed: 1, holdoutFraction: 0.1));
builder.Services.AddHostedService<Heartbeat>();
await builder.Build().RunAsync();

/// <summary>The host's own work, running beside the agent.</summary>
internal sealed class Heartbeat(ILogger<Heartbeat> logger, TimeProvider time) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(30), time);
        do logger.LogInformation("vehicle service alive at {Time:u}", time.GetUtcNow());
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
