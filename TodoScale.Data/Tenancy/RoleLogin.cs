using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace TodoScale.Data.Tenancy;

/// <summary>
/// Lets one of TodoScale's roles log in itself, with a password: the login a connection pooler's clients use (a
/// pooler cannot pass a role to switch to). The password is sent as its SCRAM-SHA-256 verifier, computed here as
/// libpq's PQencryptPasswordConn (psql's \password) does, so the password never appears in a statement the server
/// could log.
/// </summary>
public static class RoleLogin
{
    /// <summary>The roles that may be given a login: the API's (row-level security applies to it).</summary>
    public static readonly IReadOnlySet<string> Roles = new HashSet<string>(StringComparer.Ordinal) { "todoscale_app" };

    private const int Iterations = 4096;

    public static async Task AllowAsync(NpgsqlConnection connection, string role, string password, CancellationToken cancellationToken = default)
    {
        if (!Roles.Contains(role))
        {
            throw new ArgumentException($"{role} is not a role TodoScale gives a login", nameof(role));
        }

        ArgumentException.ThrowIfNullOrEmpty(password);
        var verifier = ScramVerifier(password, RandomNumberGenerator.GetBytes(16), Iterations);
        await using var command = new NpgsqlCommand($"ALTER ROLE {role} LOGIN PASSWORD '{verifier}'", connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// <c>SCRAM-SHA-256$iterations:salt$StoredKey:ServerKey</c> (RFC 5802, RFC 7677), the form pg_authid keeps. The
    /// password is taken as UTF-8 without SASLprep, which leaves ASCII passwords (the AppHost's are hex) unchanged.
    /// </summary>
    public static string ScramVerifier(string password, byte[] salt, int iterations)
    {
        var salted = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, iterations, HashAlgorithmName.SHA256, 32);
        var clientKey = HMACSHA256.HashData(salted, "Client Key"u8);
        var storedKey = SHA256.HashData(clientKey);
        var serverKey = HMACSHA256.HashData(salted, "Server Key"u8);
        return $"SCRAM-SHA-256${iterations}:{Convert.ToBase64String(salt)}${Convert.ToBase64String(storedKey)}:{Convert.ToBase64String(serverKey)}";
    }
}
