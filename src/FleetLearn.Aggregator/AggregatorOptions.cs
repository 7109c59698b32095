using System.ComponentModel.DataAnnotations;

using FleetLearn.Core.Compression;
using FleetLearn.Core.Privacy;
using FleetLearn.Core.Rounds;

namespace FleetLearn.Aggregator;

/// <summary>Settings of the aggregator (configuration section <c>Aggregator</c>); MQTT settings live in <c>Mqtt</c>.</summary>
public sealed class AggregatorOptions : IValidatableObject
{
    // The text settings as bound, and what they parse to (parsed once per value: the round code reads enums, not text).
    private string _codec = "none", _secureAggregation = "off", _privacy = "off";
    private CodecSpec? _codecSpec;
    private SecureAggregationMode? _secureMode;
    private ParsedPrivacy? _privacyMode;

    /// <summary>Configuration section name.</summary>
    public const string Section = "Aggregator";

    /// <summary>Model architecture (layer widths).</summary>
    [Required] public string Model { get; set; } = "784-200-200-10";

    /// <summary>Strategy text (<c>fedavg</c>, <c>fedprox:0.01</c>, <c>fedadam</c>, …). Streaming strategies fold updates as they arrive.</summary>
    [Required] public string Strategy { get; set; } = "fedavg";

    /// <summary>Server learning rate; null = the strategy's default.</summary>
    public float? ServerLearningRate { get; set; }

    /// <summary>Rounds to run (with Mode = fedbuff: steps to apply); 0 = until stopped.</summary>
    [Range(0, int.MaxValue)] public int Rounds { get; set; }

    /// <summary>
    /// <c>sync</c>: synchronous rounds of <see cref="CohortSize"/>. <c>fedbuff</c>: buffered asynchronous aggregation — vehicles
    /// check in when eligible, train on the version they are handed, and every <see cref="Buffer"/>-th update applies a step
    /// (docs/async.md, "Over MQTT"); plaintext only, central DP at most.
    /// </summary>
    [Required] public string Mode { get; set; } = "sync";

    /// <summary>Whether <see cref="Mode"/> is <c>fedbuff</c>.</summary>
    public bool IsFedBuff => Mode.Trim().Equals("fedbuff", StringComparison.OrdinalIgnoreCase);

    /// <summary>FedBuff: updates per step (K); null = <see cref="CohortSize"/>.</summary>
    [Range(1, 1_000_000)] public int? Buffer { get; set; }

    /// <summary>FedBuff: updates trained on a model more than this many versions old are refused; that many + 1 versions stay retained.</summary>
    [Range(0, 1000)] public int MaxStaleness { get; set; } = 10;

    /// <summary>FedBuff: vehicles training at once; null = 2K.</summary>
    [Range(1, 10_000_000)] public int? Concurrency { get; set; }

    /// <summary>FedBuff: how long a check-in holds its slot without an update (a silent vehicle frees it then). Default 1 hour.</summary>
    public TimeSpan BufferedLease { get; set; } = TimeSpan.FromHours(1);

    /// <summary>FedBuff: most contributions one vehicle may make; null = no cap.</summary>
    [Range(1, int.MaxValue)] public int? MaxParticipations { get; set; }

    /// <summary>
    /// Synchronous rounds: pace steering (docs/async.md, "Pace steering over MQTT"). On each check-in that reports until when the
    /// vehicle stays eligible, the aggregator suggests the vehicle's next check-in window — the least-loaded of its usual hours,
    /// at least <see cref="PaceMinInterval"/> ahead — signed, on <c>vehicles/{id}/inbox/pace</c>. Off by default.
    /// </summary>
    public bool PaceSteering { get; set; }

    /// <summary>Pace steering: how soon after a check-in the suggested next one may start. Default 20 hours (about one check-in a day).</summary>
    public TimeSpan PaceMinInterval { get; set; } = TimeSpan.FromHours(20);

    /// <summary>Vehicles selected per round (K).</summary>
    [Range(1, 1_000_000)] public int CohortSize { get; set; } = 10;

    /// <summary>Fewer accepted updates by the deadline and the round is aborted (model unchanged).</summary>
    [Range(1, 1_000_000)] public int MinParticipants { get; set; } = 1;

    /// <summary>How long vehicles have to send their update (the phase deadline; also the updates' message expiry).</summary>
    public TimeSpan RoundTimeout { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>After this long waiting for <see cref="CohortSize"/> check-ins, a round starts with at least <see cref="MinParticipants"/>.</summary>
    public TimeSpan CohortWait { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Local epochs E.</summary>
    [Range(1, 1000)] public int LocalEpochs { get; set; } = 1;

    /// <summary>Local batch size B.</summary>
    [Range(1, 4096)] public int Batch { get; set; } = 10;

    /// <summary>Client learning rate.</summary>
    public float LearningRate { get; set; } = 0.05f;

    /// <summary>Initial weights of a new model: <c>he</c> or <c>uniform</c> (PyTorch's nn.Linear default).</summary>
    [Required] public string Init { get; set; } = "he";

    /// <summary>Seed of the initial model and cohort selection.</summary>
    public ulong Seed { get; set; } = 1;

    /// <summary>LiteDB file of models and round records.</summary>
    [Required] public string DatabasePath { get; set; } = "aggregator.db";

    /// <summary>PEM file of the ECDSA P-256 plan-signing key (created only for a new fleet, never when missing for one with a model; the public key goes next to it as .pub.pem).</summary>
    [Required] public string SigningKeyPath { get; set; } = "aggregator-signing.pem";

    /// <summary>
    /// Key id (16 hex digits, logged at start) of a new signing key this start may adopt for a fleet that signed with another:
    /// a deliberate rotation, after the vehicles were given the new public key (docs/reliability.md). Empty: the key must be
    /// the one of record.
    /// </summary>
    public string AcceptSigningKeyId { get; set; } = "";

    /// <summary>How long this instance's claim on the fleet (the single-writer lease on the broker) lasts without renewal.</summary>
    public TimeSpan LeaseTtl { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Largest update envelope accepted (bad-input limit).</summary>
    [Range(1024, int.MaxValue)] public int MaxUpdateBytes { get; set; } = 64 << 20;

    /// <summary>
    /// Most bytes of vehicle messages the worker's inbox holds before the MQTT client stops taking more (back-pressure to the
    /// broker; nothing is dropped). Default 256 MiB. It bounds the memory that vehicles' messages can take while they wait.
    /// </summary>
    [Range(1L << 20, long.MaxValue)] public long InboxBytes { get; set; } = 256L << 20;

    /// <summary>Most bytes of one vehicle's messages in the inbox; a message past it is dropped and counted (<c>inbox_full</c>), and the vehicle resends it. Default 32 MiB.</summary>
    [Range(1L << 20, long.MaxValue)] public long InboxBytesPerVehicle { get; set; } = 32L << 20;

    /// <summary>
    /// A vehicle whose check-in is stamped further than this from the aggregator's clock is reported (log, metric
    /// <c>fleetlearn.aggregator.vehicles.clock_skewed</c>, <c>clockSkewSeconds</c> in <c>/api/vehicles</c>). Rounds do not depend on
    /// it: vehicles measure deadlines as durations. Default 1 minute.
    /// </summary>
    public TimeSpan ClockSkewTolerance { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// MQTT 5 message expiry of the retained model chunks: superseded versions leave the broker on their own, and the current
    /// one is published again once half of it has passed. A vehicle that lacks a model asks for it. Default 1 hour.
    /// </summary>
    public TimeSpan ModelRetention { get; set; } = TimeSpan.FromHours(1);

    /// <summary>Folder where every published global model is also written as ONNX (<c>model-v{N}.onnx</c>); empty = no export.</summary>
    public string? OnnxFolder { get; set; } = "models-onnx";

    /// <summary>Extra fraction of vehicles selected to absorb dropouts (plaintext rounds close once <see cref="CohortSize"/> updates are in).</summary>
    [Range(0.0, 10.0)] public double OverSelection { get; set; }

    /// <summary>Update codec (<c>none</c>, <c>q8</c>, <c>rot+q8</c>, <c>sub0.25+rot+q4</c>, <c>topk0.01+ef+q8</c>, …; docs/compression.md).</summary>
    [Required]
    public string Codec
    {
        get => _codec;
        set => (_codec, _codecSpec) = (value, null);
    }

    /// <summary><see cref="Codec"/> parsed, once per value (a bad value throws here; <see cref="Validate"/> reports it at start).</summary>
    public CodecSpec CodecSpec => _codecSpec ??= CodecSpec.Parse(_codec);

    /// <summary>Secure aggregation: <c>off</c>, <c>full</c> (SecAgg) or <c>plus</c> (SecAgg+).</summary>
    [Required]
    public string SecureAggregation
    {
        get => _secureAggregation;
        set => (_secureAggregation, _secureMode) = (value, null);
    }

    /// <summary><see cref="SecureAggregation"/> parsed, once per value.</summary>
    public SecureAggregationMode SecureMode => _secureMode ??= AggregatorProtection.ParseSecure(_secureAggregation);

    /// <summary>k of SecAgg+; null = the smallest even k ≥ 2⌈log₂ n⌉.</summary>
    public int? SecAggNeighbors { get; set; }

    /// <summary>Modulus bits m of the secure sum; null = the smallest that holds the cohort's sum.</summary>
    public int? SecAggModulusBits { get; set; }

    /// <summary>
    /// PEM of the fleet's device CA (broker-config/make-dev-ca.sh's ca.crt). Set: a check-in must carry the vehicle's device
    /// certificate (CN = vehicle id, its key = the device key), and plans list the cohort's certificates so that vehicles can
    /// check every key against the CA (issue 13 item 5). Null: device keys are trusted as first registered.
    /// </summary>
    public string? DeviceCaFile { get; set; }

    /// <summary>
    /// Run secure aggregation as if this aggregator were malicious (issue 13 item 5): ConsistencyCheck round, signed SecAgg
    /// downlink, certified device keys (needs <see cref="DeviceCaFile"/>). Vehicles must run a release that speaks it.
    /// </summary>
    public bool SecAggMaliciousServer { get; set; }

    /// <summary>c: colluding vehicles tolerated among one vehicle's share holders in <see cref="SecAggMaliciousServer"/> mode (t must exceed (h + c)/2).</summary>
    [Range(0, 1_000_000)] public int SecAggColludingHolders { get; set; }

    /// <summary>How long each secure-aggregation phase collects messages before it closes without the missing vehicles.</summary>
    public TimeSpan PhaseTimeout { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>C: DP clip norm, or norm bound without DP (secure aggregation and shared-range codecs need one); null = none.</summary>
    public double? ClipNorm { get; set; }

    /// <summary>Differential privacy: <c>off</c>, <c>central</c> (this aggregator noises the sum) or <c>distributed</c> (each vehicle adds its share).</summary>
    [Required]
    public string Privacy
    {
        get => _privacy;
        set => (_privacy, _privacyMode) = (value, null);
    }

    /// <summary><see cref="Privacy"/> parsed, once per value: the DP mode, null when off.</summary>
    public NoiseMode? PrivacyMode => (_privacyMode ??= new ParsedPrivacy(AggregatorProtection.ParsePrivacy(_privacy))).Mode;

    /// <summary>σ: the released sum carries N(0, σ²C²) per coordinate.</summary>
    public double NoiseMultiplier { get; set; } = 1.0;

    /// <summary>δ of the reported (ε, δ).</summary>
    public double Delta { get; set; } = 1e-5;

    /// <summary>Per-vehicle ε budget: a vehicle whose next participation would exceed it is not selected; null = none.</summary>
    public double? EpsilonBudget { get; set; }

    /// <summary>LiteDB file of the per-vehicle privacy ledger (DP runs).</summary>
    [Required] public string PrivacyLedgerPath { get; set; } = "aggregator-privacy.db";

    /// <summary>Public bound W on a sample-count weight (sent as w/W under secure aggregation), at most <see cref="WeightCap"/>; null = the largest sample count the cohort checked in with, capped.</summary>
    public double? MaxWeight { get; set; }

    /// <summary>Default <see cref="WeightCap"/>: 10,000 samples (a Fashion-MNIST vehicle holds ~600–6,000).</summary>
    public const double DefaultWeightCap = 10_000;

    /// <summary>
    /// Required cap on a vehicle's sample-count weight. The count is what the vehicle reports at check-in, so without a
    /// cap one vehicle claiming 10^9 samples outweighs the rest of the cohort. Under DP every update weighs 1 and the cap
    /// is not used. Default <see cref="DefaultWeightCap"/>.
    /// </summary>
    public double? WeightCap { get; set; } = DefaultWeightCap;

    /// <summary>
    /// C of the plaintext-update check (<see cref="Core.Federated.PlaintextUpdateCheck"/>): a decoded plaintext update with
    /// ‖Δ‖₂ over it, or any NaN/∞, is rejected before it is folded. Default 1000 (honest 2NN updates measure ~0.1–10);
    /// at most 10^9, and with <see cref="CohortSize"/> and <see cref="WeightCap"/> small enough that the weighted sum
    /// cannot overflow. Independent of <see cref="ClipNorm"/>, which the vehicle applies before encoding (codecs may change the norm).
    /// </summary>
    public double MaxUpdateNorm { get; set; } = Core.Rounds.RoundRules.DefaultMaxUpdateNorm;

    /// <summary>
    /// Aggregator shards of each round (docs/scale.md, "Sharded aggregation"): above 1 this aggregator is the coordinator: it
    /// selects, assigns the cohort to that many shard processes (<see cref="ShardIndex"/>), combines their partial sums and releases.
    /// </summary>
    [Range(1, Core.Rounds.PlanShards.MaxShards)] public int Shards { get; set; } = 1;

    /// <summary>Set: this process is aggregator shard i of a coordinator's sharded rounds (it connects as <c>aggregator-shard-{i}</c>).</summary>
    [Range(0, Core.Rounds.PlanShards.MaxShards - 1)] public int? ShardIndex { get; set; }

    /// <summary>A shard's copy of the coordinator's public plan key (PEM): it runs only the rounds of plans that key signed.</summary>
    public string CoordinatorKeyPath { get; set; } = "aggregator-signing.pub.pem";

    /// <summary>After the last round, keep answering late messages this long so that vehicles' outboxes empty.</summary>
    public TimeSpan DrainTime { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Stop the host after the last round (command-line runs).</summary>
    public bool StopWhenDone { get; set; }

    /// <summary>
    /// Addresses of the HTTP surface (ASP.NET Core Kestrel), separated by ';', e.g. <c>http://localhost:8080</c> (loopback,
    /// IPv4 and IPv6) or <c>http://*:8080</c> (every interface); empty = <see cref="HttpPort"/> decides.
    /// </summary>
    public string? Urls { get; set; }

    /// <summary>Shorthand for <see cref="Urls"/> = <c>http://{HttpHost}:{HttpPort}</c>; 0 (the default) with no <see cref="Urls"/> = no HTTP surface.</summary>
    [Range(0, 65535)] public int HttpPort { get; set; }

    /// <summary>Host of the <see cref="HttpPort"/> shorthand: <c>localhost</c> (default: loopback, reachable as localhost, 127.0.0.1 and ::1), an address, or <c>*</c> for every interface.</summary>
    [Required] public string HttpHost { get; set; } = "localhost";

    /// <summary>
    /// Bearer token that every HTTP request except <c>/healthz</c> and the dashboard's static files must carry
    /// (<c>Authorization: Bearer …</c>; the dashboard takes it as <c>/#token=…</c>); empty = no token (bind to loopback then).
    /// </summary>
    public string? HttpToken { get; set; }

    /// <summary>The HTTP surface's addresses: <see cref="Urls"/>, else the <see cref="HttpPort"/> shorthand, else none (off).</summary>
    public IReadOnlyList<string> HttpUrls() =>
        !string.IsNullOrWhiteSpace(Urls) ? [.. Urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)]
        : HttpPort > 0 ? [string.Create(System.Globalization.CultureInfo.InvariantCulture, $"http://{HttpHost}:{HttpPort}")]
        : [];

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var errors = new List<ValidationResult>();
        try
        {
            Core.Model.ModelSpec.Parse(Model);
            Core.Model.ModelInitializer.ParseScheme(Init);
            Core.Federated.StrategyCatalog.Parse(Strategy, ServerLearningRate);
        }
        catch (FormatException e)
        {
            errors.Add(new ValidationResult(e.Message));
        }
        if (!Mode.Trim().Equals("sync", StringComparison.OrdinalIgnoreCase) && !IsFedBuff) errors.Add(new ValidationResult($"Aggregator:Mode '{Mode}': expected sync or fedbuff."));
        if (IsFedBuff && Privacy.Trim().Equals("distributed", StringComparison.OrdinalIgnoreCase))
            errors.Add(new ValidationResult("Aggregator:Mode fedbuff takes central DP at most: distributed noise shares need a cohort fixed in advance, and secure groups with distributed DP run only in the trace simulator (docs/async.md)."));
        if (IsFedBuff && SecAggMaliciousServer)
            errors.Add(new ValidationResult("Aggregator:Mode fedbuff with Aggregator:SecAggMaliciousServer is not built: secure groups over MQTT run the semi-honest protocol (docs/async.md)."));
        if (PaceSteering && IsFedBuff) errors.Add(new ValidationResult("Aggregator:PaceSteering steers synchronous rounds; with Mode fedbuff the concurrency limit paces check-ins (docs/async.md)."));
        if (PaceSteering && PaceMinInterval < TimeSpan.Zero) errors.Add(new ValidationResult("Aggregator:PaceMinInterval must be ≥ 0."));
        if (IsFedBuff && BufferedLease <= TimeSpan.Zero) errors.Add(new ValidationResult("Aggregator:BufferedLease must be positive."));
        if (MinParticipants > CohortSize) errors.Add(new ValidationResult("Aggregator:MinParticipants cannot exceed Aggregator:CohortSize."));
        if (RoundTimeout <= TimeSpan.Zero || CohortWait < TimeSpan.Zero) errors.Add(new ValidationResult("Aggregator:RoundTimeout must be positive and CohortWait not negative."));
        if (!(LearningRate > 0) || !float.IsFinite(LearningRate)) errors.Add(new ValidationResult("Aggregator:LearningRate must be positive."));
        foreach (var url in HttpUrls())
        {
            // Kestrel's wildcard hosts (*, +) are not URIs; check the rest of the address with a stand-in host.
            string probe = url.Replace("://*", "://any", StringComparison.Ordinal).Replace("://+", "://any", StringComparison.Ordinal);
            if (!Uri.TryCreate(probe, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                errors.Add(new ValidationResult($"Aggregator:Urls: '{url}' is not an http:// or https:// address (e.g. http://localhost:8080)."));
        }
        if (HttpToken is { Length: > 0 and < 16 }) errors.Add(new ValidationResult("Aggregator:HttpToken must be at least 16 characters (or empty for none)."));
        if (SecAggMaliciousServer && (string.IsNullOrWhiteSpace(DeviceCaFile) || AggregatorProtection.ParseSecureOrOff(SecureAggregation) == Core.Compression.SecureAggregationMode.Off))
            errors.Add(new ValidationResult("Aggregator:SecAggMaliciousServer needs secure aggregation (full or plus) and Aggregator:DeviceCaFile: without certified device keys a malicious aggregator could invent vehicles."));
        if ((Shards > 1 || ShardIndex is not null) && (IsFedBuff || SecAggMaliciousServer || Privacy.Trim().Equals("distributed", StringComparison.OrdinalIgnoreCase)))
            errors.Add(new ValidationResult("Aggregator:Shards / ShardIndex: sharded rounds over MQTT run synchronous rounds, without the malicious-aggregator mode and without distributed DP (per-shard noise shares are built in process only: docs/scale.md)."));
        if (Shards > 1 && ShardIndex is not null) errors.Add(new ValidationResult("Aggregator:Shards (a coordinator) and Aggregator:ShardIndex (a shard) exclude each other."));
        if (InboxBytes < 1L << 20 || InboxBytesPerVehicle < 1L << 20 || InboxBytesPerVehicle > InboxBytes)
            errors.Add(new ValidationResult($"Aggregator:InboxBytesPerVehicle ({InboxBytesPerVehicle}) must be at least 1 MiB (one message at the brokers' packet limit) and at most Aggregator:InboxBytes ({InboxBytes})."));
        if (ModelRetention < TimeSpan.FromSeconds(10)) errors.Add(new ValidationResult("Aggregator:ModelRetention must be at least 10 seconds."));
        if (PhaseTimeout < TimeSpan.FromMilliseconds(100)) errors.Add(new ValidationResult("Aggregator:PhaseTimeout must be at least 100 ms."));
        if (WeightCap is not { } cap || !(cap >= 1) || double.IsInfinity(cap))
            errors.Add(new ValidationResult($"Aggregator:WeightCap is required and must be a finite number ≥ 1 (got {WeightCap?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}): weights are sample counts the vehicles report themselves (default {DefaultWeightCap})."));
        else if (MaxWeight is { } w && (!(w > 0) || w > cap))
            errors.Add(new ValidationResult($"Aggregator:MaxWeight {w.ToString(System.Globalization.CultureInfo.InvariantCulture)} must be positive and at most Aggregator:WeightCap {cap.ToString(System.Globalization.CultureInfo.InvariantCulture)}."));
        if (!(MaxUpdateNorm > 0) || MaxUpdateNorm > Core.Federated.PlaintextUpdateCheck.MaxBound)
            errors.Add(new ValidationResult($"Aggregator:MaxUpdateNorm {MaxUpdateNorm.ToString(System.Globalization.CultureInfo.InvariantCulture)} must be within (0, {Core.Federated.PlaintextUpdateCheck.MaxBound:G}]."));
        else if (WeightCap is { } wc && wc >= 1 && !Core.Federated.PlaintextUpdateCheck.SumIsSafe((long)Math.Ceiling(CohortSize * (1 + OverSelection)), wc, MaxUpdateNorm))
            errors.Add(new ValidationResult("Aggregator:CohortSize × Aggregator:WeightCap × Aggregator:MaxUpdateNorm is so large that the weighted sum of updates could overflow float: lower one of them."));
        try
        {
            var protection = AggregatorProtection.Describe(this, (int)Math.Ceiling(CohortSize * (1 + OverSelection)), MaxWeight ?? WeightCap ?? 1);
            protection.CreatePipeline(Core.Model.ModelSpec.Parse(Model).ParameterCount, (int)Math.Ceiling(CohortSize * (1 + OverSelection)));
            if (protection.SecureMode != Core.Compression.SecureAggregationMode.Off && !(Core.Federated.StrategyCatalog.Parse(Strategy, ServerLearningRate).CreateAggregator(1) is Core.Federated.WeightedMeanAggregator))
                errors.Add(new ValidationResult($"Aggregator:Strategy '{Strategy}' needs each vehicle's update, but secure aggregation reveals only the sum: use fedavg, fedavgm, fedprox or an adaptive server optimizer."));
        }
        catch (Exception e) when (e is FormatException or ArgumentException or Core.Rounds.WireFormatException)
        {
            errors.Add(new ValidationResult($"Aggregator: {e.Message}"));
        }
        return errors;
    }
}

/// <summary>A parsed <see cref="AggregatorOptions.Privacy"/> (boxed so that "off", a null mode, is cached too).</summary>
internal sealed record ParsedPrivacy(NoiseMode? Mode);
