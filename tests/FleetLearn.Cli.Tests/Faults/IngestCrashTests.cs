using FleetLearn.Cli.Tests.Commands;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Ingest;
using FleetLearn.Perception.Onnx;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>kill -9 of <c>fleetlearn ingest</c> mid-ingest: the store loses at most the clip in progress, is never corrupt, and the next run completes it.</summary>
// Serialized with the other process-spawning tests: under a loaded machine, parallel builds and extractions starved
// these timing-sensitive rounds (a fault step waited past its 60 s window).
[Collection("Console")]
public sealed class IngestCrashTests
{
    [SkippableFact]
    public async Task Ingest_KilledMidIngest_StoreIntactNextRunStoresEachClipOnce()
    {
        Skip.IfNot(VideoFrames.IsFfmpegAvailable(), "ffmpeg is not installed");
        var dir = Directory.CreateTempSubdirectory("fleetlearn-ingest-kill-").FullName;
        try
        {
            VehicleDataEndToEndTests.MakeClips(Path.Combine(dir, "clips"), "--vehicles", "1", "--clips", "6", "--frames", "12");
            string data = Path.Combine(dir, "clips", "vehicle-0"), store = Path.Combine(dir, "store");
            // resnet18 on one thread: several seconds per clip, so the kill lands while a clip is being extracted.
            string[] args = ["ingest", "--data", data, "--store", store, "--backbone", "resnet18", "--onnx-provider", "cpu", "--onnx-threads", "1"];
            using (var first = FleetProcess.Start("ingest#1", dir, new Dictionary<string, string>(), args))
            {
                await first.WaitForLineAsync("ingest: clip-0", TimeSpan.FromSeconds(120)); // one clip stored, the next under way
                first.KillHard();
            }
            int storedBeforeRestart = Directory.GetFiles(store, "*.clip").Length;
            Assert.InRange(storedBeforeRestart, 1, 5);

            using (var second = FleetProcess.Start("ingest#2", dir, new Dictionary<string, string>(), [.. args, "--json"]))
            {
                await second.WaitForExitAsync(TimeSpan.FromSeconds(180));
                Assert.True(second.ExitCode == 0, second.Output);
                Assert.Contains($"\"duplicates\":{storedBeforeRestart}", second.Output, StringComparison.Ordinal);
                Assert.Contains($"\"clips\":{6 - storedBeforeRestart}", second.Output, StringComparison.Ordinal);
            }
            Assert.Empty(Directory.GetFiles(store, "*.tmp"));
            using var backbone = OnnxModel.Load(ResNet18Backbone.Create(), new OnnxModelOptions { ExecutionProvider = ExecutionProviderPreference.Cpu, IntraOpThreads = 1 }, "resnet18");
            using var opened = ClipFeatureStore.Open(store, FeatureExtractor.Identity(backbone), 512, 1L << 30);
            Assert.Equal(0, opened.Repaired);
            var clips = opened.ReadAll().ToList();
            Assert.Equal(6, clips.Count);
            Assert.All(clips, c => Assert.Equal(12, c.Count));
            Assert.All(clips, c => Assert.All(c.Labels, l => Assert.InRange(l, 0, 9)));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
