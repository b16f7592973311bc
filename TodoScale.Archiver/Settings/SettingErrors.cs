using System.ComponentModel.DataAnnotations;

namespace TodoScale.Archiver.Settings;

/// <summary>Every problem with an options object, as sentences naming the setting ("Archive:BatchSize: ..."); empty when valid.</summary>
public static class SettingErrors
{
    public static IReadOnlyList<string> Of(object options, string section)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        return results.Select(r => r.ErrorMessage!.StartsWith(section + ":", StringComparison.Ordinal)
            ? r.ErrorMessage
            : $"{section}:{r.MemberNames.FirstOrDefault()}: {r.ErrorMessage}").ToList();
    }
}
