using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace FleetLearn.Transport.Mqtt;

/// <summary>Validates an options class with its data annotations and <see cref="IValidatableObject"/>, plus an optional check, naming every failure.</summary>
public sealed class DataAnnotationsValidator<T>(Action<T>? extra = null) : IValidateOptions<T> where T : class
{
    public ValidateOptionsResult Validate(string? name, T options)
    {
        var results = new List<ValidationResult>();
        Validator.TryValidateObject(options, new ValidationContext(options), results, validateAllProperties: true);
        var failures = results.Select(r => $"{typeof(T).Name}: {r.ErrorMessage}").ToList();
        if (failures.Count == 0 && extra is not null)
        {
            try
            {
                extra(options);
            }
            catch (ArgumentException e)
            {
                failures.Add(e.Message);
            }
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
