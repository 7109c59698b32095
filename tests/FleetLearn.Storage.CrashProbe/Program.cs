// Usage: dotnet FleetLearn.Storage.CrashProbe.dll <db-path> <rounds> <vehicles> <then: wait|exit>
// Records rounds 1..rounds for vehicles v0..v{n-1} (σ = 4, q = 1) and prints "recorded k" after round k is durable.
// With "wait" it then blocks on stdin until killed; a test kills it with SIGKILL and reopens the ledger.
using FleetLearn.Core.Privacy;
using FleetLearn.Storage;

if (args.Length != 4 || !int.TryParse(args[1], out int rounds) || !int.TryParse(args[2], out int vehicles))
{
    Console.Error.WriteLine("usage: CrashProbe <db-path> <rounds> <vehicles> <wait|exit>");
    return 2;
}

var options = new PrivacyLedgerOptions(epsilonMax: 1e6, delta: 1e-5);
using var store = LiteDbPrivacyLedgerStore.Open(args[0], options);
long start = store.Vehicles().Select(v => v.Rounds.Max()).DefaultIfEmpty(0).Max();
Console.Out.WriteLine($"opened {store.Verification.Vehicles} {store.Verification.Rounds}");
Console.Out.Flush();
for (long k = start + 1; k <= start + rounds; k++)
{
    for (int v = 0; v < vehicles; v++) store.Record($"v{v}", k, PrivacyCharge.Participation(4.0));
    Console.Out.WriteLine($"recorded {k}");
    Console.Out.Flush();
}
if (args[3] == "wait") Console.In.ReadLine(); // block until killed (stdin stays open)
return 0;
