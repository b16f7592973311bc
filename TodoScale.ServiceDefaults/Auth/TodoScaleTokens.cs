using System.ComponentModel.DataAnnotations;
using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace TodoScale.ServiceDefaults.Auth;

/// <summary>The bearer tokens' settings (configuration section "Auth"), shared by the API and the `token` verb.</summary>
public sealed class AuthOptions : IValidatableObject
{
    public const string SectionName = "Auth";

    /// <summary>The HMAC-SHA256 signing key, base64 or hex, at least 32 bytes. The AppHost generates one per data root.</summary>
    public string? SigningKey { get; set; }

    public string Issuer { get; set; } = "todoscale";

    public string Audience { get; set; } = "todoscale-api";

    /// <summary>The signing key must make a key (validated with the other settings at start: ValidateDataAnnotations).</summary>
    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        string? problem = null;
        try
        {
            TodoScaleTokens.SigningKey(this);
        }
        catch (InvalidOperationException)
        {
            problem = "Auth:SigningKey must be set to at least 32 bytes as hex or base64 (the AppHost passes one)";
        }

        if (problem is not null)
        {
            yield return new ValidationResult(problem, [nameof(SigningKey)]);
        }
    }
}

/// <summary>
/// TodoScale's bearer tokens: HS256 JWTs whose `sub` is the user's uuid; `scope` "admin" grants the operator
/// endpoints. The API validates them with <see cref="ValidationParameters"/>; the operators' `token` verb makes
/// development tokens with <see cref="Create"/>.
/// </summary>
public static class TodoScaleTokens
{
    public const string SubjectClaim = "sub";
    public const string ScopeClaim = "scope";
    public const string AdminScope = "admin";

    public static string Create(AuthOptions options, Guid userId, bool admin, DateTimeOffset now, TimeSpan lifetime)
    {
        if (userId == Guid.Empty)
        {
            throw new ArgumentException("The empty uuid is not a user.", nameof(userId));
        }

        var claims = new Dictionary<string, object> { [SubjectClaim] = userId.ToString("D") };
        if (admin)
        {
            claims[ScopeClaim] = AdminScope;
        }

        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = options.Issuer,
            Audience = options.Audience,
            Claims = claims,
            IssuedAt = now.UtcDateTime,
            NotBefore = now.UtcDateTime,
            Expires = now.Add(lifetime).UtcDateTime,
            SigningCredentials = new SigningCredentials(SigningKey(options), SecurityAlgorithms.HmacSha256),
        });
    }

    public static TokenValidationParameters ValidationParameters(AuthOptions options) => new()
    {
        ValidIssuer = options.Issuer,
        ValidAudience = options.Audience,
        IssuerSigningKey = SigningKey(options),
        ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
        NameClaimType = SubjectClaim,
        ClockSkew = TimeSpan.FromSeconds(30),
    };

    /// <summary>The signed-in user's id: the `sub` claim, which must be a uuid; null otherwise.</summary>
    public static Guid? UserId(this ClaimsPrincipal user) =>
        Guid.TryParse(user.FindFirst(SubjectClaim)?.Value, out var id) && id != Guid.Empty ? id : null;

    public static bool IsAdmin(this ClaimsPrincipal user) =>
        user.FindAll(ScopeClaim).SelectMany(c => c.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Contains(AdminScope);

    /// <summary>The key from its configured text, or a readable error naming the setting.</summary>
    public static SymmetricSecurityKey SigningKey(AuthOptions options)
    {
        var text = options.SigningKey?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            throw new InvalidOperationException("No signing key: set Auth:SigningKey (Auth__SigningKey), at least 32 bytes as base64 or hex.");
        }

        var bytes = TryHex(text) ?? TryBase64(text)
            ?? throw new InvalidOperationException("Auth:SigningKey is neither hex nor base64.");
        return bytes.Length >= 32
            ? new SymmetricSecurityKey(bytes)
            : throw new InvalidOperationException($"Auth:SigningKey has {bytes.Length} bytes; HS256 needs at least 32.");
    }

    private static byte[]? TryHex(string text)
    {
        try
        {
            return text.Length % 2 == 0 && text.All(Uri.IsHexDigit) ? Convert.FromHexString(text) : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static byte[]? TryBase64(string text)
    {
        var buffer = new byte[text.Length];
        return Convert.TryFromBase64String(text, buffer, out var written) ? buffer[..written] : null;
    }
}
