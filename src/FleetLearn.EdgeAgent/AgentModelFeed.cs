using FleetLearn.Transport.Mqtt;

namespace FleetLearn.EdgeAgent;

/// <summary>
/// Which global models the agent receives: every one the aggregator publishes (<c>model/#</c>), or, with
/// <see cref="EdgeAgentOptions.ModelsWhenSelected"/>, only the version of a round that selected it — subscribed when it joins
/// (the broker hands over the retained chunks at once) and unsubscribed at the next plan.
/// </summary>
internal sealed class AgentModelFeed(MqttConnection mqtt, bool whenSelected)
{
    private string? _current;

    /// <summary>The model subscription to make at start: all models, or none until a plan selects the vehicle.</summary>
    public IEnumerable<string> AtStart() => whenSelected ? [] : [mqtt.Topics.ModelAll];

    /// <summary>A plan arrived: with <paramref name="selected"/>, its model version is subscribed (and any earlier one dropped); without, nothing is kept.</summary>
    public async Task PlanAsync(long version, bool selected, CancellationToken cancellationToken)
    {
        if (!whenSelected) return;
        string? wanted = selected ? mqtt.Topics.ModelChunks(version) : null;
        if (wanted == _current) return;
        if (_current is not null) await mqtt.UnsubscribeAsync(_current, cancellationToken).ConfigureAwait(false);
        _current = wanted;
        if (wanted is not null) await mqtt.SubscribeAsync(wanted, cancellationToken).ConfigureAwait(false);
    }
}
