using Xunit.Abstractions;
using Xunit.Sdk;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// On a test class: its tests need a Citus cluster. Where Citus is not installed, every <see cref="EngineFactAttribute"/>
/// and <see cref="EngineTheoryAttribute"/> test of the class is reported as skipped with the reason, never passed.
/// A base class's tests, inherited by one class per engine, run on PostgreSQL in one and are skipped or run on
/// Citus in the other.
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class NeedsCitusAttribute : Attribute;

/// <summary>A [Fact] that is skipped, with the reason, in a <see cref="NeedsCitusAttribute"/> class when Citus is missing.</summary>
[XunitTestCaseDiscoverer("TodoScale.Tests.Infrastructure.EngineFactDiscoverer", "TodoScale.Tests")]
public sealed class EngineFactAttribute : FactAttribute
{
    /// <summary>Why the test is about PostgreSQL alone: set, it is not a test of the Citus class at all.</summary>
    public string? PostgresOnly { get; set; }
}

/// <summary>A [Theory] that is skipped, with the reason, in a <see cref="NeedsCitusAttribute"/> class when Citus is missing.</summary>
[XunitTestCaseDiscoverer("TodoScale.Tests.Infrastructure.EngineTheoryDiscoverer", "TodoScale.Tests")]
public sealed class EngineTheoryAttribute : TheoryAttribute
{
    /// <summary>Why the test is about PostgreSQL alone: set, it is not a test of the Citus class at all.</summary>
    public string? PostgresOnly { get; set; }
}

internal static class EngineSkip
{
    public static bool NotForThisEngine(ITestMethod method, IAttributeInfo attribute) =>
        method.TestClass.Class.GetCustomAttributes(typeof(NeedsCitusAttribute)).Any()
        && attribute.GetNamedArgument<string?>("PostgresOnly") is { Length: > 0 };

    public static string? Reason(ITestMethod method) =>
        method.TestClass.Class.GetCustomAttributes(typeof(NeedsCitusAttribute)).Any() ? CitusCluster.MissingReason
        : method.TestClass.Class.GetCustomAttributes(typeof(NeedsContainerEngineAttribute)).FirstOrDefault() is { } container
            ? container.GetNamedArgument<bool>(nameof(NeedsContainerEngineAttribute.Citus)) ? ContainerEngine.CitusMissingReason : ContainerEngine.MissingReason
        : null;

    public static IXunitTestCase Skipped(IMessageSink sink, ITestFrameworkDiscoveryOptions options, ITestMethod method, string reason) =>
        new XunitSkippedDataRowTestCase(sink, options.MethodDisplayOrDefault(), options.MethodDisplayOptionsOrDefault(), method, reason);
}

public sealed class EngineFactDiscoverer(IMessageSink sink) : FactDiscoverer(sink)
{
    public override IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions options, ITestMethod method, IAttributeInfo attribute) =>
        EngineSkip.NotForThisEngine(method, attribute) ? []
        : EngineSkip.Reason(method) is { } reason ? [EngineSkip.Skipped(DiagnosticMessageSink, options, method, reason)]
        : base.Discover(options, method, attribute);
}

public sealed class EngineTheoryDiscoverer(IMessageSink sink) : TheoryDiscoverer(sink)
{
    public override IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions options, ITestMethod method, IAttributeInfo attribute) =>
        EngineSkip.NotForThisEngine(method, attribute) ? []
        : EngineSkip.Reason(method) is { } reason ? [EngineSkip.Skipped(DiagnosticMessageSink, options, method, reason)]
        : base.Discover(options, method, attribute);
}
