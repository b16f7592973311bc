using Aspire.Hosting;
using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>One started AppHost shared by every test in the collection (a start costs about 10 s).</summary>
public sealed class AppHostFixture : IAsyncLifetime
{
    public DistributedApplication App { get; private set; } = null!;

    public string DataRoot { get; } = TestApp.NewDataRoot();

    public async Task InitializeAsync() => App = await TestApp.StartAsync(DataRoot);

    public async Task DisposeAsync()
    {
        if (App is not null)
        {
            await App.DisposeAsync();
        }

        Directory.Delete(DataRoot, recursive: true);
    }
}

[CollectionDefinition(Name)]
public sealed class AppHostCollection : ICollectionFixture<AppHostFixture>
{
    public const string Name = "apphost";
}
