using System.Diagnostics;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Onnx;
using FleetLearn.Perception.Tests.Onnx;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace FleetLearn.Perception.Tests.Features;

public sealed class FeatureExtractionTests : IDisposable
{
    private static readonly OnnxModelOptions Cpu = new() { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1, MaxBatchSize = 64 };
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-features-");

    public void Dispose() => _dir.Delete(true);

    private static float[] Frames(int count) => TestModels.Test.Features.AsSpan(0, count * 784).ToArray();

    [Fact]
    public void ExtractFrames_SecondPassWithCache_AllHitsSameFeatures()
    {
        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        var frames = Frames(150);
        var labels = TestModels.Test.Labels.AsSpan(0, 150).ToArray();
        float[] first;
        using (var cache = FeatureCache.Open(_dir.FullName, FeatureExtractor.Identity(backbone), backbone.OutputSize))
        using (var extractor = new FeatureExtractor(backbone, cache))
        {
            first = extractor.ExtractFrames(frames, 150, labels);
            Assert.Equal(150, extractor.Stats.Extracted);
            Assert.Equal(0, extractor.Stats.CacheHits);
            Assert.Equal(150, cache.Count);
        }
        using (var cache = FeatureCache.Open(_dir.FullName, FeatureExtractor.Identity(backbone), backbone.OutputSize))
        using (var extractor = new FeatureExtractor(backbone, cache))
        {
            Assert.Equal(150, cache.Count);
            Assert.Equal(0, cache.DroppedBytes);
            var second = extractor.ExtractFrames(frames, 150);
            Assert.Equal(first, second);
            Assert.Equal(0, extractor.Stats.Extracted);
            Assert.Equal(150, extractor.Stats.CacheHits);
            var row = new float[backbone.OutputSize];
            Assert.True(cache.TryGet(FrameKey.Of(frames.AsSpan(784 * 7, 784)), row, out int label));
            Assert.Equal(labels[7], label);
        }
    }

    [Fact]
    public void ExtractFrames_Progress_ReportedWhileFramesRunAndNotForCacheHits()
    {
        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        var frames = Frames(150);
        using var cache = FeatureCache.Open(_dir.FullName, FeatureExtractor.Identity(backbone), backbone.OutputSize);
        var reports = new List<ExtractionStats>();
        using (var extractor = new FeatureExtractor(backbone, cache) { Progress = reports.Add, ProgressInterval = TimeSpan.Zero })
            extractor.ExtractFrames(frames, 150);
        Assert.Equal(3, reports.Count); // batches of 64, 64 and 22 frames (MaxBatchSize 64)
        Assert.Equal([64L, 128, 150], reports.Select(r => r.Extracted));
        reports.Clear();
        using (var extractor = new FeatureExtractor(backbone, cache) { Progress = reports.Add, ProgressInterval = TimeSpan.Zero })
            extractor.ExtractFrames(frames, 150);
        Assert.Empty(reports); // all from the feature store: nothing ran
        using (var extractor = new FeatureExtractor(backbone) { Progress = reports.Add })
            extractor.ExtractFrames(frames, 150);
        Assert.Empty(reports); // a quick run stays quiet (every 10 s by default)
    }

    [Fact]
    public void Open_TornLastRecord_CutAndOthersKept()
    {
        string path;
        using (var cache = FeatureCache.Open(_dir.FullName, "backbone-x", 4))
        {
            for (int i = 0; i < 5; i++) cache.Put(new FrameKey((ulong)i, 0, 0, 0), [i, i, i, i], i);
            path = cache.Path;
        }
        // A crash mid-append: half of a sixth record.
        using (var file = new FileStream(path, FileMode.Append)) file.Write(new byte[30]);
        long torn = new FileInfo(path).Length;
        using (var cache = FeatureCache.Open(_dir.FullName, "backbone-x", 4))
        {
            Assert.Equal(5, cache.Count);
            Assert.Equal(30, cache.DroppedBytes);
            var row = new float[4];
            Assert.True(cache.TryGet(new FrameKey(4, 0, 0, 0), row, out int label));
            Assert.Equal([4f, 4f, 4f, 4f], row);
            Assert.Equal(4, label);
        }
        Assert.Equal(torn - 30, new FileInfo(path).Length);
    }

    [Fact]
    public void Open_FlippedByteInRecord_RecordAndTailDropped()
    {
        string path;
        using (var cache = FeatureCache.Open(_dir.FullName, "backbone-y", 2))
        {
            for (int i = 0; i < 3; i++) cache.Put(new FrameKey((ulong)i, 1, 2, 3), [i, -i], -1);
            path = cache.Path;
        }
        var bytes = File.ReadAllBytes(path);
        int recordSize = 32 + 4 + 8 + 8;
        bytes[44 + recordSize + 40] ^= 0xFF; // inside the second record's features
        File.WriteAllBytes(path, bytes);
        var log = new List<string>();
        using var reopened = FeatureCache.Open(_dir.FullName, "backbone-y", 2, log.Add);
        Assert.Equal(1, reopened.Count);
        Assert.Contains(log, l => l.Contains("torn or corrupt tail", StringComparison.Ordinal));
    }

    [Fact]
    public void ExtractImages_PngOfAFrame_SameFeaturesAsTheRawFrame_JpegClose()
    {
        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        using var extractor = new FeatureExtractor(backbone);
        var frame = Frames(1);
        var pixels = frame.Select(v => (byte)Math.Round(v * 255)).ToArray();
        using (var image = Image.LoadPixelData<L8>(pixels, 28, 28))
        {
            image.SaveAsPng(Path.Combine(_dir.FullName, "frame.png"));
            image.SaveAsJpeg(Path.Combine(_dir.FullName, "frame.jpg"));
        }
        // A larger RGB image exercises conversion to grey and resizing.
        using (var big = new Image<Rgb24>(56, 56, new Rgb24(200, 200, 200))) big.SaveAsPng(Path.Combine(_dir.FullName, "big.png"));

        var raw = extractor.ExtractFrames(frame, 1);
        var fromImages = extractor.ExtractImages([Path.Combine(_dir.FullName, "frame.png"), Path.Combine(_dir.FullName, "frame.jpg"), Path.Combine(_dir.FullName, "big.png")]);
        int f = backbone.OutputSize;
        for (int i = 0; i < f; i++) Assert.Equal(raw[i], fromImages[i], 5);
        double jpegError = 0, norm = 0;
        for (int i = 0; i < f; i++)
        {
            jpegError += Math.Pow(raw[i] - fromImages[f + i], 2);
            norm += raw[i] * raw[i];
        }
        Assert.True(Math.Sqrt(jpegError / norm) < 0.1, $"JPEG features differ by {Math.Sqrt(jpegError / norm):P1}");
        Assert.All(fromImages.AsSpan(2 * f, f).ToArray(), v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void ExtractImages_NotAnImage_ClearError()
    {
        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        using var extractor = new FeatureExtractor(backbone);
        var path = Path.Combine(_dir.FullName, "notes.png");
        File.WriteAllText(path, "this is not a picture");
        var e = Assert.Throws<FrameDecodeException>(() => extractor.ExtractImages([path]));
        Assert.Contains("notes.png' is not an image", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ExtractVideo_FfmpegMissing_SaysHowToInstall()
    {
        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        using var extractor = new FeatureExtractor(backbone);
        var video = Path.Combine(_dir.FullName, "clip.mkv");
        File.WriteAllBytes(video, [1, 2, 3]);
        var e = Assert.Throws<FrameDecodeException>(() => extractor.ExtractVideo(video, out _, options: new VideoOptions { FfmpegPath = Path.Combine(_dir.FullName, "no-ffmpeg") }));
        Assert.Contains("needs ffmpeg, which is not installed", e.Message, StringComparison.Ordinal);
        Assert.Contains("apt-get install -y ffmpeg", e.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void ExtractVideo_LosslessClipOfFrames_FeaturesOfEachFrame()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        var frames = Frames(6);
        var raw = new byte[frames.Length];
        for (int i = 0; i < raw.Length; i++) raw[i] = (byte)Math.Round(frames[i] * 255);
        var video = Path.Combine(_dir.FullName, "clip.mkv");
        // FFV1 in Matroska is lossless, so the decoded frames are the pixels written.
        var start = new ProcessStartInfo("ffmpeg") { RedirectStandardInput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "28x28", "-r", "5", "-i", "pipe:0", "-c:v", "ffv1", "-y", video })
            start.ArgumentList.Add(a);
        using (var ffmpeg = Process.Start(start)!)
        {
            var errors = ffmpeg.StandardError.ReadToEndAsync();
            ffmpeg.StandardInput.BaseStream.Write(raw);
            ffmpeg.StandardInput.Close();
            Assert.True(ffmpeg.WaitForExit(30_000));
            Assert.True(ffmpeg.ExitCode == 0, errors.Result);
        }

        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        using var cache = FeatureCache.Open(_dir.FullName, FeatureExtractor.Identity(backbone), backbone.OutputSize);
        using var extractor = new FeatureExtractor(backbone, cache);
        var features = extractor.ExtractVideo(video, out int count, label: 3);
        Assert.Equal(6, count);
        var expected = extractor.ExtractFrames(raw.Select(b => b * (1f / 255f)).ToArray(), 6);
        for (int i = 0; i < features.Length; i++) Assert.Equal(expected[i], features[i], 4);
        Assert.Equal(6, extractor.Stats.CacheHits); // the second pass found every decoded frame
        Assert.True(cache.TryGet(FrameKey.Of(raw.Select(b => b * (1f / 255f)).ToArray().AsSpan(0, 784)), new float[backbone.OutputSize], out int label));
        Assert.Equal(3, label);
    }

    [SkippableFact]
    public void ExtractVideo_NotAVideo_FfmpegErrorReported()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        using var backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu);
        using var extractor = new FeatureExtractor(backbone);
        var video = Path.Combine(_dir.FullName, "broken.mp4");
        File.WriteAllText(video, "not a video");
        var e = Assert.Throws<FrameDecodeException>(() => extractor.ExtractVideo(video, out _));
        Assert.Contains("ffmpeg failed", e.Message, StringComparison.Ordinal);
    }
}
