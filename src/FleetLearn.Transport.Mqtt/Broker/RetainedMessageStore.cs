using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using MQTTnet;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace FleetLearn.Transport.Mqtt.Broker;

/// <summary>
/// The embedded broker's retained messages on disk, so that a restarted broker still serves the retained round plan and
/// model chunks (MQTTnet.Server keeps them in memory only). One file per topic, named by the SHA-256 of the topic: a
/// change rewrites one file (written to a temporary file, fsynced, renamed over the old one), a clear deletes it, so a
/// crash at any point leaves either the old or the new message, never a torn one. Each file ends with the SHA-256 of
/// its content; a file that fails it (or does not parse) is skipped on load and reported, never fatal.
/// </summary>
/// <remarks>
/// File layout (little-endian, <see cref="BinaryWriter"/> strings are length-prefixed UTF-8):
/// <code>
/// "FLRM" | version (1) | QoS | payload format indicator | message expiry interval (u32, 0 = none)
/// topic | has content type, content type | has response topic, response topic | correlation data (i32 length, -1 = none)
/// user properties (i32 count; name, value length, value bytes) | payload (i32 length, bytes) | SHA-256 of all of the above
/// </code>
/// </remarks>
public sealed class RetainedMessageStore
{
    /// <summary>File name extension of a stored message.</summary>
    public const string Extension = ".retained";

    private const byte FormatVersion = 1;
    private static ReadOnlySpan<byte> Magic => "FLRM"u8;
    private readonly object _gate = new();

    /// <summary>Uses (and creates) the folder <paramref name="folder"/>.</summary>
    public RetainedMessageStore(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        Folder = Path.GetFullPath(folder);
        Directory.CreateDirectory(Folder);
    }

    /// <summary>The folder holding one file per retained topic.</summary>
    public string Folder { get; }

    /// <summary>
    /// Every stored message, plus the files that could not be read (name and reason). Leftover temporary files of an
    /// interrupted write are deleted: the rename never happened, so the previous version is still in place.
    /// </summary>
    public (List<MqttApplicationMessage> Messages, List<string> Skipped) Load()
    {
        var messages = new List<MqttApplicationMessage>();
        var skipped = new List<string>();
        lock (_gate)
        {
            foreach (var temp in Directory.EnumerateFiles(Folder, "*" + Extension + ".tmp")) File.Delete(temp);
            foreach (var file in Directory.EnumerateFiles(Folder, "*" + Extension).Order(StringComparer.Ordinal))
            {
                try
                {
                    var message = Decode(File.ReadAllBytes(file));
                    if (Path.GetFileName(file) != FileName(message.Topic)) throw new InvalidDataException($"holds topic '{message.Topic}', which belongs in another file");
                    messages.Add(message);
                }
                catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException or DecoderFallbackException or ArgumentException)
                {
                    skipped.Add($"{Path.GetFileName(file)}: {e.Message}");
                }
            }
        }
        return (messages, skipped);
    }

    /// <summary>Stores <paramref name="message"/> (replacing the topic's previous one) durably before returning.</summary>
    public void Save(MqttApplicationMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var bytes = Encode(message);
        string path = Path.Combine(Folder, FileName(message.Topic));
        string temp = path + ".tmp";
        lock (_gate)
        {
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1))
            {
                stream.Write(bytes);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, path, overwrite: true);
        }
    }

    /// <summary>Removes the topic's message (a retained message cleared with an empty payload).</summary>
    public void Delete(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        lock (_gate) File.Delete(Path.Combine(Folder, FileName(topic)));
    }

    /// <summary>Removes every stored message.</summary>
    public void Clear()
    {
        lock (_gate)
        {
            foreach (var file in Directory.EnumerateFiles(Folder, "*" + Extension)) File.Delete(file);
        }
    }

    /// <summary>The file name of <paramref name="topic"/>: a hash, so any topic is a safe, fixed-length name.</summary>
    public static string FileName(string topic) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(topic))) + Extension;

    internal static byte[] Encode(MqttApplicationMessage message)
    {
        using var buffer = new MemoryStream();
        using (var w = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(Magic);
            w.Write(FormatVersion);
            w.Write((byte)message.QualityOfServiceLevel);
            w.Write((byte)message.PayloadFormatIndicator);
            w.Write(message.MessageExpiryInterval);
            w.Write(message.Topic);
            WriteOptional(w, message.ContentType);
            WriteOptional(w, message.ResponseTopic);
            WriteBytes(w, message.CorrelationData);
            var properties = message.UserProperties ?? [];
            w.Write(properties.Count);
            foreach (var p in properties)
            {
                w.Write(p.Name);
                WriteBytes(w, p.ValueBuffer.ToArray());
            }
            WriteBytes(w, message.Payload.ToArray());
        }
        var content = buffer.ToArray();
        return [.. content, .. SHA256.HashData(content)];
    }

    internal static MqttApplicationMessage Decode(byte[] bytes)
    {
        if (bytes.Length < Magic.Length + 8 + SHA256.HashSizeInBytes) throw new InvalidDataException("too short to be a retained message");
        var content = bytes.AsSpan(0, bytes.Length - SHA256.HashSizeInBytes);
        if (!SHA256.HashData(content).AsSpan().SequenceEqual(bytes.AsSpan(content.Length))) throw new InvalidDataException("SHA-256 mismatch (torn or altered file)");
        if (!content[..Magic.Length].SequenceEqual(Magic)) throw new InvalidDataException("not a retained message file");
        using var r = new BinaryReader(new MemoryStream(bytes, 0, content.Length, writable: false), Encoding.UTF8);
        r.ReadBytes(Magic.Length);
        byte version = r.ReadByte();
        if (version != FormatVersion) throw new InvalidDataException($"format version {version} is not supported");
        var qos = (MqttQualityOfServiceLevel)r.ReadByte();
        var format = (MqttPayloadFormatIndicator)r.ReadByte();
        uint expiry = r.ReadUInt32();
        string topic = r.ReadString();
        string? contentType = ReadOptional(r);
        string? responseTopic = ReadOptional(r);
        byte[]? correlation = ReadBytes(r, content.Length);
        int count = r.ReadInt32();
        if (count < 0 || count > content.Length) throw new InvalidDataException($"{count} user properties");
        List<MqttUserProperty>? properties = count == 0 ? null : new List<MqttUserProperty>(count);
        for (int i = 0; i < count; i++)
        {
            string name = r.ReadString();
            properties!.Add(new MqttUserProperty(name, (ReadBytes(r, content.Length) ?? []).AsMemory()));
        }
        byte[] payload = ReadBytes(r, content.Length) ?? [];
        if (r.BaseStream.Position != content.Length) throw new InvalidDataException("trailing bytes");
        if (string.IsNullOrEmpty(topic) || payload.Length == 0) throw new InvalidDataException("no topic or an empty payload");
        return new MqttApplicationMessage
        {
            Topic = topic,
            Payload = new ReadOnlySequence<byte>(payload),
            QualityOfServiceLevel = qos,
            PayloadFormatIndicator = format,
            MessageExpiryInterval = expiry,
            ContentType = contentType,
            ResponseTopic = responseTopic,
            CorrelationData = correlation,
            UserProperties = properties,
            Retain = true,
        };
    }

    private static void WriteOptional(BinaryWriter w, string? value)
    {
        w.Write(value is not null);
        if (value is not null) w.Write(value);
    }

    private static string? ReadOptional(BinaryReader r) => r.ReadBoolean() ? r.ReadString() : null;

    private static void WriteBytes(BinaryWriter w, byte[]? value)
    {
        w.Write(value?.Length ?? -1);
        if (value is not null) w.Write(value);
    }

    private static byte[]? ReadBytes(BinaryReader r, int limit)
    {
        int n = r.ReadInt32();
        if (n == -1) return null;
        if (n < 0 || n > limit) throw new InvalidDataException($"a field of {n} bytes in a {limit}-byte file");
        var value = r.ReadBytes(n);
        if (value.Length != n) throw new EndOfStreamException("truncated field");
        return value;
    }
}
