using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;

namespace TodoScale.Data.Partitioning;

/// <summary>
/// PostgreSQL's hash-partition routing for a uuid key, in C#: which partition of a table partitioned
/// BY HASH (user_id) holds a user's rows, for a modulus of 16, 32, 64..., without a round trip.
/// <para>
/// PostgreSQL hashes the key with the type's extended hash function and the partition seed
/// (uuid_hash_extended = hash_bytes_extended over the 16 bytes, seed HASH_PARTITION_SEED), folds each key
/// column's hash into 0 with hash_combine64, and routes the row to remainder = hash % modulus
/// (src/backend/partitioning/partbounds.c, src/common/hashfn.c). The hash reads the bytes as little-endian
/// words, as PostgreSQL does on every little-endian server (x86-64, arm64); the tests check it against the
/// server's own satisfies_hash_partition.
/// </para>
/// </summary>
public static class PartitionHash
{
    /// <summary>HASH_PARTITION_SEED in src/include/catalog/partition.h.</summary>
    private const ulong PartitionSeed = 0x7A5B22367996DCFD;

    /// <summary>The 64-bit row hash PostgreSQL computes for a single uuid partition key.</summary>
    public static ulong RowHash(Guid key)
    {
        Span<byte> bytes = stackalloc byte[16];
        key.TryWriteBytes(bytes, bigEndian: true, out _); // the uuid's bytes as PostgreSQL stores them (RFC 4122 order)
        return HashCombine64(0, HashBytesExtended(bytes, PartitionSeed));
    }

    /// <summary>The remainder (partition index) of <paramref name="key"/> for a table with <paramref name="modulus"/> hash partitions.</summary>
    public static int PartitionIndex(Guid key, int modulus)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(modulus, 1);
        return (int)(RowHash(key) % (ulong)modulus);
    }

    /// <summary>
    /// The remainder of the partition holding <paramref name="key"/> in a table whose partitions are
    /// <paramref name="layout"/>: during a re-split, children of two moduli side by side (16 and 32), and a key is in
    /// whichever of its two candidates is attached. -1 when none is (a layout that does not cover the key).
    /// </summary>
    public static int PartitionIndex(Guid key, IReadOnlySet<(int Modulus, int Remainder)> layout)
    {
        var hash = RowHash(key);
        foreach (var modulus in layout.Select(b => b.Modulus).Distinct())
        {
            var remainder = (int)(hash % (ulong)modulus);
            if (layout.Contains((modulus, remainder)))
            {
                return remainder;
            }
        }

        return -1;
    }

    /// <summary>
    /// The hash Citus routes a uuid distribution column by (worker_hash): the type's standard 32-bit hash, uuid_hash =
    /// hash_bytes over the 16 bytes, which is the low 32 bits of hash_bytes_extended with seed 0.
    /// </summary>
    public static int CitusHash(Guid key)
    {
        Span<byte> bytes = stackalloc byte[16];
        key.TryWriteBytes(bytes, bigEndian: true, out _);
        return unchecked((int)(uint)HashBytesExtended(bytes, 0));
    }

    /// <summary>
    /// The place, in hash order, of the Citus shard holding <paramref name="key"/>, given every shard's lowest hash
    /// (shardminvalue) in ascending order: the last shard whose range starts at or below the key's hash. -1 when the
    /// list is empty.
    /// </summary>
    public static int ShardIndex(Guid key, IReadOnlyList<int> shardMinValues)
    {
        var hash = CitusHash(key);
        var index = -1;
        for (var i = 0; i < shardMinValues.Count && shardMinValues[i] <= hash; i++)
        {
            index = i;
        }

        return index;
    }

    /// <summary>The name of the partition holding <paramref name="key"/>: todos_active_p07 for table todos_active.</summary>
    public static string PartitionName(string table, Guid key, int modulus) => PartitionName(table, PartitionIndex(key, modulus));

    /// <summary>The name of hash partition <paramref name="index"/> of <paramref name="table"/> (two digits at least).</summary>
    public static string PartitionName(string table, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"{table}_p{index:00}");

    /// <summary>hash_combine64 in src/include/common/hashfn.h.</summary>
    private static ulong HashCombine64(ulong a, ulong b)
    {
        a ^= b + 0x49a0f4dd15e5a8e3UL + (a << 54) + (a >> 7);
        return a;
    }

    /// <summary>hash_bytes_extended in src/common/hashfn.c (Bob Jenkins' lookup3, little-endian word reads).</summary>
    private static ulong HashBytesExtended(ReadOnlySpan<byte> key, ulong seed)
    {
        uint a, b, c;
        a = b = c = 0x9e3779b9 + (uint)key.Length + 3923095;

        if (seed != 0)
        {
            a += (uint)(seed >> 32);
            b += (uint)seed;
            Mix(ref a, ref b, ref c);
        }

        while (key.Length >= 12)
        {
            a += BinaryPrimitives.ReadUInt32LittleEndian(key);
            b += BinaryPrimitives.ReadUInt32LittleEndian(key[4..]);
            c += BinaryPrimitives.ReadUInt32LittleEndian(key[8..]);
            Mix(ref a, ref b, ref c);
            key = key[12..];
        }

        // The last 0..11 bytes; the lowest byte of c is reserved for the length.
        switch (key.Length)
        {
            case 11: c += (uint)key[10] << 24; goto case 10;
            case 10: c += (uint)key[9] << 16; goto case 9;
            case 9: c += (uint)key[8] << 8; goto case 8;
            case 8: b += (uint)key[7] << 24; goto case 7;
            case 7: b += (uint)key[6] << 16; goto case 6;
            case 6: b += (uint)key[5] << 8; goto case 5;
            case 5: b += key[4]; goto case 4;
            case 4: a += (uint)key[3] << 24; goto case 3;
            case 3: a += (uint)key[2] << 16; goto case 2;
            case 2: a += (uint)key[1] << 8; goto case 1;
            case 1: a += key[0]; break;
        }

        Final(ref a, ref b, ref c);
        return ((ulong)b << 32) | c;
    }

    private static void Mix(ref uint a, ref uint b, ref uint c)
    {
        a -= c; a ^= BitOperations.RotateLeft(c, 4); c += b;
        b -= a; b ^= BitOperations.RotateLeft(a, 6); a += c;
        c -= b; c ^= BitOperations.RotateLeft(b, 8); b += a;
        a -= c; a ^= BitOperations.RotateLeft(c, 16); c += b;
        b -= a; b ^= BitOperations.RotateLeft(a, 19); a += c;
        c -= b; c ^= BitOperations.RotateLeft(b, 4); b += a;
    }

    private static void Final(ref uint a, ref uint b, ref uint c)
    {
        c ^= b; c -= BitOperations.RotateLeft(b, 14);
        a ^= c; a -= BitOperations.RotateLeft(c, 11);
        b ^= a; b -= BitOperations.RotateLeft(a, 25);
        c ^= b; c -= BitOperations.RotateLeft(b, 16);
        a ^= c; a -= BitOperations.RotateLeft(c, 4);
        b ^= a; b -= BitOperations.RotateLeft(a, 14);
        c ^= b; c -= BitOperations.RotateLeft(b, 24);
    }
}
