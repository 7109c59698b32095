namespace FleetLearn.Core.SecureAggregation;

/// <summary>Who masks with whom and who holds whose secret shares in one SecAgg round (vehicles are cohort indices).</summary>
/// <remarks>
/// On the seed ring and the complete graph holding is symmetric: v holds u's shares exactly when u holds v's, and both are
/// neighbours. With self-chosen holders (<see cref="SelfChosenGraph"/>) it is not: u's holders are the k vehicles u drew,
/// its neighbours are those plus every vehicle that drew u, so <see cref="HeldBy"/> differs from <see cref="HoldersOf"/>.
/// </remarks>
public interface IShareGraph
{
    /// <summary>Number of vehicles in the cohort.</summary>
    int Size { get; }

    /// <summary>True for the complete graph (every vehicle masks with and holds shares of every other).</summary>
    bool IsComplete { get; }

    /// <summary>True when u and v mask with each other (u ≠ v).</summary>
    bool AreNeighbors(int u, int v);

    /// <summary>N(u), ascending: the vehicles u masks with.</summary>
    int[] NeighborsOf(int u);

    /// <summary>H(u), ascending, u included: the vehicles holding shares of u's secrets.</summary>
    int[] HoldersOf(int u);

    /// <summary>True when v holds shares of u's secrets (v ∈ H(u)).</summary>
    bool IsHolder(int u, int v);

    /// <summary>{u : v ∈ H(u)}, ascending, v included: the vehicles whose shares v holds.</summary>
    int[] HeldBy(int v);

    /// <summary>N(u) ∪ {u}, ascending: the advertisements u's key directory carries.</summary>
    int[] DirectoryOf(int u);
}
