using System.Text.Json;

namespace FleetLearn.EdgeAgent;

/// <summary>What the vehicle's platform says about training right now.</summary>
/// <param name="Parked">The vehicle is parked (training never competes with driving functions).</param>
/// <param name="Charging">On the charger (training does not drain the traction battery).</param>
/// <param name="Unmetered">On an unmetered link (depot Wi-Fi rather than cellular).</param>
public sealed record VehicleState(bool Parked, bool Charging, bool Unmetered)
{
    /// <summary>Everything allowed (simulation, bench).</summary>
    public static VehicleState Idle { get; } = new(true, true, true);

    /// <summary>Ignition on (null: not reported).</summary>
    public bool? Ignition { get; init; }

    /// <summary>Speed in km/h (null: not reported).</summary>
    public double? SpeedKmh { get; init; }

    /// <summary>State of charge of the traction battery, 0..1 (null: not reported).</summary>
    public double? StateOfCharge { get; init; }

    /// <summary>Network kind: <c>wifi</c>, <c>ethernet</c>, <c>cellular</c>, <c>none</c> (null: not reported).</summary>
    public string? Network { get; init; }

    /// <summary>Temperature of the vehicle computer's SoC in °C (null: not reported).</summary>
    public double? SocTemperatureC { get; init; }

    /// <summary>
    /// Until when the platform expects the vehicle to stay eligible (the charger's schedule, the planned departure, the depot
    /// Wi-Fi window; the vehicle's clock), or null when it does not know. Reported at check-in for pace steering (docs/async.md).
    /// </summary>
    public DateTimeOffset? EligibleUntil { get; init; }

    /// <summary>Why the state could not be read (then every flag is false), or null.</summary>
    public string? Problem { get; init; }
}

/// <summary>Where the agent learns the vehicle's state.</summary>
public interface IVehicleStateProvider
{
    /// <summary>The state now.</summary>
    VehicleState Current();
}

/// <summary>
/// Reads <see cref="EdgeAgentOptions.VehicleStateFile"/> (JSON with <c>parked</c>, <c>charging</c>, <c>unmetered</c> and optionally
/// <c>eligible_until</c>, ISO 8601 with its offset) when
/// set, else the environment variables <c>FLEETLEARN_PARKED</c>, <c>FLEETLEARN_CHARGING</c>, <c>FLEETLEARN_UNMETERED</c>
/// (<c>true</c>/<c>false</c>/<c>1</c>/<c>0</c>), each defaulting to true. An unreadable file means "not eligible": the
/// vehicle's platform owns that file, and a torn write must not start training while driving.
/// </summary>
public sealed class FileVehicleStateProvider(EdgeAgentOptions options) : IVehicleStateProvider
{
    /// <inheritdoc />
    public VehicleState Current()
    {
        if (options.VehicleStateFile is { } path)
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
                var root = doc.RootElement;
                return new VehicleState(Flag(root, "parked"), Flag(root, "charging"), Flag(root, "unmetered")) { EligibleUntil = VehicleStateJson.Until(root) };
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException)
            {
                return new VehicleState(false, false, false);
            }
        }
        return new VehicleState(Env("FLEETLEARN_PARKED"), Env("FLEETLEARN_CHARGING"), Env("FLEETLEARN_UNMETERED"));

        static bool Flag(JsonElement root, string name) => !root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.True;
        static bool Env(string name) => Environment.GetEnvironmentVariable(name)?.Trim().ToLowerInvariant() is not ("false" or "0" or "no");
    }
}

/// <summary>Fixed vehicle states.</summary>
public static class VehicleStateProviders
{
    /// <summary>Always parked, charging and unmetered (simulation).</summary>
    public static IVehicleStateProvider Idle { get; } = new Fixed(VehicleState.Idle);

    private sealed class Fixed(VehicleState state) : IVehicleStateProvider
    {
        public VehicleState Current() => state;
    }
}
