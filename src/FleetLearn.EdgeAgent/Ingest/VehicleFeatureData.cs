using FleetLearn.Core.Training;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Ingest;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.EdgeAgent.Ingest;

/// <summary>A source of the vehicle's training data that can change while the agent runs (a worker asks it each round).</summary>
public interface IVehicleDataSource
{
    /// <summary>The data now: labelled frames to train on, and the hold-out.</summary>
    VehicleDataset Current();
}

/// <summary>What the store gives training now.</summary>
public sealed record VehicleDataSummary(int Clips, long Frames, int Train, int Holdout, long Unlabelled, long Pseudo);

/// <summary>
/// The vehicle's data, end to end: its feature store, the backbone and the ingestor that fill it, and snapshots of it as
/// a <see cref="VehicleDataset"/> (labelled frames only; unlabelled frames stay in the store for evaluation of agreement).
/// Thread-safe: ingest and snapshots take one lock.
/// </summary>
public sealed class VehicleFeatureData : IVehicleDataSource, IDisposable
{
    private readonly object _gate = new();
    private readonly ClipFeatureStore _store;
    private readonly ClipIngestor _ingestor;
    private readonly OnnxModel _backbone;
    private readonly OnnxModel? _teacher;
    private readonly double _holdout;
    private readonly int _classes;

    /// <summary>Opens the store and backbone per <paramref name="options"/>.</summary>
    public VehicleFeatureData(VehicleIngestOptions options, string databasePath, TimeProvider? time = null, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.DataFolder is null) throw new ArgumentException("Ingest:DataFolder is not set.");
        DataFolder = options.DataFolder;
        _holdout = options.HoldoutFraction;
        _classes = options.ClassCount;
        var modelOptions = new OnnxModelOptions
        {
            OutputName = options.BackboneOutput, IntraOpThreads = options.Threads, MaxBatchSize = options.Batch, Log = log,
            ExecutionProvider = options.Provider.Trim().ToLowerInvariant() switch { "cpu" => ExecutionProviderPreference.Cpu, "cuda" => ExecutionProviderPreference.RequireCuda, _ => ExecutionProviderPreference.PreferCuda },
        };
        string name = options.Backbone.Trim();
        byte[] model = ResNet18Backbone.Matches(name) ? ResNet18Backbone.Create()
            : name.Equals("generated", StringComparison.OrdinalIgnoreCase) ? GeneratedBackbone.Create()
            : File.ReadAllBytes(name);
        _backbone = OnnxModel.Load(model, modelOptions, name.ToLowerInvariant() is "resnet18" or "generated" ? name.ToLowerInvariant() : name);
        try
        {
            _teacher = options.Teacher is { } t ? OnnxModel.Load(t, modelOptions with { OutputName = null }) : null;
            StoreFolder = options.EffectiveStoreFolder(databasePath);
            _store = ClipFeatureStore.Open(StoreFolder, FeatureExtractor.Identity(_backbone), _backbone.OutputSize, options.QuotaMiB << 20, options.MaxAge, time, log);
            _ingestor = new ClipIngestor(options.DataFolder, _backbone, _store, options.ToIngestOptions(), _teacher, time, log);
        }
        catch
        {
            _teacher?.Dispose();
            _backbone.Dispose();
            throw;
        }
    }

    /// <summary>The recorder's folder.</summary>
    public string DataFolder { get; }

    /// <summary>The feature store's folder.</summary>
    public string StoreFolder { get; }

    /// <summary>Features per frame (the head's input width).</summary>
    public int FeatureSize => _backbone.OutputSize;

    /// <summary>The backbone session.</summary>
    public OnnxModel Backbone => _backbone;

    /// <summary>The store's counts now.</summary>
    public FeatureStoreStats Stats
    {
        get
        {
            lock (_gate) return _store.Stats;
        }
    }

    /// <summary>Scans the data folder once (see <see cref="ClipIngestor.ScanOnce"/>).</summary>
    public IngestReport Scan(CancellationToken cancellationToken = default)
    {
        lock (_gate)
        {
            _store.Evict(); // the age limit applies even when nothing new arrives
            return _ingestor.ScanOnce(cancellationToken);
        }
    }

    /// <inheritdoc/>
    public VehicleDataset Current() => Snapshot(out _);

    /// <summary>The labelled frames now as a dataset (train and a hold-out chosen per frame by hash), with counts.</summary>
    public VehicleDataset Snapshot(out VehicleDataSummary summary)
    {
        List<StoredClip> clips;
        lock (_gate) clips = [.. _store.ReadAll()];
        int f = FeatureSize;
        long labelled = clips.Sum(c => (long)c.Labels.Count(l => l >= 0));
        var features = new float[checked(labelled * f)];
        var labels = new byte[labelled];
        var train = new List<int>();
        var holdout = new List<int>();
        long unlabelled = 0, pseudo = 0, frames = 0;
        int row = 0;
        foreach (var clip in clips)
        {
            ulong clipKey = Convert.ToUInt64(clip.Hash[..16], 16);
            for (int i = 0; i < clip.Count; i++)
            {
                frames++;
                if (clip.Labels[i] < 0) { unlabelled++; continue; }
                if (clip.LabelSources[i] == LabelSource.Teacher) pseudo++;
                clip.Features.AsSpan(i * f, f).CopyTo(features.AsSpan(row * f, f));
                labels[row] = (byte)clip.Labels[i];
                (IsHoldout(clipKey, i) ? holdout : train).Add(row);
                row++;
            }
        }
        summary = new VehicleDataSummary(clips.Count, frames, train.Count, holdout.Count, unlabelled, pseudo);
        var data = new LabeledData(features, labels, f, _classes, "vehicle-feature-store");
        return new VehicleDataset(data, [.. train], holdout.Count > 0 ? [.. holdout] : null);
    }

    /// <summary>A frame's hold-out membership: a hash of (clip, frame) below the fraction, so it never changes as the store grows.</summary>
    private bool IsHoldout(ulong clipKey, int frame)
    {
        if (_holdout <= 0) return false;
        ulong z = clipKey + (ulong)(frame + 1) * 0x9E3779B97F4A7C15UL; // SplitMix64 finaliser
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53)) < _holdout;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        lock (_gate)
        {
            _store.Dispose();
            _teacher?.Dispose();
            _backbone.Dispose();
        }
    }
}
