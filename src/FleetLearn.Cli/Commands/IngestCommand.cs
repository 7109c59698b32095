using System.CommandLine;
using System.Globalization;
using FleetLearn.Perception.Features;
using FleetLearn.Perception.Ingest;

namespace FleetLearn.Cli.Commands;

/// <summary>
/// <c>fleetlearn ingest</c>: what the agent's ingest service does, once (or watching): the clips in a recorder's folder →
/// backbone → the vehicle's feature store, with the same store format, bounds and crash safety.
/// </summary>
internal static class IngestCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "The recorder's folder (videos, image folders, sidecar labels).", Required = true };
        var store = new Option<string>("--store") { Description = "The feature store's folder.", Required = true };
        var backbone = new BackboneCli("--backbone", "'resnet18', 'generated' or an ONNX file.", "resnet18");
        var sampleEvery = new Option<int>("--sample-every") { Description = "Keep every K-th frame.", DefaultValueFactory = _ => 1 };
        var sampleRate = new Option<double?>("--sample-rate") { Description = "Frames per second kept from videos (instead of --sample-every)." };
        var quota = new Option<long>("--quota-mb") { Description = "Disk quota of the store in MiB (oldest clips evicted beyond it).", DefaultValueFactory = _ => 1024 };
        var maxAge = new Option<double?>("--max-age-days") { Description = "Age limit of a clip in days (default: none)." };
        var stable = new Option<double>("--stable-after") { Description = "Seconds a clip must stay unchanged before it is read (0: read at once).", DefaultValueFactory = _ => 0 };
        var teacher = new Option<string?>("--teacher") { Description = "Teacher ONNX model for pseudo-labels of unlabelled frames." };
        var threshold = new Option<double>("--teacher-threshold") { Description = "Least teacher confidence kept as a pseudo-label.", DefaultValueFactory = _ => 0.9 };
        var watch = new Option<double?>("--watch") { Description = "Keep scanning every this many seconds until Ctrl-C." };
        var json = new Option<bool>("--json") { Description = "One JSON line per scan on stdout." };
        var command = new Command("ingest", "Ingest a recorder's clips into a vehicle feature store (as the agent's ingest service does), once or watching.")
        {
            data, store, sampleEvery, sampleRate, quota, maxAge, stable, teacher, threshold, watch, json,
        };
        foreach (var o in backbone.All) command.Options.Add(o);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var stderr = parse.InvocationConfiguration.Error;
            var options = new ClipIngestOptions
            {
                SampleEvery = parse.GetValue(sampleEvery), SampleRate = parse.GetValue(sampleRate),
                StableAfter = TimeSpan.FromSeconds(parse.GetValue(stable)), TeacherThreshold = parse.GetValue(threshold),
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"ingest: {e.Message} (--sample-every, --sample-rate, --stable-after, --teacher-threshold)", e);
            }
            if (parse.GetValue(quota) < 1) throw new ArgumentException($"--quota-mb {parse.GetValue(quota)}: at least 1.");
            if (parse.GetValue(maxAge) is { } days && !(days > 0)) throw new ArgumentException($"--max-age-days {days}: positive.");
            using var model = backbone.Open(parse, stderr.WriteLine);
            using var teacherModel = parse.GetValue(teacher) is { } t ? Perception.Onnx.OnnxModel.Load(t, new Perception.Onnx.OnnxModelOptions { ExecutionProvider = Perception.Onnx.ExecutionProviderPreference.Cpu, IntraOpThreads = 1 }) : null;
            using var featureStore = ClipFeatureStore.Open(parse.GetValue(store)!, FeatureExtractor.Identity(model), model.OutputSize, parse.GetValue(quota) << 20,
                parse.GetValue(maxAge) is { } d ? TimeSpan.FromDays(d) : null, log: stderr.WriteLine);
            var ingestor = new ClipIngestor(parse.GetValue(data)!, model, featureStore, options, teacherModel, log: stderr.WriteLine);
            void Report(IngestReport r)
            {
                var s = featureStore.Stats;
                stdout.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"ingest: {r.Clips} clips, {r.Frames} frames ({r.SidecarLabels} sidecar labels, {r.TeacherLabels} teacher labels of {r.TeacherConsidered} asked), {r.Duplicates} duplicates, {r.Waiting} waiting, {r.Failed} failed; store: {s.Clips} clips, {s.Frames} frames, {s.Labelled} labelled, {s.Bytes:N0} bytes, {featureStore.Evicted} evicted"));
                if (parse.GetValue(json))
                {
                    CliJson.Write(stdout, new
                    {
                        clips = r.Clips, frames = r.Frames, sidecar_labels = r.SidecarLabels, teacher_labels = r.TeacherLabels, teacher_considered = r.TeacherConsidered,
                        teacher_kept_fraction = SimulateCommand.Finite(r.TeacherKeptFraction), teacher_agreement = SimulateCommand.Finite(r.TeacherAgreement),
                        duplicates = r.Duplicates, waiting = r.Waiting, failed = r.Failed,
                        store_clips = s.Clips, store_frames = s.Frames, store_labelled = s.Labelled, store_bytes = s.Bytes, evicted = featureStore.Evicted, repaired = featureStore.Repaired,
                    });
                }
            }
            if (parse.GetValue(watch) is { } seconds)
            {
                if (!(seconds > 0)) throw new ArgumentException($"--watch {seconds}: a positive number of seconds.");
                try
                {
                    await ingestor.WatchAsync(TimeSpan.FromSeconds(seconds), Report, cancellationToken);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                }
                return 0;
            }
            Report(ingestor.ScanOnce(cancellationToken));
            return 0;
        });
        return command;
    }
}
