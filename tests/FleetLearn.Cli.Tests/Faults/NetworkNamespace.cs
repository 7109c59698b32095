using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace FleetLearn.Cli.Tests.Faults;

/// <summary>
/// A network namespace the test makes for one process, joined to the test's own by a veth pair (a /30: the host end
/// <see cref="HostAddress"/>, the namespace end .2), so that the test can cut that process's link with
/// <c>ip link set … down</c> while both ends keep running. Needs root; <see cref="SkipReason"/> says why there is none.
/// </summary>
internal sealed class NetworkNamespace : IDisposable
{
    private static int _next;
    private readonly string _hostEnd;

    private NetworkNamespace(string name, int subnet, string? skipReason)
    {
        Name = name;
        _hostEnd = "vh-" + name;
        HostAddress = IPAddress.Parse(string.Create(CultureInfo.InvariantCulture, $"10.213.{subnet}.1"));
        SkipReason = skipReason;
    }

    /// <summary>The namespace's name (for <c>ip netns exec</c>).</summary>
    public string Name { get; }

    /// <summary>The test's end of the link: what a process inside reaches the test's services at.</summary>
    public IPAddress HostAddress { get; }

    /// <summary>Why no namespace could be made here, or null.</summary>
    public string? SkipReason { get; }

    /// <summary>Makes the namespace and its link, up; traffic out of the namespace limited to <paramref name="uplinkKbit"/> (tc tbf) when given.</summary>
    public static NetworkNamespace Create(int? uplinkKbit = null)
    {
        int subnet = (Environment.ProcessId + Interlocked.Increment(ref _next)) % 250 + 1;
        string name = string.Create(CultureInfo.InvariantCulture, $"fl{Environment.ProcessId % 100000}x{subnet}");
        if (!OperatingSystem.IsLinux()) return new NetworkNamespace(name, subnet, "network namespaces need Linux");
        if (Environment.UserName != "root") return new NetworkNamespace(name, subnet, $"making a network namespace needs root (running as {Environment.UserName})");
        var ns = new NetworkNamespace(name, subnet, null);
        string inner = "vn-" + name, host = ns._hostEnd;
        string[][] steps =
        [
            ["netns", "add", name],
            ["link", "add", host, "type", "veth", "peer", "name", inner],
            ["link", "set", inner, "netns", name],
            ["addr", "add", $"{ns.HostAddress}/30", "dev", host],
            ["link", "set", host, "up"],
            ["netns", "exec", name, "ip", "addr", "add", $"10.213.{subnet}.2/30", "dev", inner],
            ["netns", "exec", name, "ip", "link", "set", inner, "up"],
            ["netns", "exec", name, "ip", "link", "set", "lo", "up"],
            .. uplinkKbit is { } kbit ? new[] { new[] { "netns", "exec", name, "tc", "qdisc", "add", "dev", inner, "root", "tbf", "rate", $"{kbit}kbit", "burst", "16kbit", "latency", "10s" } } : [],
        ];
        foreach (var step in steps)
        {
            var (code, error) = Ip(step);
            if (code != 0)
            {
                ns.Dispose();
                return new NetworkNamespace(name, subnet, $"ip {string.Join(' ', step)} was refused here ({error.Trim()}): no network namespaces, veth pairs or tc tbf in this environment");
            }
        }
        return ns;
    }

    /// <summary>Cuts the link: packets in both directions are dropped, no connection is told.</summary>
    public void Cut() => Check(Ip("link", "set", _hostEnd, "down"));

    /// <summary>Brings the link back.</summary>
    public void Restore() => Check(Ip("link", "set", _hostEnd, "up"));

    public void Dispose()
    {
        Ip("netns", "del", Name); // takes the veth pair with it
        Ip("link", "del", _hostEnd);
    }

    private static void Check((int Code, string Error) result)
    {
        if (result.Code != 0) throw new InvalidOperationException($"ip failed: {result.Error}");
    }

    private static (int Code, string Error) Ip(params string[] args)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        string error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, error);
    }
}
