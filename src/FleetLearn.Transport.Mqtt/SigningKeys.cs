using System.Security.Cryptography;

namespace FleetLearn.Transport.Mqtt;

/// <summary>The aggregator's ECDSA P-256 plan-signing key on disk (PEM), and the public key vehicles pin.</summary>
public static class SigningKeys
{
    /// <summary>Loads the PKCS#8 PEM private key at <paramref name="path"/>, creating one (mode 0600) when the file does not exist.</summary>
    public static ECDsa LoadOrCreate(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var key = ECDsa.Create();
        if (File.Exists(path))
        {
            key.ImportFromPem(File.ReadAllText(path));
            if (key.KeySize != 256) throw new ArgumentException($"The signing key at '{path}' is not a P-256 key.");
            return key;
        }
        key.GenerateKey(ECCurve.NamedCurves.nistP256);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        // Written whole under a temporary name, then moved into place: two processes racing to create the key end up
        // with one key, and a crash never leaves a half-written key behind.
        string temp = $"{path}.{Guid.NewGuid():N}.tmp";
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var writer = new StreamWriter(temp, options)) writer.Write(key.ExportPkcs8PrivateKeyPem());
        try
        {
            File.Move(temp, path, overwrite: false);
        }
        catch (IOException) when (File.Exists(path))
        {
            File.Delete(temp);
            key.Dispose();
            return LoadOrCreate(path);
        }
        File.WriteAllText(Path.ChangeExtension(path, ".pub.pem"), key.ExportSubjectPublicKeyInfoPem());
        return key;
    }

    /// <summary>Loads the PKCS#8 PEM private key at <paramref name="path"/>; a missing file is an error, never a reason to create one.</summary>
    public static ECDsa Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"The signing key '{Path.GetFullPath(path)}' is missing.", path);
        var key = ECDsa.Create();
        key.ImportFromPem(File.ReadAllText(path));
        if (key.KeySize != 256) throw new ArgumentException($"The signing key at '{path}' is not a P-256 key.");
        return key;
    }

    /// <summary>A key's id: the first 16 hex digits of the SHA-256 of its SubjectPublicKeyInfo (what logs, plans' operators and rotation name).</summary>
    public static string KeyId(ECDsa key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return Convert.ToHexStringLower(SHA256.HashData(key.ExportSubjectPublicKeyInfo()))[..16];
    }

    /// <summary>Parses a pinned public key given as PEM text or as the path of a PEM file.</summary>
    public static ECDsa LoadPublic(string pemOrPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(pemOrPath);
        string pem = pemOrPath.Contains("-----BEGIN", StringComparison.Ordinal) ? pemOrPath : File.ReadAllText(pemOrPath);
        var key = ECDsa.Create();
        key.ImportFromPem(pem);
        if (key.KeySize != 256) throw new ArgumentException("The pinned aggregator key is not a P-256 key.");
        return key;
    }
}
