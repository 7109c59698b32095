using System.Globalization;
using System.Text;
using System.Text.Json;

using FleetLearn.Core.Rounds;

namespace FleetLearn.Transport.Mqtt;

/// <summary>
/// A vehicle's score of a global model on its hold-out frames, sent on <c>vehicles/{id}/up/eval</c> as one small JSON object
/// (the agent's format): <c>{"vehicle":"car-0","model_version":3,"count":600,"accuracy":0.81,"noised":false}</c>.
/// Laplace-noised accuracies may fall outside [0, 1]; un-noised ones may not.
/// </summary>
public sealed record EvaluationReport(string Vehicle, long ModelVersion, int Count, double Accuracy, bool Noised)
{
    /// <summary>Longest report accepted.</summary>
    public const int MaxBytes = 1024;

    /// <summary>Serializes the report as the agent sends it.</summary>
    public byte[] Encode()
    {
        VehicleId.Validate(Vehicle);
        return Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture,
            $"{{\"vehicle\":\"{Vehicle}\",\"model_version\":{ModelVersion},\"count\":{Count},\"accuracy\":{Accuracy:R},\"noised\":{(Noised ? "true" : "false")}}}"));
    }

    /// <summary>
    /// Parses a report; <see cref="WireFormatException"/> when it is over <see cref="MaxBytes"/>, not one flat JSON object with
    /// exactly these five fields, has an invalid vehicle id, a negative version or count, a non-finite accuracy, an
    /// un-noised accuracy outside [0, 1], or names another vehicle than <paramref name="expectedVehicle"/>.
    /// </summary>
    public static EvaluationReport Decode(ReadOnlySpan<byte> bytes, string? expectedVehicle = null)
    {
        if (bytes.Length > MaxBytes) throw new WireFormatException($"Evaluation report of {bytes.Length} bytes exceeds {MaxBytes}.", RejectReasons.Oversized);
        string? vehicle = null;
        long? version = null;
        int? count = null;
        double? accuracy = null;
        bool? noised = null;
        try
        {
            var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = 2 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) throw new WireFormatException("Evaluation report is not a JSON object.");
            while (reader.Read() && reader.TokenType != JsonTokenType.EndObject)
            {
                if (reader.TokenType != JsonTokenType.PropertyName) throw new WireFormatException("Evaluation report is malformed.");
                string name = reader.GetString()!;
                if (!reader.Read()) throw new WireFormatException("Evaluation report truncated.", RejectReasons.Truncated);
                switch (name)
                {
                    case "vehicle" when vehicle is null && reader.TokenType == JsonTokenType.String:
                        vehicle = reader.GetString();
                        break;
                    case "model_version" when version is null && reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out long v):
                        version = v;
                        break;
                    case "count" when count is null && reader.TokenType == JsonTokenType.Number && reader.TryGetInt32(out int c):
                        count = c;
                        break;
                    case "accuracy" when accuracy is null && reader.TokenType == JsonTokenType.Number && reader.TryGetDouble(out double a):
                        accuracy = a;
                        break;
                    case "noised" when noised is null && reader.TokenType is JsonTokenType.True or JsonTokenType.False:
                        noised = reader.GetBoolean();
                        break;
                    default:
                        throw new WireFormatException($"Evaluation report has an unexpected, repeated or mistyped field '{Truncate(name)}'.");
                }
            }
            if (reader.TokenType != JsonTokenType.EndObject) throw new WireFormatException("Evaluation report truncated.", RejectReasons.Truncated);
            if (reader.Read()) throw new WireFormatException("Evaluation report has trailing content.");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            // Utf8JsonReader.GetString throws InvalidOperationException on invalid UTF-8 inside a string (found by fuzzing).
            throw new WireFormatException($"Evaluation report is not valid JSON: {e.Message}", e);
        }
        if (vehicle is null || version is null || count is null || accuracy is null || noised is null)
            throw new WireFormatException("Evaluation report lacks one of vehicle, model_version, count, accuracy, noised.");
        if (!VehicleId.IsValid(vehicle)) throw new WireFormatException("Evaluation report names an invalid vehicle id.");
        if (expectedVehicle is not null && vehicle != expectedVehicle)
            throw new WireFormatException($"Evaluation report on {expectedVehicle}'s topic names {vehicle}.", RejectReasons.NotInCohort);
        if (version < 0 || count < 0) throw new WireFormatException("Evaluation report has a negative model version or count.");
        if (!double.IsFinite(accuracy.Value)) throw new WireFormatException("Evaluation report accuracy is not finite.", RejectReasons.NonFinite);
        if (!noised.Value && accuracy is < 0 or > 1) throw new WireFormatException($"Un-noised accuracy {accuracy.Value.ToString(CultureInfo.InvariantCulture)} is outside [0, 1].");
        return new EvaluationReport(vehicle, version.Value, count.Value, accuracy.Value, noised.Value);
    }

    private static string Truncate(string s) => s.Length <= 32 ? s : s[..32] + "…";
}
