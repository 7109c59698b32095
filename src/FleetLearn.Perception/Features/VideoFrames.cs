using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;

namespace FleetLearn.Perception.Features;

/// <summary>How to sample a video.</summary>
public sealed record VideoOptions
{
    /// <summary>Frames per second to sample (null: every frame).</summary>
    public double? FramesPerSecond { get; init; }

    /// <summary>Keep every this many-th decoded frame (frames 0, K, 2K, …; 1: all). Exclusive with <see cref="FramesPerSecond"/>.</summary>
    public int SampleEvery { get; init; } = 1;

    /// <summary>Stop after this many frames.</summary>
    public int MaxFrames { get; init; } = 100_000;

    /// <summary>The ffmpeg executable (a name looked up on PATH, or a path).</summary>
    public string FfmpegPath { get; init; } = "ffmpeg";
}

/// <summary>
/// Decodes video files into frames through an ffmpeg child process: ffmpeg scales (and samples) the video and writes
/// raw grey or RGB frames to its standard output, which is read one frame at a time, so memory stays one frame.
/// </summary>
/// <remarks>FleetLearn does not link a video decoder: ffmpeg is the decoder every vehicle image already has, it
/// reads every container and codec, and a crash in it cannot take the agent down.</remarks>
public static class VideoFrames
{
    /// <summary>True when <paramref name="ffmpegPath"/> starts (answers <c>-version</c>).</summary>
    public static bool IsFfmpegAvailable(string ffmpegPath = "ffmpeg")
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(ffmpegPath, "-version")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            });
            if (process is null) return false;
            process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0;
        }
        catch (Win32Exception)
        {
            return false;
        }
    }

    /// <summary>
    /// Yields the video's frames as backbone input rows. Each yielded array is new. Throws
    /// <see cref="FrameDecodeException"/> when ffmpeg is missing or cannot decode the file.
    /// </summary>
    public static IEnumerable<float[]> Read(string path, FrameFormat format, VideoOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(format);
        options ??= new VideoOptions();
        if (!File.Exists(path)) throw new FileNotFoundException($"Video '{path}' does not exist.", path);
        if (options.FramesPerSecond is { } fps && !(fps > 0 && double.IsFinite(fps)))
            throw new ArgumentException($"Frames per second must be positive; got {fps}.", nameof(options));
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxFrames, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SampleEvery, 1);
        if (options.SampleEvery > 1 && options.FramesPerSecond is not null)
            throw new ArgumentException("Sample either every K-th frame or at a frame rate, not both.", nameof(options));
        return ReadIterator(path, format, options, cancellationToken);
    }

    private static IEnumerable<float[]> ReadIterator(string path, FrameFormat format, VideoOptions options, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(options.FfmpegPath)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            UseShellExecute = false,
        };
        string filter = string.Create(CultureInfo.InvariantCulture, $"scale={format.Width}:{format.Height}");
        if (options.FramesPerSecond is { } fps) filter = string.Create(CultureInfo.InvariantCulture, $"fps={fps},{filter}");
        bool select = options.SampleEvery > 1;
        if (select) filter = string.Create(CultureInfo.InvariantCulture, $"select=not(mod(n\\,{options.SampleEvery})),{filter}");
        foreach (var arg in new[]
        {
            "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, "-vf", filter, "-fps_mode", "passthrough", "-frames:v",
            options.MaxFrames.ToString(CultureInfo.InvariantCulture), "-f", "rawvideo", "-pix_fmt", format.Channels == 1 ? "gray" : "rgb24", "pipe:1",
        })
        {
            start.ArgumentList.Add(arg);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new FrameDecodeException($"ffmpeg ('{options.FfmpegPath}') did not start.");
        }
        catch (Win32Exception e)
        {
            throw new FrameDecodeException(
                $"Video '{path}' needs ffmpeg, which is not installed (could not start '{options.FfmpegPath}': {e.Message}). " +
                "Install it with 'apt-get install -y ffmpeg', or extract the frames as PNG/JPEG files and pass those.", e);
        }
        var errors = new Queue<string>();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (errors)
            {
                errors.Enqueue(e.Data);
                if (errors.Count > 20) errors.Dequeue();
            }
        };
        process.BeginErrorReadLine();
        using var registration = cancellationToken.Register(() => Kill(process));
        try
        {
            var stream = process.StandardOutput.BaseStream;
            var pixels = new byte[format.Height * format.Width * format.Channels];
            while (true)
            {
                int read = stream.ReadAtLeast(pixels, pixels.Length, throwOnEndOfStream: false);
                cancellationToken.ThrowIfCancellationRequested();
                if (read == 0) break;
                if (read < pixels.Length) throw new FrameDecodeException($"Video '{path}': ffmpeg ended mid-frame ({read} of {pixels.Length} bytes).");
                var frame = new float[format.Size];
                format.FromInterleaved(pixels, frame);
                yield return frame;
            }
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                string detail;
                lock (errors) detail = string.Join(" | ", errors);
                throw new FrameDecodeException($"Video '{path}': ffmpeg failed (exit {process.ExitCode}): {(detail.Length == 0 ? "no message" : detail)}");
            }
        }
        finally
        {
            Kill(process);
            process.Dispose();
        }
    }

    private static void Kill(Process process)
    {
        try
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }
}
