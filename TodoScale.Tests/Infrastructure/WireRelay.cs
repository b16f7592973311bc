using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// A TCP relay in front of a PostgreSQL server that counts the server's ReadyForQuery messages: the server sends one
/// per Sync (extended protocol) or simple query, so the count is how many round trips a client waited on. Connections
/// through it use neither TLS nor GSS encryption, so the server's byte stream is plain protocol messages (a type
/// byte, a 4-byte length) from its first byte.
/// </summary>
public sealed class WireRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly string _host;
    private readonly int _port;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _pumps = [];
    private readonly Task _accepting;
    private int _readyForQuery;

    private WireRelay(string host, int port)
    {
        _host = host;
        _port = port;
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>A relay to the server that <paramref name="connectionString"/> names.</summary>
    public static WireRelay To(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return new WireRelay(builder.Host!, builder.Port);
    }

    /// <summary>ReadyForQuery messages the server has sent through the relay so far, over all connections.</summary>
    public int ReadyForQuery => Volatile.Read(ref _readyForQuery);

    /// <summary><paramref name="connectionString"/> pointed at the relay, unencrypted, unpooled.</summary>
    public string Through(string connectionString) => new NpgsqlConnectionStringBuilder(connectionString)
    {
        Host = "127.0.0.1",
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port,
        SslMode = SslMode.Disable,
        GssEncryptionMode = GssEncryptionMode.Disable,
        Pooling = false,
    }.ConnectionString;

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                var server = new TcpClient();
                await server.ConnectAsync(_host, _port, _stop.Token);
                lock (_pumps)
                {
                    _pumps.Add(PumpAsync(client.GetStream(), server.GetStream(), count: false, client, server));
                    _pumps.Add(PumpAsync(server.GetStream(), client.GetStream(), count: true, client, server));
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
    }

    private async Task PumpAsync(Stream from, Stream to, bool count, TcpClient client, TcpClient server)
    {
        var buffer = new byte[64 * 1024];
        var header = new byte[5];
        var inHeader = 0;
        long bodyLeft = 0;
        try
        {
            int read;
            while ((read = await from.ReadAsync(buffer, _stop.Token)) > 0)
            {
                if (count)
                {
                    // Walk the message framing across reads: a type byte and a big-endian length that counts itself.
                    for (var i = 0; i < read;)
                    {
                        if (bodyLeft > 0)
                        {
                            var skip = (int)Math.Min(bodyLeft, read - i);
                            bodyLeft -= skip;
                            i += skip;
                            continue;
                        }

                        header[inHeader++] = buffer[i++];
                        if (inHeader == header.Length)
                        {
                            if (header[0] == (byte)'Z')
                            {
                                Interlocked.Increment(ref _readyForQuery);
                            }

                            bodyLeft = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(1)) - 4;
                            inHeader = 0;
                        }
                    }
                }

                await to.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
        finally
        {
            client.Dispose();
            server.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        await _accepting;
        Task[] pumps;
        lock (_pumps)
        {
            pumps = [.. _pumps];
        }

        await Task.WhenAll(pumps);
        _stop.Dispose();
    }
}
