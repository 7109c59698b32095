using System.Diagnostics;
using System.Runtime.InteropServices;
using FleetLearn.Core.Training;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Perception.Features;

/// <summary>Counts of one extractor's work.</summary>
public sealed record ExtractionStats(long Frames, long CacheHits, long Extracted, TimeSpan BackboneTime)
{
    /// <summary>Frames per second through the backbone (cache hits excluded).</summary>
    public double FramesPerSecond => BackboneTime > TimeSpan.Zero ? Extracted / BackboneTime.TotalSeconds : double.NaN;
}

/// <summary>
/// Turns frames into feature vectors with a frozen ONNX backbone: raw frame tensors, image files or videos, in
/// batches, through an optional <see cref="FeatureCache"/> so that each frame is extracted once.
/// </summary>
public sealed class FeatureExtractor : IDisposable
{
    private readonly FeatureCache? _cache;
    private readonly bool _ownsBackbone;
    private long _frames, _hits, _extracted;
    private TimeSpan _backboneTime;
    private long _lastProgress = Stopwatch.GetTimestamp();

    /// <summary>Wraps a backbone (whose input row is a frame <c>[C, H, W]</c>) and an optional cache.</summary>
    /// <param name="backbone">The backbone session.</param>
    /// <param name="cache">Feature store, or null to extract every time.</param>
    /// <param name="ownsBackbone">Dispose the backbone with the extractor.</param>
    /// <param name="mean">Per-channel mean for image and video frames (see <see cref="FrameFormat"/>).</param>
    /// <param name="std">Per-channel std for image and video frames.</param>
    public FeatureExtractor(OnnxModel backbone, FeatureCache? cache = null, bool ownsBackbone = false, IReadOnlyList<float>? mean = null, IReadOnlyList<float>? std = null)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        Backbone = backbone;
        _cache = cache;
        _ownsBackbone = ownsBackbone;
        if (cache is not null && cache.FeatureSize != backbone.OutputSize)
            throw new ArgumentException($"The feature store holds {cache.FeatureSize} features per frame; the backbone gives {backbone.OutputSize}.", nameof(cache));
        Format = backbone.RowShape.Count == 3 && backbone.RowShape[0] is 1 or 3
            ? FrameFormat.FromRowShape(backbone.RowShape, mean, std)
            : null;
    }

    /// <summary>The backbone.</summary>
    public OnnxModel Backbone { get; }

    /// <summary>How image and video frames are prepared; null when the backbone's input is not an image <c>[1|3, H, W]</c>.</summary>
    public FrameFormat? Format { get; }

    /// <summary>Features per frame.</summary>
    public int FeatureSize => Backbone.OutputSize;

    /// <summary>What has been done so far.</summary>
    public ExtractionStats Stats => new(_frames, _hits, _extracted, _backboneTime);

    /// <summary>Called with <see cref="Stats"/> at most every <see cref="ProgressInterval"/> while frames go through the backbone (a long extraction shows it is moving).</summary>
    public Action<ExtractionStats>? Progress { get; set; }

    /// <summary>Least time between two <see cref="Progress"/> calls (10 s).</summary>
    public TimeSpan ProgressInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The identity of a backbone and its preprocessing, which keys a <see cref="FeatureCache"/>: model hash, tensor
    /// names, row shape and frame normalization.
    /// </summary>
    public static string Identity(OnnxModel backbone, IReadOnlyList<float>? mean = null, IReadOnlyList<float>? std = null)
    {
        ArgumentNullException.ThrowIfNull(backbone);
        return $"{backbone.Sha256};{backbone.InputName};{backbone.OutputName};{string.Join("x", backbone.RowShape)};" +
            $"mean={(mean is null ? "-" : string.Join(",", mean))};std={(std is null ? "-" : string.Join(",", std))}";
    }

    /// <summary>Features of <paramref name="count"/> frames given as backbone input rows (row-major).</summary>
    public float[] ExtractFrames(ReadOnlyMemory<float> frames, int count, ReadOnlySpan<byte> labels = default)
    {
        if (frames.Length != (long)count * Backbone.RowSize)
            throw new ArgumentException($"{count} frames of shape [{string.Join("x", Backbone.RowShape)}] are {(long)count * Backbone.RowSize} floats; got {frames.Length}.", nameof(frames));
        if (!labels.IsEmpty && labels.Length != count) throw new ArgumentException($"Expected {count} labels; got {labels.Length}.", nameof(labels));
        var features = new float[checked(count * FeatureSize)];
        int row = Backbone.RowSize;
        Run(count, i => FrameKey.Of(frames.Span.Slice(i * row, row)), (i, destination) => frames.Span.Slice(i * row, row).CopyTo(destination),
            labels.IsEmpty ? null : labels.ToArray(), features);
        return features;
    }

    /// <summary>
    /// Features of a labelled frame dataset (e.g. Fashion-MNIST, whose 784 pixels are a <c>[1, 28, 28]</c> frame), as a
    /// dataset of the same labels.
    /// </summary>
    /// <param name="frames">The frames, one per row.</param>
    /// <param name="frameShape">Shape <c>[C, H, W]</c> of the dataset's frames when it differs from the backbone's input; they are
    /// then converted (<see cref="FrameResampler"/>: grey → RGB, bilinear resize), e.g. Fashion-MNIST's [1, 28, 28] for ResNet18's [3, 224, 224].</param>
    public LabeledData ExtractDataset(LabeledData frames, IReadOnlyList<int>? frameShape = null)
    {
        ArgumentNullException.ThrowIfNull(frames);
        if (frameShape is not null && !frameShape.SequenceEqual(Backbone.RowShape))
        {
            var resampler = new FrameResampler(frameShape, Backbone.RowShape);
            if (frames.FeatureSize != resampler.SourceSize)
                throw new ArgumentException($"{frames.Name} has rows of {frames.FeatureSize} values, not frames of shape [{string.Join("x", frameShape)}].");
            var converted = new float[checked(frames.Count * FeatureSize)];
            var data = frames.Features;
            int source = resampler.SourceSize;
            Run(frames.Count, i => FrameKey.Of(data.AsSpan(i * source, source)), (i, destination) => resampler.Convert(data.AsSpan(i * source, source), destination),
                frames.Labels, converted);
            return new LabeledData(converted, frames.Labels, FeatureSize, frames.ClassCount, $"{frames.Name}>features");
        }
        if (frames.FeatureSize != Backbone.RowSize)
            throw new ArgumentException($"{frames.Name} has rows of {frames.FeatureSize} values; the backbone '{Backbone.Name}' takes frames of shape [{string.Join("x", Backbone.RowShape)}] = {Backbone.RowSize} values.");
        var features = ExtractFrames(frames.Features, frames.Count, frames.Labels);
        return new LabeledData(features, frames.Labels, FeatureSize, frames.ClassCount, $"{frames.Name}>features");
    }

    /// <summary>Features of image files (keyed in the cache by the file's bytes).</summary>
    public float[] ExtractImages(IReadOnlyList<string> paths, IReadOnlyList<byte>? labels = null)
    {
        ArgumentNullException.ThrowIfNull(paths);
        var format = Format ?? throw new InvalidOperationException($"The backbone's input [{string.Join("x", Backbone.RowShape)}] is not an image [1|3, H, W].");
        if (labels is not null && labels.Count != paths.Count) throw new ArgumentException($"Expected {paths.Count} labels; got {labels.Count}.", nameof(labels));
        var features = new float[checked(paths.Count * FeatureSize)];
        var contents = new byte[paths.Count][];
        for (int i = 0; i < paths.Count; i++)
        {
            var info = new FileInfo(paths[i]);
            if (!info.Exists) throw new FileNotFoundException($"Image '{paths[i]}' does not exist.", paths[i]);
            if (info.Length > ImageFrames.MaxFileBytes) throw new FrameDecodeException($"Image '{paths[i]}' is {info.Length} bytes, over the {ImageFrames.MaxFileBytes >> 20} MiB limit.");
            contents[i] = File.ReadAllBytes(paths[i]);
        }
        Run(paths.Count, i => FrameKey.Of(contents[i]), (i, destination) => ImageFrames.Decode(contents[i], format, destination, paths[i]),
            labels?.ToArray(), features);
        return features;
    }

    /// <summary>Features of a video's frames (decoded by ffmpeg), each with <paramref name="label"/> when given.</summary>
    public float[] ExtractVideo(string path, out int frameCount, int label = -1, VideoOptions? options = null, CancellationToken cancellationToken = default)
    {
        var format = Format ?? throw new InvalidOperationException($"The backbone's input [{string.Join("x", Backbone.RowShape)}] is not an image [1|3, H, W].");
        var frames = new List<float[]>();
        foreach (var frame in VideoFrames.Read(path, format, options, cancellationToken)) frames.Add(frame);
        frameCount = frames.Count;
        var features = new float[checked(frames.Count * FeatureSize)];
        byte[]? labels = label >= 0 ? Enumerable.Repeat((byte)label, frames.Count).ToArray() : null;
        Run(frames.Count, i => FrameKey.Of(frames[i]), (i, destination) => frames[i].CopyTo(destination), labels, features);
        return features;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _cache?.Flush();
        if (_ownsBackbone) Backbone.Dispose();
    }

    private delegate FrameKey KeyOf(int index);

    private delegate void FillFrame(int index, Span<float> destination);

    /// <summary>Looks every frame up in the cache, runs the misses through the backbone in batches, stores them.</summary>
    private void Run(int count, KeyOf keyOf, FillFrame fill, byte[]? labels, Span<float> features)
    {
        int f = FeatureSize, row = Backbone.RowSize, batch = Backbone.BatchSize;
        var batchFrames = new float[batch * row];
        var batchFeatures = new float[batch * f];
        var batchIndex = new int[batch];
        var batchKeys = new FrameKey[batch];
        int pending = 0;
        for (int i = 0; i < count; i++)
        {
            _frames++;
            FrameKey key = default;
            if (_cache is not null)
            {
                key = keyOf(i);
                if (_cache.TryGet(key, features.Slice(i * f, f), out int stored))
                {
                    _hits++;
                    int wanted = labels is null ? -1 : labels[i];
                    if (wanted >= 0 && stored != wanted) _cache.Put(key, features.Slice(i * f, f), wanted); // relabelled
                    continue;
                }
            }
            fill(i, batchFrames.AsSpan(pending * row, row));
            batchIndex[pending] = i;
            batchKeys[pending] = key;
            if (++pending == batch)
            {
                Flush(pending, batchFrames, batchFeatures, batchIndex, batchKeys, labels, features);
                pending = 0;
            }
        }
        if (pending > 0) Flush(pending, batchFrames, batchFeatures, batchIndex, batchKeys, labels, features);
        _cache?.Flush();
    }

    private void Flush(int n, float[] frames, float[] output, int[] index, FrameKey[] keys, byte[]? labels, Span<float> features)
    {
        int f = FeatureSize;
        long start = Stopwatch.GetTimestamp();
        Backbone.Run(frames.AsSpan(0, n * Backbone.RowSize), n, output);
        _backboneTime += Stopwatch.GetElapsedTime(start);
        _extracted += n;
        if (Progress is { } report && Stopwatch.GetElapsedTime(_lastProgress) >= ProgressInterval)
        {
            _lastProgress = Stopwatch.GetTimestamp();
            report(Stats);
        }
        for (int j = 0; j < n; j++)
        {
            var row = output.AsSpan(j * f, f);
            row.CopyTo(features.Slice(index[j] * f, f));
            _cache?.Put(keys[j], row, labels is null ? -1 : labels[index[j]]);
        }
    }
}
