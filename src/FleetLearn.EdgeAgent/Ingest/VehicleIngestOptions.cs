using System.ComponentModel.DataAnnotations;
using FleetLearn.Perception.Ingest;

namespace FleetLearn.EdgeAgent.Ingest;

/// <summary>
/// The vehicle's own data (configuration section <c>Ingest</c>): the folder its recorder writes clips to, the backbone
/// that turns frames into features, the feature store and its bounds, labelling, and what training takes from it.
/// </summary>
public sealed class VehicleIngestOptions : IValidatableObject
{
    /// <summary>Configuration section name.</summary>
    public const string Section = "Ingest";

    /// <summary>Where the recorder writes clips (videos, image folders, sidecar labels). Null: no ingest (the agent uses the stand-in data).</summary>
    public string? DataFolder { get; set; }

    /// <summary>The feature store's folder. Null: <c>features/</c> beside Agent:DatabasePath.</summary>
    public string? StoreFolder { get; set; }

    /// <summary><c>resnet18</c> (the pretrained backbone the package brings), <c>generated</c>, or an ONNX file. Default resnet18.</summary>
    [Required] public string Backbone { get; set; } = "resnet18";

    /// <summary>Feature tensor of a user backbone file (default: its only output).</summary>
    public string? BackboneOutput { get; set; }

    /// <summary><c>auto</c> (CUDA when it loads, else CPU), <c>cpu</c> or <c>cuda</c>.</summary>
    [Required] public string Provider { get; set; } = "auto";

    /// <summary>CPU threads ONNX Runtime uses for extraction (the vehicle's thread cap; 0: one per core). Default 1.</summary>
    [Range(0, 1024)] public int Threads { get; set; } = 1;

    /// <summary>Frames per backbone call. Default 8.</summary>
    [Range(1, 1024)] public int Batch { get; set; } = 8;

    /// <summary>Disk quota of the feature store in MiB; the oldest clips are evicted beyond it. Default 1024.</summary>
    [Range(1, 1 << 30)] public long QuotaMiB { get; set; } = 1024;

    /// <summary>Clips older than this are evicted; null: no age limit. Default 30 days.</summary>
    public TimeSpan? MaxAge { get; set; } = TimeSpan.FromDays(30);

    /// <summary>Keep every K-th frame (1: all). Default 1.</summary>
    [Range(1, 100_000)] public int SampleEvery { get; set; } = 1;

    /// <summary>Frames per second kept from videos instead of <see cref="SampleEvery"/>; null: not used.</summary>
    public double? SampleRate { get; set; }

    /// <summary>A clip is read once unchanged across scans this far apart. Default 2 s.</summary>
    public TimeSpan StableAfter { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>How often the data folder is scanned. Default 10 s.</summary>
    public TimeSpan ScanInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Classes of the labels. Default 10.</summary>
    [Range(2, 256)] public int ClassCount { get; set; } = 10;

    /// <summary>Optional teacher ONNX model (input: the features or the frames; output: class scores) for pseudo-labels.</summary>
    public string? Teacher { get; set; }

    /// <summary>Least confidence at which a teacher prediction becomes a pseudo-label. Default 0.9.</summary>
    public double TeacherThreshold { get; set; } = 0.9;

    /// <summary>Fraction of the labelled frames kept back for the vehicle's evaluation reports (chosen per frame by hash, stable as the store grows). Default 0.1.</summary>
    public double HoldoutFraction { get; set; } = 0.1;

    /// <summary>The ffmpeg executable.</summary>
    [Required] public string Ffmpeg { get; set; } = "ffmpeg";

    /// <summary>The feature store folder actually used.</summary>
    public string EffectiveStoreFolder(string databasePath) => StoreFolder ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(databasePath)) ?? ".", "features");

    /// <summary>The ingest settings of <see cref="ClipIngestor"/>.</summary>
    public ClipIngestOptions ToIngestOptions() => new()
    {
        SampleEvery = SampleEvery, SampleRate = SampleRate, StableAfter = StableAfter, ClassCount = ClassCount, TeacherThreshold = TeacherThreshold, FfmpegPath = Ffmpeg,
    };

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (SampleRate is { } r && !(r > 0 && double.IsFinite(r))) yield return new ValidationResult($"Ingest:SampleRate {r} must be a positive number of frames per second.");
        if (SampleRate is not null && SampleEvery > 1) yield return new ValidationResult("Ingest:SampleEvery and Ingest:SampleRate: set one, not both.");
        if (MaxAge is { } a && a <= TimeSpan.Zero) yield return new ValidationResult("Ingest:MaxAge must be positive.");
        if (StableAfter < TimeSpan.Zero) yield return new ValidationResult("Ingest:StableAfter must not be negative.");
        if (ScanInterval <= TimeSpan.Zero) yield return new ValidationResult("Ingest:ScanInterval must be positive.");
        if (!(TeacherThreshold >= 0 && TeacherThreshold <= 1)) yield return new ValidationResult($"Ingest:TeacherThreshold {TeacherThreshold} must be within [0, 1].");
        if (!(HoldoutFraction >= 0 && HoldoutFraction < 1)) yield return new ValidationResult($"Ingest:HoldoutFraction {HoldoutFraction} must be a fraction in [0, 1).");
        if (Provider.Trim().ToLowerInvariant() is not ("auto" or "cpu" or "cuda")) yield return new ValidationResult($"Ingest:Provider '{Provider}' must be auto, cpu or cuda.");
        if (DataFolder is not null && Teacher is not null && !File.Exists(Teacher)) yield return new ValidationResult($"Ingest:Teacher '{Teacher}' does not exist.");
        if (DataFolder is not null && !Backbone.Trim().Equals("resnet18", StringComparison.OrdinalIgnoreCase) && !Backbone.Trim().Equals("generated", StringComparison.OrdinalIgnoreCase) && !File.Exists(Backbone))
            yield return new ValidationResult($"Ingest:Backbone '{Backbone}' is not resnet18, generated or an existing ONNX file.");
    }
}
