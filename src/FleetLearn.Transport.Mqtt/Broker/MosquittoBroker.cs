using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// Debian's Mosquitto on a loopback port with broker-config/'s production rules — mutual TLS with certificates from
/// broker-config/make-dev-ca.sh (certificate CN = username = vehicle id) and broker-config/acl. Shared by the test
/// projects and `simulate --broker mosquitto-bridged` (MosquittoNetwork). <see cref="SkipReason"/> is set where mosquitto or openssl is missing,
/// except in CI (CI=true), where scripts/install-deps.sh installs both and a missing one is a failure.
/// </summary>
public sealed class MosquittoBroker : IAsyncDisposable
{
    private const string Executable = "/usr/sbin/mosquitto";
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("fleetlearn-mosquitto-");
    private readonly System.Text.StringBuilder _log = new();
    private Process? _process;

    private MosquittoBroker(string? certificates = null) => Certificates = certificates ?? Path.Combine(_dir.FullName, "certs");

    /// <summary>Why the broker cannot run here (tests skip), or null.</summary>
    public string? SkipReason { get; private set; }

    /// <summary>The mosquitto process's id while it runs (null before the start).</summary>
    public int? ProcessId => _process is { HasExited: false } p ? p.Id : null;

    /// <summary>The loopback port it listens on.</summary>
    public int Port { get; private set; }

    /// <summary>Folder of ca.crt, aggregator.crt/.key and one {id}.crt/.key per client id.</summary>
    public string Certificates { get; }

    /// <summary>What mosquitto wrote to stderr (for failure messages).</summary>
    public string Log
    {
        get
        {
            lock (_log) return _log.ToString();
        }
    }

    /// <summary>Creates certificates for <paramref name="clients"/> and starts the broker (or sets <see cref="SkipReason"/>).</summary>
    public static Task<MosquittoBroker> StartAsync(params string[] clients) => StartAsync(null, clients);

    /// <summary>
    /// The same with persistence on: Mosquitto saves sessions, queued and retained messages to its folder every
    /// <paramref name="autosaveSeconds"/> (and on a clean stop), so that <see cref="KillHard"/> and <see cref="RestartAsync"/>
    /// bring back the state of the last autosave; null = no persistence.
    /// </summary>
    public static async Task<MosquittoBroker> StartAsync(int? autosaveSeconds, params string[] clients)
    {
        var broker = new MosquittoBroker { _autosave = autosaveSeconds };
        if (Unavailable() is { } why)
        {
            broker.SkipReason = why;
            return broker;
        }
        string repo = RepositoryRoot();
        await MakeCertificatesAsync(broker.Certificates, clients);
        broker.Port = FreePort();
        // broker-config/mosquitto.conf as shipped, with the test's own listener, paths and persistence: every security
        // setting (TLS, identity, client-id rule, packet limit, ACL) is the shipped file's, so loosening it fails the tests.
        // Mosquitto started as root drops to its own user, which could not read the 0600 keys in a temp folder.
        var conf = Path.Combine(broker._dir.FullName, "mosquitto.conf");
        string? persistence = autosaveSeconds is null ? null : Directory.CreateDirectory(Path.Combine(broker._dir.FullName, "persistence")).FullName;
        File.WriteAllText(conf, ShippedConfiguration(repo, broker.Port, broker.Certificates, persistence, autosaveSeconds));
        await broker.LaunchAsync(conf);
        return broker;
    }

    private int? _autosave;

    /// <summary>
    /// A broker with the shipped configuration on certificates someone else made (<see cref="MosquittoNetwork"/>), its acl
    /// the shipped one plus <paramref name="extraAcl"/>, and <paramref name="extraConfiguration"/> appended (a bridge section).
    /// </summary>
    public static async Task<MosquittoBroker> StartSharedAsync(string certificates, string extraAcl, string extraConfiguration)
    {
        var broker = new MosquittoBroker(certificates);
        string repo = RepositoryRoot();
        broker.Port = FreePort();
        string acl = Path.Combine(broker._dir.FullName, "acl");
        File.WriteAllText(acl, File.ReadAllText(Path.Combine(repo, "broker-config", "acl")) + "\n" + extraAcl);
        var conf = Path.Combine(broker._dir.FullName, "mosquitto.conf");
        File.WriteAllText(conf, ShippedConfiguration(repo, broker.Port, certificates).Replace($"acl_file {Path.Combine(repo, "broker-config", "acl")}", $"acl_file {acl}") + extraConfiguration);
        await broker.LaunchAsync(conf);
        return broker;
    }

    /// <summary>
    /// Mosquitto with the shipped rules (broker-config/mosquitto.conf and acl) but passwords instead of mutual TLS, for a fleet
    /// on one machine too large for certificates in every plan: a loopback listener, no anonymous clients, and a password file
    /// (Mosquitto's own PBKDF2-SHA512 format) of <paramref name="users"/>; the acl is the shipped one plus <paramref name="extraAcl"/>.
    /// The username is the client id, as with certificates (<c>use_username_as_clientid</c>), so the acl's %u rules hold.
    /// </summary>
    public static async Task<MosquittoBroker> StartWithPasswordsAsync(IEnumerable<(string User, string Password)> users, string extraAcl)
    {
        ArgumentNullException.ThrowIfNull(users);
        var broker = new MosquittoBroker();
        string repo = RepositoryRoot();
        broker.Port = FreePort();
        string acl = Path.Combine(broker._dir.FullName, "acl"), passwords = Path.Combine(broker._dir.FullName, "passwords");
        File.WriteAllText(acl, File.ReadAllText(Path.Combine(repo, "broker-config", "acl")) + "\n" + extraAcl);
        await using (var writer = new StreamWriter(passwords))
        {
            foreach (var (user, password) in users) await writer.WriteLineAsync($"{user}:{PasswordHash(password)}");
        }
        string[] tls = ["cafile", "certfile", "keyfile", "crlfile", "require_certificate", "use_identity_as_username", "tls_version"];
        var lines = ShippedConfiguration(repo, broker.Port, broker.Certificates).Split('\n')
            .Where(l => !tls.Contains(l.Split(' ', 2)[0], StringComparer.Ordinal))
            .Select(l => l.StartsWith("acl_file ", StringComparison.Ordinal) ? $"acl_file {acl}" : l);
        var conf = Path.Combine(broker._dir.FullName, "mosquitto.conf");
        File.WriteAllText(conf, string.Join('\n', lines) + $"password_file {passwords}\nset_tcp_nodelay true\n");
        await broker.LaunchAsync(conf);
        return broker;
    }

    /// <summary>A password file entry's hash as mosquitto_passwd writes it: <c>$7$101$salt$hash</c>, PBKDF2-SHA512 over 101 iterations, a 12-byte salt.</summary>
    public static string PasswordHash(string password, byte[]? salt = null)
    {
        salt ??= System.Security.Cryptography.RandomNumberGenerator.GetBytes(12);
        byte[] hash = System.Security.Cryptography.Rfc2898DeriveBytes.Pbkdf2(System.Text.Encoding.UTF8.GetBytes(password), salt, 101, System.Security.Cryptography.HashAlgorithmName.SHA512, 64);
        return $"$7$101${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}";
    }

    /// <summary>Runs broker-config/make-dev-ca.sh into <paramref name="folder"/> for <paramref name="clients"/>.</summary>
    public static Task MakeCertificatesAsync(string folder, IEnumerable<string> clients) =>
        RunAsync("/bin/bash", [Path.Combine(RepositoryRoot(), "broker-config", "make-dev-ca.sh"), folder, .. clients]);

    /// <summary>Why Mosquitto-backed tests cannot run here (null: they can); in CI a missing broker is a failure instead.</summary>
    public static string? Unavailable()
    {
        if (File.Exists(Executable) && File.Exists("/usr/bin/openssl")) return null;
        if (Environment.GetEnvironmentVariable("CI") == "true")
            throw new InvalidOperationException("CI must have mosquitto and openssl (scripts/install-deps.sh installs them).");
        return "mosquitto or openssl is not installed";
    }

    /// <summary>SIGKILL: whatever changed since the last autosave is lost.</summary>
    public void KillHard()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    /// <summary>Starts the broker again on the same port, configuration and persistence folder.</summary>
    public Task RestartAsync()
    {
        KillHard();
        _process?.Dispose();
        return LaunchAsync(Path.Combine(_dir.FullName, "mosquitto.conf"));
    }

    private async Task LaunchAsync(string conf)
    {
        var process = _process = Process.Start(new ProcessStartInfo(Executable, ["-c", conf]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { } line) lock (_log) _log.AppendLine(line);
        };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        await WaitForPortAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (_process is { HasExited: false })
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
        _process?.Dispose();
        _dir.Delete(recursive: true);
    }

    /// <summary>
    /// broker-config/mosquitto.conf rewritten for a test: listener on loopback <paramref name="port"/>, certificates from
    /// <paramref name="certificates"/>, the shipped acl file by full path, persistence only in <paramref name="persistence"/> when given, log to stderr, run as root.
    /// </summary>
    public static string ShippedConfiguration(string repo, int port, string certificates, string? persistence = null, int? autosaveSeconds = null)
    {
        var lines = new List<string> { "user root", "log_dest stderr" };
        foreach (var raw in File.ReadAllLines(Path.Combine(repo, "broker-config", "mosquitto.conf")))
        {
            string line = raw.Trim();
            if (line.Length == 0 || line.StartsWith('#')) continue;
            var parts = line.Split(' ', 2, StringSplitOptions.TrimEntries);
            string key = parts[0], value = parts.Length > 1 ? parts[1] : "";
            lines.Add(key switch
            {
                "persistence" => persistence is null ? "persistence false" : "persistence true",
                "persistence_location" => persistence is null ? "" : $"persistence_location {persistence}/",
                "autosave_interval" => autosaveSeconds is null ? "" : $"autosave_interval {autosaveSeconds}",
                "listener" => $"listener {port} 127.0.0.1",
                "cafile" or "certfile" or "keyfile" or "crlfile" => $"{key} {Path.Combine(certificates, Path.GetFileName(value))}",
                "acl_file" => $"acl_file {Path.Combine(repo, "broker-config", value)}",
                _ => line,
            });
        }
        return string.Join('\n', lines) + "\n";
    }

    /// <summary>The repository root (where FleetLearn.sln is).</summary>
    public static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "FleetLearn.sln"))) return dir.FullName;
        }
        throw new InvalidOperationException("FleetLearn.sln not found above the test assembly.");
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static async Task RunAsync(string file, string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await process.WaitForExitAsync(cts.Token);
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {process.ExitCode}: {await stderr}{await stdout}");
    }

    private async Task WaitForPortAsync()
    {
        // Waits for the broker's listener (the event), not for a fixed time.
        var deadline = DateTime.UtcNow + Timeout;
        while (true)
        {
            if (_process is { HasExited: true })
                throw new InvalidOperationException($"mosquitto exited with {_process.ExitCode} before listening on {Port}: {Log}");
            try
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, Port);
                return;
            }
            catch (SocketException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(50);
            }
        }
    }
}
