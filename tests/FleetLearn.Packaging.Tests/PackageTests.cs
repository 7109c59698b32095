using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Xml.Linq;

namespace FleetLearn.Packaging.Tests;

/// <summary>
/// <c>dotnet pack FleetLearn.Packages.slnf</c> makes the library packages (README, XML docs, symbols, source-control
/// metadata) and the fleetlearn tool; the tool installs into a temporary folder from those packages alone and runs.
/// </summary>
public sealed class PackageTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(10);
    private readonly string _dir = Directory.CreateTempSubdirectory("fl-pack-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Pack_LibrariesAndTool_ToolInstallsAndRunsASimulation()
    {
        string repo = RepositoryRoot();
        string packages = Path.Combine(_dir, "packages");
        var pack = await RunAsync("dotnet", ["pack", Path.Combine(repo, "FleetLearn.Packages.slnf"), "-c", "Release", "-o", packages, "-nologo", "-clp:ErrorsOnly"], repo);
        Assert.True(pack.Code == 0, $"dotnet pack exited {pack.Code}: {pack.Output}");

        foreach (var id in new[] { "FleetLearn.Core", "FleetLearn.Compute", "FleetLearn.Transport.Mqtt", "FleetLearn.EdgeAgent", "FleetLearn.Aggregator", "FleetLearn.Storage", "FleetLearn.Onnx", "FleetLearn.Perception", "FleetLearn.Reporting" })
        {
            string nupkg = Path.Combine(packages, $"{id}.0.1.0.nupkg");
            Assert.True(File.Exists(nupkg), $"{id} was not packed: {string.Join(", ", Directory.GetFiles(packages).Select(Path.GetFileName))}");
            Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"{id} has no symbol package");
            using var zip = ZipFile.OpenRead(nupkg);
            var entries = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
            Assert.Contains("README.md", entries);
            Assert.Contains($"lib/net10.0/{id}.dll", entries);
            Assert.Contains($"lib/net10.0/{id}.xml", entries); // XML docs for IntelliSense
            using var nuspec = zip.GetEntry($"{id}.nuspec")!.Open();
            var metadata = XDocument.Load(nuspec).Root!.Elements().Single(e => e.Name.LocalName == "metadata");
            Assert.Equal("README.md", metadata.Elements().Single(e => e.Name.LocalName == "readme").Value);
            // SourceLink's source-control information: the commit the package was built from.
            Assert.Matches("^[0-9a-f]{40}$", metadata.Elements().Single(e => e.Name.LocalName == "repository").Attribute("commit")!.Value);
            if (id == "FleetLearn.Aggregator")
            {
                // The head export comes from FleetLearn.Onnx; Perception would pull ONNX Runtime GPU into every aggregator.
                var dependencies = metadata.Descendants().Where(e => e.Name.LocalName == "dependency").Select(e => e.Attribute("id")!.Value).ToList();
                Assert.Contains("FleetLearn.Onnx", dependencies);
                Assert.DoesNotContain("FleetLearn.Perception", dependencies);
            }
        }
        Assert.False(File.Exists(Path.Combine(packages, "FleetLearn.Simulation.0.1.0.nupkg")), "the simulator ships inside the tool only");

        // The tool from these packages alone (no other feed), into a folder of its own.
        string config = Path.Combine(_dir, "nuget.config");
        File.WriteAllText(config, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration><packageSources><clear /><add key="local" value="{packages}" /></packageSources></configuration>
            """);
        string tools = Path.Combine(_dir, "tools");
        var install = await RunAsync("dotnet", ["tool", "install", "fleetlearn", "--version", "0.1.0", "--tool-path", tools, "--configfile", config], _dir);
        Assert.True(install.Code == 0, $"dotnet tool install exited {install.Code}: {install.Output}");
        string fleetlearn = Path.Combine(tools, OperatingSystem.IsWindows() ? "fleetlearn.exe" : "fleetlearn");

        var version = await RunAsync(fleetlearn, ["--version"], _dir);
        Assert.Equal(0, version.Code);
        Assert.StartsWith("0.1.0", version.Output.Trim(), StringComparison.Ordinal);

        string output = Path.Combine(_dir, "run");
        var simulate = await RunAsync(fleetlearn, ["simulate", "--rounds", "2", "--vehicles", "10", "--local-epochs", "1", "--model", "784-32-10", "--out", output], _dir);
        Assert.True(simulate.Code == 0, $"fleetlearn simulate exited {simulate.Code}: {simulate.Output}");
        Assert.Contains("round    2/2", simulate.Output, StringComparison.Ordinal);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(output, "rounds.csv")).Length); // header + 2 rounds
        // The charts come from ScottPlot through SkiaSharp's native library, which the tool carries.
        Assert.True(new FileInfo(Path.Combine(output, "accuracy.png")).Length > 5_000);
        Assert.Contains("<svg", File.ReadAllText(Path.Combine(output, "report.html")), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Publish_Aggregator_CarriesNoOnnxRuntime()
    {
        // The aggregator exports ONNX with FleetLearn.Onnx's own writer; ONNX Runtime (libonnxruntime_providers_cuda.so
        // alone is 284 MB) and the ResNet18 files come only with FleetLearn.Perception, which it must not reference.
        string repo = RepositoryRoot();
        string output = Path.Combine(_dir, "aggregator");
        var publish = await RunAsync("dotnet", ["publish", Path.Combine(repo, "src", "FleetLearn.Aggregator"), "-c", "Release", "-r", "linux-x64", "--self-contained", "false",
            "-o", output, "-nologo", "-clp:ErrorsOnly"], repo);
        Assert.True(publish.Code == 0, $"dotnet publish exited {publish.Code}: {publish.Output}");

        var files = Directory.GetFiles(output, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(output, f)).ToList();
        Assert.Contains("FleetLearn.Aggregator.dll", files);
        Assert.Contains("FleetLearn.Onnx.dll", files);
        Assert.DoesNotContain(files, f => f.Contains("onnxruntime", StringComparison.OrdinalIgnoreCase) || f.Contains("DnnImageModels", StringComparison.Ordinal)
            || f.StartsWith("FleetLearn.Perception", StringComparison.Ordinal));
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "FleetLearn.sln"))) return dir.FullName;
        throw new InvalidOperationException("FleetLearn.sln not found above the test assembly.");
    }

    private static async Task<(int Code, string Output)> RunAsync(string file, string[] args, string workingDirectory)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        // The test host's MSBuild variables would steer the child dotnet to the test's own build.
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || k.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(name);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(Timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} ran past {Timeout}.");
        }
        output.Append(await stdout).Append(await stderr);
        return (process.ExitCode, output.ToString());
    }
}
