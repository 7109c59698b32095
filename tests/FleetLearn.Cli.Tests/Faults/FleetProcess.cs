using System.Diagnostics;
using System.Globalization;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// One real <c>fleetlearn</c> OS process (the CLI built next to this test assembly, run with <c>dotnet fleetlearn.dll</c>),
/// its stdout and stderr captured line by line so that a test can wait for a log line instead of sleeping, and killed
/// with SIGKILL (the whole process tree) when the test wants a crash or when it ends.
/// </summary>
internal sealed class FleetProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<(Func<string, bool> Match, int From, TaskCompletionSource<string> Found)> _waiters = [];
    private bool _ended;

    private FleetProcess(string name, Process process)
    {
        Name = name;
        _process = process;
    }

    /// <summary>Name in the logs (e.g. <c>car-0#2</c> for the second run of car-0).</summary>
    public string Name { get; }

    /// <summary>OS process id.</summary>
    public int Id => _process.Id;

    /// <summary>True once the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Exit code (after exit).</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Lines captured so far; a position to wait from with <see cref="WaitForLineAsync(string, int, TimeSpan)"/>.</summary>
    public int LineCount
    {
        get
        {
            lock (_lines) return _lines.Count;
        }
    }

    /// <summary>Every captured line, stderr marked with "!", each prefixed with the time the test read it.</summary>
    public string Output
    {
        get
        {
            lock (_lines) return string.Join('\n', _lines);
        }
    }

    /// <summary>The CLI next to this test assembly (FleetLearn.Cli.Tests references FleetLearn.Cli, which copies it here).</summary>
    public static string CliPath
    {
        get
        {
            string path = Path.Combine(AppContext.BaseDirectory, "fleetlearn.dll");
            if (!File.Exists(path)) throw new InvalidOperationException($"fleetlearn.dll is not next to the tests ({path}): build FleetLearn.sln first.");
            return path;
        }
    }

    /// <summary>Starts <c>dotnet fleetlearn.dll {args}</c> in <paramref name="workingDirectory"/> with extra environment variables.</summary>
    public static FleetProcess Start(string name, string workingDirectory, IReadOnlyDictionary<string, string> environment, IEnumerable<string> args, string? networkNamespace = null)
    {
        Directory.CreateDirectory(workingDirectory);
        // In a network namespace: `ip netns exec` execs the host in place, so the process id is still the CLI's.
        var psi = new ProcessStartInfo(networkNamespace is null ? DotnetHost() : "ip")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        if (networkNamespace is not null) foreach (var a in new[] { "netns", "exec", networkNamespace, DotnetHost() }) psi.ArgumentList.Add(a);
        psi.ArgumentList.Add(CliPath);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (key, value) in environment) psi.Environment[key] = value;
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var child = new FleetProcess(name, process);
        int open = 2;
        DataReceivedEventHandler Reader(string mark) => (_, e) =>
        {
            if (e.Data is not null) child.Add(mark + e.Data);
            else if (Interlocked.Decrement(ref open) == 0) child.End();
        };
        process.OutputDataReceived += Reader("");
        process.ErrorDataReceived += Reader("! ");
        if (!process.Start()) throw new InvalidOperationException($"could not start {name}");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Completes with the first line from position <paramref name="from"/> on that contains <paramref name="text"/>; fails when the process ends first or after <paramref name="timeout"/>.</summary>
    public Task<string> WaitForLineAsync(string text, int from, TimeSpan timeout) => WaitForLineAsync(l => l.Contains(text, StringComparison.Ordinal), $"'{text}'", from, timeout);

    /// <summary>Like <see cref="WaitForLineAsync(string, int, TimeSpan)"/> from the first line.</summary>
    public Task<string> WaitForLineAsync(string text, TimeSpan timeout) => WaitForLineAsync(text, 0, timeout);

    /// <summary>Completes with the first line from <paramref name="from"/> on that <paramref name="match"/> accepts.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match, string what, int from, TimeSpan timeout)
    {
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            for (int i = from; i < _lines.Count; i++)
            {
                if (match(_lines[i])) return _lines[i];
            }
            if (_ended) throw new InvalidOperationException($"{Name} ended (exit {ExitCodeText()}) without a line {what}.\n{Tail()}");
            _waiters.Add((match, from, found));
        }
        try
        {
            return await found.Task.WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{Name}: no line {what} within {timeout.TotalSeconds:F0} s.\n{Tail()}");
        }
        finally
        {
            lock (_lines) _waiters.RemoveAll(w => w.Found == found);
        }
    }

    /// <summary>True when a line from <paramref name="from"/> on contains <paramref name="text"/>.</summary>
    public bool HasLine(string text, int from = 0)
    {
        lock (_lines) return _lines.Skip(from).Any(l => l.Contains(text, StringComparison.Ordinal));
    }

    /// <summary>Waits for the process to exit by itself and returns its exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:F0} s.\n{Tail()}");
        }
        return _process.ExitCode;
    }

    /// <summary>SIGKILL to the process and its children: no finally block, no Dispose, no flush runs. Returns once it is gone.</summary>
    public void KillHard()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
        }
        catch (InvalidOperationException)
        {
            // already exited
        }
        _process.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited) KillHard();
        _process.Dispose();
    }

    private void Add(string line)
    {
        lock (_lines)
        {
            int index = _lines.Count;
            _lines.Add(DateTime.Now.ToString("HH:mm:ss.fff", CultureInfo.InvariantCulture) + " " + line);
            foreach (var w in _waiters)
            {
                if (index >= w.From && w.Match(_lines[index])) w.Found.TrySetResult(_lines[index]);
            }
        }
    }

    private void End()
    {
        lock (_lines)
        {
            _ended = true;
            foreach (var w in _waiters) w.Found.TrySetException(new InvalidOperationException($"{Name} ended (exit {ExitCodeText()}) while a line was awaited.\n{Tail()}"));
        }
    }

    // Never waits: End runs on the stream reader's callback, which Process.WaitForExit itself waits for.
    private string ExitCodeText() => _process.HasExited ? _process.ExitCode.ToString(CultureInfo.InvariantCulture) : "not yet reaped";

    private string Tail()
    {
        lock (_lines) return $"--- last lines of {Name} ---\n" + string.Join('\n', _lines.TakeLast(40));
    }

    /// <summary>The dotnet host running these tests (DOTNET_HOST_PATH under <c>dotnet test</c>), else the one on PATH.</summary>
    private static string DotnetHost()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host)) return host;
        string? self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        return "dotnet";
    }
}
