using System.ComponentModel.DataAnnotations;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using FleetLearn.Compute;
using FleetLearn.Transport.Mqtt;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// When the vehicle may train (configuration section <c>Eligibility</c>), as production federated learning does with
/// "idle, charging, unmetered": where the vehicle's state comes from, and the policy applied to it.
/// </summary>
public sealed class EligibilityOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Eligibility";

    /// <summary>JSON file the vehicle's gateway rewrites (atomically: write, then rename) with the state; see <see cref="VehicleStateJson"/>.</summary>
    public string? StateFile { get; set; }

    /// <summary>Unix socket where the gateway streams the state as JSON lines (one object per change); instead of <see cref="StateFile"/>.</summary>
    public string? StateSocket { get; set; }

    /// <summary>How often the state file is read (and a lost socket reconnected). Default 200 ms, so training stops within 1 s of a change.</summary>
    public TimeSpan PollInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Train only when parked (ignition off and standing still). Default true.</summary>
    public bool RequireParked { get; set; } = true;

    /// <summary>Train only when charging or with the state of charge at least <see cref="ChargeFloor"/>. Default true.</summary>
    public bool RequireChargingOrCharge { get; set; } = true;

    /// <summary>The state of charge (0..1) above which training may run off the charger. Default 0.8.</summary>
    [Range(0.0, 1.0)] public double ChargeFloor { get; set; } = 0.8;

    /// <summary>Train only on an unmetered network (wifi, ethernet). Default true.</summary>
    public bool RequireUnmetered { get; set; } = true;

    /// <summary>Train only while the SoC is cooler than this (°C); null: no limit. Default 80.</summary>
    public double? MaxSocTemperatureC { get; set; } = 80;

    /// <summary>CPU threads local training and extraction may use (the agent's thread cap; systemd's CPUQuota= caps the whole service). Default 1.</summary>
    [Range(1, 1024)] public int TrainingThreads { get; set; } = 1;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (StateFile is not null && StateSocket is not null) yield return new ValidationResult("Eligibility:StateFile and Eligibility:StateSocket: set one, not both.");
        if (PollInterval <= TimeSpan.Zero || PollInterval > TimeSpan.FromSeconds(1))
            yield return new ValidationResult($"Eligibility:PollInterval {PollInterval} must be within (0, 1 s]: training must stop within 1 s of a state change.");
        if (MaxSocTemperatureC is { } t && !double.IsFinite(t)) yield return new ValidationResult("Eligibility:MaxSocTemperatureC must be a finite temperature.");
    }
}

/// <summary>The eligibility policy: why the vehicle may not train in a given state, or null.</summary>
public sealed class EligibilityPolicy(EligibilityOptions options)
{
    /// <summary>The reason a state forbids training, or null when training may run.</summary>
    public string? Ineligibility(VehicleState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Problem is not null) return $"vehicle state unknown ({state.Problem})";
        if (options.RequireParked && !state.Parked) return state.Ignition == true ? "ignition on" : state.SpeedKmh is > 0 ? "moving" : "not parked";
        if (options.RequireChargingOrCharge && !state.Charging && !(state.StateOfCharge >= options.ChargeFloor))
            return string.Create(CultureInfo.InvariantCulture, $"not charging and state of charge {(state.StateOfCharge is { } c ? c.ToString("P0", CultureInfo.InvariantCulture) : "unknown")} below {options.ChargeFloor:P0}");
        if (options.RequireUnmetered && !state.Unmetered) return $"on a metered network ({state.Network ?? "metered"})";
        if (options.MaxSocTemperatureC is { } max && state.SocTemperatureC is { } t && t >= max)
            return string.Create(CultureInfo.InvariantCulture, $"SoC at {t:F0} °C, at or above {max:F0} °C");
        return null;
    }
}

/// <summary>
/// The gateway's state document: <c>{"ignition":false,"speed_kmh":0,"charging":true,"state_of_charge":0.83,
/// "network":"wifi","soc_temperature_c":54}</c>. Missing fields are "not reported": parked then means ignition off and
/// speed 0 (either may be given alone), unmetered means network wifi or ethernet. The older <c>parked</c>,
/// <c>unmetered</c> flags, when present, are taken as given.
/// </summary>
public static class VehicleStateJson
{
    /// <summary>Largest state document accepted.</summary>
    public const int MaxBytes = 64 << 10;

    /// <summary><c>eligible_until</c> (ISO 8601 with its offset; pace steering), or null when absent or not a valid time.</summary>
    public static DateTimeOffset? Until(JsonElement root) =>
        root.TryGetProperty("eligible_until", out var v) && v.ValueKind == JsonValueKind.String
        && DateTimeOffset.TryParse(v.GetString(), System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var t) ? t : null;

    /// <summary>Parses a state document; a malformed one yields a state whose <see cref="VehicleState.Problem"/> says why (never eligible).</summary>
    public static VehicleState Parse(ReadOnlySpan<byte> json, string source)
    {
        if (json.Length > MaxBytes) return Unknown($"{source} is {json.Length} bytes, over {MaxBytes}");
        try
        {
            var reader = new Utf8JsonReader(json);
            using var doc = JsonDocument.ParseValue(ref reader);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return Unknown($"{source} is not a JSON object");
            bool? ignition = Bool(root, "ignition");
            double? speed = Number(root, "speed_kmh");
            bool? charging = Bool(root, "charging");
            double? soc = Number(root, "state_of_charge");
            string? network = root.TryGetProperty("network", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()!.Trim().ToLowerInvariant() : null;
            double? temperature = Number(root, "soc_temperature_c");
            if (soc is { } s && !(s >= 0 && s <= 1)) return Unknown($"{source}: state_of_charge {s} is not within 0..1");
            if (speed is { } v && !(v >= 0)) return Unknown($"{source}: speed_kmh {v} is negative");
            bool parked = Bool(root, "parked") ?? (ignition != true && (speed ?? 0) == 0 && (ignition is not null || speed is not null));
            bool unmetered = Bool(root, "unmetered") ?? network is "wifi" or "ethernet";
            return new VehicleState(parked, charging ?? false, unmetered)
            {
                Ignition = ignition, SpeedKmh = speed, StateOfCharge = soc, Network = network, SocTemperatureC = temperature, EligibleUntil = Until(root),
            };
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return Unknown($"{source} is not valid JSON ({e.Message})");
        }

        static bool? Bool(JsonElement root, string name) => root.TryGetProperty(name, out var v) ? v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new FormatException($"'{name}' must be true or false"),
        } : null;

        static double? Number(JsonElement root, string name)
        {
            if (!root.TryGetProperty(name, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number || !double.IsFinite(v.GetDouble())) throw new FormatException($"'{name}' must be a number");
            return v.GetDouble();
        }
    }

    /// <summary>A state that forbids training, with the reason.</summary>
    public static VehicleState Unknown(string problem) => new(false, false, false) { Problem = problem };
}

/// <summary>
/// Watches the vehicle's state (the gateway's JSON file, polled every <see cref="EligibilityOptions.PollInterval"/>, or
/// its Unix socket of JSON lines) and applies the <see cref="EligibilityPolicy"/>. Training asks it for a
/// <see cref="TrainingToken"/>: cancelled as soon as a state that forbids training is seen, so a trainer that checks the
/// token between batches stops within the poll interval plus one batch (1 s by the default settings).
/// </summary>
/// <remarks>Its <see cref="Current"/> reports the legacy flags as the policy sees them: <c>Charging</c> is "charging or
/// above the charge floor", so the worker's Agent:RequireParked/RequireCharging/RequireUnmetered checks apply the policy
/// too; the temperature limit and the stop-within-1-s need the worker to call <see cref="Ineligibility"/> and
/// <see cref="TrainingToken"/>.</remarks>
public sealed class VehicleStateMonitor : IVehicleStateProvider, IDisposable
{
    private readonly EligibilityOptions _options;
    private readonly EligibilityPolicy _policy;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stop = new();
    private readonly ITimer? _timer;
    private readonly Task? _socketLoop;
    private readonly object _gate = new();
    private VehicleState _state;
    private CancellationTokenSource _training = new();
    private bool _disposed;

    /// <summary>Starts watching per <paramref name="options"/>; with neither a file nor a socket the state is <see cref="VehicleState.Idle"/>.</summary>
    public VehicleStateMonitor(EligibilityOptions options, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _policy = new EligibilityPolicy(options);
        _time = time ?? TimeProvider.System;
        if (options.StateFile is { } file)
        {
            _state = ReadFile(file);
            _timer = _time.CreateTimer(_ => Update(ReadFile(file)), null, options.PollInterval, options.PollInterval);
        }
        else if (options.StateSocket is { } socket)
        {
            _state = VehicleStateJson.Unknown($"no state received yet from {socket}");
            _socketLoop = Task.Run(() => SocketLoopAsync(socket, _stop.Token));
        }
        else
        {
            _state = VehicleState.Idle;
        }
        if (_policy.Ineligibility(_state) is not null) _training.Cancel();
    }

    /// <summary>Raised (on the monitor's thread) when the state changes.</summary>
    public event Action<VehicleState>? Changed;

    /// <summary>The last state seen, full fields.</summary>
    public VehicleState State
    {
        get
        {
            lock (_gate) return _state;
        }
    }

    /// <inheritdoc/>
    public VehicleState Current()
    {
        var s = State;
        return s with { Charging = s.Charging || s.StateOfCharge >= _options.ChargeFloor };
    }

    /// <summary>Why the vehicle may not train now (the policy on the last state seen), or null.</summary>
    public string? Ineligibility() => _policy.Ineligibility(State);

    /// <summary>
    /// A token that is cancelled when the vehicle stops being eligible (already cancelled when it is not eligible now).
    /// Link it with the round's token and check it between batches.
    /// </summary>
    public CancellationToken TrainingToken
    {
        get
        {
            lock (_gate)
            {
                if (_training.IsCancellationRequested && _policy.Ineligibility(_state) is null)
                {
                    _training.Dispose();
                    _training = new CancellationTokenSource();
                }
                return _training.Token;
            }
        }
    }

    /// <summary>Applies a new state (the file poll and the socket call it; tests may too).</summary>
    public void Update(VehicleState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        bool changed;
        CancellationTokenSource? cancel = null;
        lock (_gate)
        {
            if (_disposed) return;
            changed = state != _state;
            _state = state;
            if (_policy.Ineligibility(state) is not null && !_training.IsCancellationRequested) cancel = _training;
        }
        cancel?.Cancel();
        if (changed) Changed?.Invoke(state);
    }

    private static VehicleState ReadFile(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) return VehicleStateJson.Unknown($"'{path}' does not exist");
            if (info.Length > VehicleStateJson.MaxBytes) return VehicleStateJson.Unknown($"'{path}' is {info.Length} bytes, over {VehicleStateJson.MaxBytes}");
            return VehicleStateJson.Parse(File.ReadAllBytes(path), $"'{path}'");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return VehicleStateJson.Unknown($"'{path}' cannot be read ({e.Message})");
        }
    }

    private async Task SocketLoopAsync(string path, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
                using var stream = new NetworkStream(socket, ownsSocket: false);
                using var reader = new StreamReader(stream, Encoding.UTF8);
                while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
                {
                    if (line.Length > VehicleStateJson.MaxBytes) { Update(VehicleStateJson.Unknown($"a line from {path} is over {VehicleStateJson.MaxBytes} bytes")); break; }
                    if (line.Trim().Length > 0) Update(VehicleStateJson.Parse(Encoding.UTF8.GetBytes(line), path));
                }
                Update(VehicleStateJson.Unknown($"{path} closed the connection"));
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is SocketException or IOException)
            {
                Update(VehicleStateJson.Unknown($"{path}: {e.Message}"));
            }
            try
            {
                await Task.Delay(_options.PollInterval, _time, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _timer?.Dispose();
        _stop.Cancel();
        try
        {
            _socketLoop?.Wait(TimeSpan.FromSeconds(2));
        }
        catch (AggregateException)
        {
            // the loop ended with its cancellation
        }
        _stop.Dispose();
        _training.Dispose();
    }
}

/// <summary>Wiring of the eligibility policy (section <c>Eligibility</c>) into the agent's host.</summary>
public static class EligibilityServiceCollectionExtensions
{
    /// <summary>
    /// Binds <c>Eligibility</c>, registers the <see cref="VehicleStateMonitor"/> as the agent's <see cref="IVehicleStateProvider"/> (when
    /// a state file or socket is set)
    /// and a <see cref="TrainerPool"/> capped at <see cref="EligibilityOptions.TrainingThreads"/> CPU threads. Call after
    /// <c>AddFleetLearnEdgeAgent</c> (the last registration wins).
    /// </summary>
    public static IServiceCollection AddVehicleEligibility(this IServiceCollection services)
    {
        services.AddOptions<EligibilityOptions>().BindConfiguration(EligibilityOptions.Section).ValidateOnStart();
        services.AddSingleton<IValidateOptions<EligibilityOptions>>(new DataAnnotationsValidator<EligibilityOptions>());
        services.AddSingleton(sp => new VehicleStateMonitor(sp.GetRequiredService<IOptions<EligibilityOptions>>().Value, sp.GetService<TimeProvider>()));
        // Without a state file or socket in this section, the Agent section's older provider stays (Agent:VehicleStateFile, FLEETLEARN_* variables).
        services.AddSingleton<IVehicleStateProvider>(sp => sp.GetRequiredService<IOptions<EligibilityOptions>>().Value is { StateFile: null, StateSocket: null }
            ? new FileVehicleStateProvider(sp.GetRequiredService<IOptions<EdgeAgentOptions>>().Value)
            : sp.GetRequiredService<VehicleStateMonitor>());
        services.AddSingleton(sp =>
        {
            int threads = sp.GetRequiredService<IOptions<EligibilityOptions>>().Value.TrainingThreads;
            return new TrainerPool(spec => TrainerFactory.Create(BackendChoice.Cpu, spec, TrainerPool.MaxBatch, threads), 1);
        });
        return services;
    }
}
