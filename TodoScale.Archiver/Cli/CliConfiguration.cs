using Microsoft.Extensions.Configuration;
using TodoScale.Data;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// Configuration for the one-shot verbs, read the way the worker reads it (appsettings, user secrets in
/// Development, environment variables), so `ConnectionStrings__todos` works from the AppHost and from a shell.
/// </summary>
internal static class CliConfiguration
{
    public static IConfiguration Load()
    {
        var environment = Environment.GetEnvironmentVariable("DOTNET_ENVIRONMENT")
            ?? Environment.GetEnvironmentVariable("ASPNETCORE_ENVIRONMENT")
            ?? "Production";

        var builder = new ConfigurationBuilder()
            .SetBasePath(AppContext.BaseDirectory)
            .AddJsonFile("appsettings.json", optional: true)
            .AddJsonFile($"appsettings.{environment}.json", optional: true);
        if (environment == "Development")
        {
            builder.AddUserSecrets(typeof(CliConfiguration).Assembly, optional: true);
        }

        return builder.AddEnvironmentVariables().Build();
    }

    /// <summary>A section bound to its options class and validated; a bad value is a usage error naming the setting.</summary>
    public static T BindOptions<T>(this IConfiguration configuration, string section, Func<T, IReadOnlyList<string>> errors, Action<T>? overrides = null)
        where T : new()
    {
        var options = new T();
        try
        {
            configuration.GetSection(section).Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            throw new CliException($"bad {section} setting: {ex.InnerException?.Message ?? ex.Message}");
        }

        overrides?.Invoke(options);
        return errors(options) is { Count: > 0 } problems ? throw new CliException(string.Join(" ", problems)) : options;
    }

    /// <summary>The primary's connection string, or a clear error when it is not configured.</summary>
    public static string RequirePrimaryConnectionString(this IConfiguration configuration) =>
        configuration.GetConnectionString(ConnectionNames.Todos) is { Length: > 0 } value
            ? value
            : throw new CliException(
                $"No connection string '{ConnectionNames.Todos}'. Set ConnectionStrings__{ConnectionNames.Todos} " +
                "(e.g. \"Host=127.0.0.1;Port=5432;Username=postgres;Password=...;Database=todos\").");
}

/// <summary>An operator error with a readable message: the verb prints it and exits non-zero.</summary>
public sealed class CliException(string message, int exitCode = ExitCodes.UsageError) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

public static class ExitCodes
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int UsageError = 2;
}
