using System.Diagnostics;
using FleetLearn.Core.Model;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Ingest;
using FleetLearn.Perception.Onnx;
using FleetLearn.Perception.Tests.Onnx;
using Microsoft.Extensions.Time.Testing;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace FleetLearn.Perception.Tests.Ingest;

public sealed class ClipIngestorTests : IDisposable
{
    private static readonly OnnxModelOptions Cpu = new() { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1, MaxBatchSize = 8 };
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-ingest-");
    private readonly string _data, _storeFolder;
    private readonly OnnxModel _backbone = OnnxModel.Load(GeneratedBackbone.Create(), Cpu, "generated");

    public ClipIngestorTests()
    {
        _data = Directory.CreateDirectory(Path.Combine(_dir.FullName, "recorder")).FullName;
        _storeFolder = Path.Combine(_dir.FullName, "store");
    }

    public void Dispose()
    {
        _backbone.Dispose();
        _dir.Delete(true);
    }

    private ClipFeatureStore Store() => ClipFeatureStore.Open(_storeFolder, FeatureExtractor.Identity(_backbone), _backbone.OutputSize, 1 << 30);

    private static byte[] Pixels(int first, int count)
    {
        var raw = new byte[count * 784];
        var test = TestModels.Test;
        for (int i = 0; i < raw.Length; i++) raw[i] = (byte)Math.Round(test.Features[first * 784 + i] * 255);
        return raw;
    }

    private static byte[] Labels(int first, int count) => TestModels.Test.Labels.AsSpan(first, count).ToArray();

    /// <summary>A lossless FFV1 clip of test rows first.. and its sidecar (one row per frame).</summary>
    private static void WriteVideo(string path, int first, int count, bool sidecar = true)
    {
        var start = new ProcessStartInfo("ffmpeg") { RedirectStandardInput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "gray", "-s", "28x28", "-r", "5", "-i", "pipe:0", "-c:v", "ffv1", "-f", "matroska", "-y", path })
            start.ArgumentList.Add(a);
        using (var ffmpeg = Process.Start(start)!)
        {
            var errors = ffmpeg.StandardError.ReadToEndAsync();
            ffmpeg.StandardInput.BaseStream.Write(Pixels(first, count));
            ffmpeg.StandardInput.Close();
            Assert.True(ffmpeg.WaitForExit(30_000));
            Assert.True(ffmpeg.ExitCode == 0, errors.Result);
        }
        if (sidecar) File.WriteAllLines(path + ".labels.csv", ["frame,class", .. Labels(first, count).Select((l, i) => $"{i},{l}")]);
    }

    private static void WriteImages(string folder, int first, int count)
    {
        Directory.CreateDirectory(folder);
        var raw = Pixels(first, count);
        for (int i = 0; i < count; i++)
        {
            using var image = Image.LoadPixelData<L8>(raw.AsSpan(i * 784, 784), 28, 28);
            image.SaveAsPng(Path.Combine(folder, $"{i:D5}.png"));
        }
        File.WriteAllLines(Path.Combine(folder, "labels.csv"), ["frame,class", .. Labels(first, count).Select((l, i) => $"{i},{l}")]);
    }

    private static void Close(float expected, float actual) => Assert.True(Math.Abs(expected - actual) <= 1e-4f * Math.Max(1f, Math.Abs(expected)), $"{actual} is not within 1e-4 of {expected}");

    private float[] Expected(int first, int count) => _backbone.Run(Pixels(first, count).Select(b => b / 255f).ToArray(), count);

    [SkippableFact]
    public void ScanOnce_VideoAndImageFolder_FeaturesOfEachFrameWithSidecarLabels()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        WriteVideo(Path.Combine(_data, "drive-1.mkv"), 0, 6);
        WriteImages(Path.Combine(_data, "dashcam-2"), 6, 4);
        using var store = Store();
        var ingestor = new ClipIngestor(_data, _backbone, store, new ClipIngestOptions { StableAfter = TimeSpan.Zero });
        var report = ingestor.ScanOnce();
        Assert.Equal((2, 10L, 10L, 0), (report.Clips, report.Frames, report.SidecarLabels, report.Failed));
        var video = store.Read(ClipIngestor.ContentHash(Path.Combine(_data, "drive-1.mkv")))!;
        var folder = store.Read(ClipIngestor.ContentHash(Path.Combine(_data, "dashcam-2")))!;
        Assert.Equal(Labels(0, 6).Select(l => (int)l), video.Labels);
        Assert.Equal(Labels(6, 4).Select(l => (int)l), folder.Labels);
        var expected = Expected(0, 10);
        for (int i = 0; i < 6 * _backbone.OutputSize; i++) Close(expected[i], video.Features[i]);
        for (int i = 0; i < 4 * _backbone.OutputSize; i++) Close(expected[6 * _backbone.OutputSize + i], folder.Features[i]);
        Assert.Equal(0, ingestor.ScanOnce().Clips); // nothing new
    }

    [SkippableFact]
    public void ScanOnce_ClipStillBeingWritten_WaitsUntilUnchangedForStableAfter()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        var time = new FakeTimeProvider();
        string full = Path.Combine(_dir.FullName, "full.mkv"), clip = Path.Combine(_data, "drive.mkv");
        WriteVideo(full, 0, 8, sidecar: false);
        var bytes = File.ReadAllBytes(full);
        File.WriteAllBytes(clip, bytes[..(bytes.Length / 2)]); // the recorder has written half of it
        using var store = Store();
        var ingestor = new ClipIngestor(_data, _backbone, store, new ClipIngestOptions { StableAfter = TimeSpan.FromSeconds(2) }, time: time);
        Assert.Equal((0, 1), (ingestor.ScanOnce().Clips, ingestor.ScanOnce().Waiting));
        time.Advance(TimeSpan.FromSeconds(3));
        File.WriteAllBytes(clip, bytes); // it grew since the last look
        File.SetLastWriteTimeUtc(clip, DateTime.UtcNow.AddSeconds(1));
        var r = ingestor.ScanOnce();
        Assert.Equal((0, 1), (r.Clips, r.Waiting));
        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, ingestor.ScanOnce().Clips); // unchanged, but not for 2 s yet
        time.Advance(TimeSpan.FromSeconds(1.5));
        r = ingestor.ScanOnce();
        Assert.Equal((1, 8L), (r.Clips, r.Frames));
        Assert.Equal(8, store.Stats.Frames);
        Assert.Equal(0, store.Stats.Labelled); // no sidecar: kept, never trained on
    }

    [SkippableFact]
    public void ScanOnce_PartNameThenRenamedOnClose_ReadOnlyAfterRename()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        string part = Path.Combine(_data, "drive.mkv.part");
        WriteVideo(part, 0, 4, sidecar: false);
        using var store = Store();
        var ingestor = new ClipIngestor(_data, _backbone, store, new ClipIngestOptions { StableAfter = TimeSpan.Zero });
        Assert.Equal(0, ingestor.ScanOnce().Clips + ingestor.ScanOnce().Waiting);
        File.Move(part, Path.Combine(_data, "drive.mkv"));
        Assert.Equal(1, ingestor.ScanOnce().Clips);
    }

    [SkippableFact]
    public void ScanOnce_SameClipUnderTwoNames_StoredOnce()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        WriteVideo(Path.Combine(_data, "a.mkv"), 0, 4);
        File.Copy(Path.Combine(_data, "a.mkv"), Path.Combine(_data, "b.mkv"));
        using var store = Store();
        var report = new ClipIngestor(_data, _backbone, store, new ClipIngestOptions { StableAfter = TimeSpan.Zero }).ScanOnce();
        Assert.Equal((1, 1), (report.Clips, report.Duplicates));
        Assert.Equal((1, 4L), (store.Stats.Clips, store.Stats.Frames));
    }

    [SkippableFact]
    public void ScanOnce_SampleEveryOther_FramesAndLabelsOfEvenSourceFrames()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        WriteVideo(Path.Combine(_data, "a.mkv"), 0, 7);
        using var store = Store();
        new ClipIngestor(_data, _backbone, store, new ClipIngestOptions { StableAfter = TimeSpan.Zero, SampleEvery = 2 }).ScanOnce();
        var clip = store.ReadAll().Single();
        var labels = Labels(0, 7);
        Assert.Equal(new[] { labels[0], labels[2], labels[4], labels[6] }.Select(l => (int)l), clip.Labels);
        var expected = Expected(0, 7);
        int f = _backbone.OutputSize;
        for (int j = 0; j < 4; j++)
        {
            for (int k = 0; k < f; k++) Close(expected[2 * j * f + k], clip.Features[j * f + k]);
        }
    }

    [SkippableFact]
    public void ScanOnce_Teacher_PseudoLabelsAboveThreshold_FractionAndAgreementReported()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        // A teacher over frames: a 784-64-10 head trained briefly on Fashion-MNIST, exported to ONNX.
        var checkpoint = TestModels.Trained(ModelSpec.Parse("784-64-10"), TestModels.Train, rows: 6000);
        string teacherPath = Path.Combine(_dir.FullName, "teacher.onnx");
        File.WriteAllBytes(teacherPath, TestModels.Export(checkpoint));
        using var teacher = OnnxModel.Load(teacherPath, Cpu with { OutputName = "probabilities" });
        WriteVideo(Path.Combine(_data, "unlabelled.mkv"), 0, 30, sidecar: false);
        WriteVideo(Path.Combine(_data, "labelled.mkv"), 30, 30);
        using var store = Store();
        var report = new ClipIngestor(_data, _backbone, store, new ClipIngestOptions { StableAfter = TimeSpan.Zero, TeacherThreshold = 0.9 }, teacher).ScanOnce();
        Assert.Equal(30, report.TeacherConsidered);
        Assert.InRange(report.TeacherLabels, 1, 29); // some confident, some not
        Assert.Equal(report.TeacherLabels / 30.0, report.TeacherKeptFraction, 6);
        Assert.Equal(30, report.TeacherChecked);
        Assert.InRange(report.TeacherAgreement, 0.5, 1.0);
        var pseudo = store.Read(ClipIngestor.ContentHash(Path.Combine(_data, "unlabelled.mkv")))!;
        var probabilities = TestModels.Logits(checkpoint, Pixels(0, 30).Select(b => b / 255f).ToArray(), 30);
        for (int i = 0; i < 30; i++)
        {
            var z = probabilities.AsSpan(i * 10, 10).ToArray();
            double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
            int best = Array.IndexOf(z, z.Max());
            bool confident = 1 / sum >= 0.9;
            Assert.Equal(confident ? best : -1, pseudo.Labels[i]);
            Assert.Equal(confident ? LabelSource.Teacher : LabelSource.None, pseudo.LabelSources[i]);
        }
    }

    [SkippableFact]
    public void ScanOnce_BadSidecar_ClipSkippedWithReasonOthersIngested()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        WriteVideo(Path.Combine(_data, "good.mkv"), 0, 3);
        WriteVideo(Path.Combine(_data, "bad.mkv"), 3, 3);
        File.WriteAllLines(Path.Combine(_data, "bad.mkv.labels.csv"), ["frame,class", "0,42"]);
        File.WriteAllText(Path.Combine(_data, "broken.mp4"), "not a video");
        var log = new List<string>();
        using var store = Store();
        var report = new ClipIngestor(_data, _backbone, store, new ClipIngestOptions { StableAfter = TimeSpan.Zero }, log: log.Add).ScanOnce();
        Assert.Equal((1, 2), (report.Clips, report.Failed));
        Assert.Contains(log, l => l.Contains("bad.mkv.labels.csv line 2: class '42'", StringComparison.Ordinal));
        Assert.Contains(log, l => l.Contains("broken.mp4", StringComparison.Ordinal) && l.Contains("ffmpeg failed", StringComparison.Ordinal));
    }
}
