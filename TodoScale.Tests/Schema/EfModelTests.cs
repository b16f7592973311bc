using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata;
using Npgsql;
using TodoScale.Data;
using TodoScale.Data.Entities;
using TodoScale.Data.Tenancy;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Schema;

/// <summary>The EF Core model against the schema the migrations built: same tables, columns, types, keys and foreign keys.</summary>
[Collection(PostgresCollection.Name)]
public sealed class EfModelTests(PostgresServer server) : IAsyncLifetime
{
    private NpgsqlDataSource _dataSource = null!;
    private NpgsqlDataSource _appDataSource = null!;

    public async Task InitializeAsync()
    {
        var connectionString = await server.MigratedDatabaseForAsync(GetType());
        _dataSource = NpgsqlDataSource.Create(connectionString);
        _appDataSource = NpgsqlDataSource.Create(Roles.As(connectionString, Roles.App));
    }

    public async Task DisposeAsync()
    {
        await _dataSource.DisposeAsync();
        await _appDataSource.DisposeAsync();
    }

    [Fact]
    public async Task Every_entity_maps_to_its_table_with_the_same_columns_types_and_nullability()
    {
        await using var context = Primary(_dataSource);
        await using var connection = await _dataSource.OpenConnectionAsync();
        var entityTypes = context.Model.GetEntityTypes().ToList();
        Assert.Equal(6, entityTypes.Count);

        foreach (var entity in entityTypes)
        {
            var table = entity.GetTableName()!;
            var store = StoreObjectIdentifier.Table(table);
            var modelColumns = entity.GetProperties()
                .Select(p => $"{p.GetColumnName(store)} {p.GetColumnType(store)} {(p.IsColumnNullable(store) ? "null" : "not null")}")
                .Order().ToList();
            var databaseColumns = await Sql.ColumnAsync<string>(connection, $"""
                SELECT attname || ' ' || format_type(atttypid, atttypmod) || CASE WHEN attnotnull THEN ' not null' ELSE ' null' END
                FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped
                """);
            Assert.Equal(databaseColumns.Order(), modelColumns);
        }
    }

    [Fact]
    public async Task Keys_and_foreign_keys_match_the_constraints_column_for_column()
    {
        await using var context = Primary(_dataSource);
        await using var connection = await _dataSource.OpenConnectionAsync();
        foreach (var entity in context.Model.GetEntityTypes())
        {
            var table = entity.GetTableName()!;
            // A UNIQUE constraint is a unique index in the model (an alternate key could never change: renames).
            var modelKeys = entity.GetKeys()
                .Select(k => $"{(k.IsPrimaryKey() ? "p" : "u")}({string.Join(",", k.Properties.Select(p => p.GetColumnName()))})")
                .Concat(entity.GetIndexes().Where(i => i.IsUnique)
                    .Select(i => $"u({string.Join(",", i.Properties.Select(p => p.GetColumnName()))})"))
                .Concat(entity.GetForeignKeys().Select(fk =>
                    $"f({string.Join(",", fk.Properties.Select(p => p.GetColumnName()))})->{fk.PrincipalEntityType.GetTableName()}" +
                    $"({string.Join(",", fk.PrincipalKey.Properties.Select(p => p.GetColumnName()))})"))
                .Order().ToList();
            var databaseKeys = await Sql.ColumnAsync<string>(connection, $"""
                SELECT con.contype::text || '(' ||
                       (SELECT string_agg(a.attname, ',' ORDER BY k.i) FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
                        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) || ')' ||
                       CASE WHEN con.contype = 'f' THEN '->' || con.confrelid::regclass::text || '(' ||
                           (SELECT string_agg(a.attname, ',' ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY k(attnum, i)
                            JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum) || ')' ELSE '' END
                FROM pg_constraint con WHERE con.conrelid = '{table}'::regclass AND con.contype IN ('p', 'u', 'f') AND con.conparentid = 0
                UNION
                -- A key every partition declares on itself (the subtask key, V11) is the parent's relationship.
                SELECT DISTINCT 'f(' || (SELECT string_agg(a.attname, ',' ORDER BY k.i) FROM unnest(con.conkey) WITH ORDINALITY k(attnum, i)
                        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) || ')->{table}(' ||
                       (SELECT string_agg(a.attname, ',' ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY k(attnum, i)
                        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum) || ')'
                FROM pg_inherits i JOIN pg_constraint con ON con.conrelid = i.inhrelid AND con.confrelid = i.inhrelid AND con.contype = 'f'
                WHERE i.inhparent = '{table}'::regclass
                """);
            Assert.Equal(databaseKeys.Order(), modelKeys);
        }
    }

    [Fact]
    public async Task Writes_through_the_primary_context_under_a_tenant_read_back_what_the_database_computed()
    {
        var user = Guid.CreateVersion7();
        var root = new Todo { UserId = user, Id = Guid.CreateVersion7(), Title = "plan the trip", Status = TodoStatus.InProgress };
        var child = new Todo { UserId = user, Id = Guid.CreateVersion7(), ParentTodoId = root.Id, Title = "book the train", Depth = 4 };

        await using (var context = Primary(_appDataSource))
        await using (var transaction = await context.BeginTenantTransactionAsync(user))
        {
            context.Todos.Add(root);
            await context.SaveChangesAsync();
            context.Todos.Add(child);
            await context.SaveChangesAsync();
            Assert.Equal(1, child.Depth); // computed by the database and read back, whatever the writer sent
            Assert.NotEqual(default, child.CreatedAt);

            var updatedBefore = root.UpdatedAt;
            root.Status = TodoStatus.Done;
            root.CompletedAt = DateTimeOffset.UtcNow;
            await context.SaveChangesAsync();
            Assert.True(root.UpdatedAt >= updatedBefore);
            await transaction.CommitAsync();
        }

        await using var replica = new ReplicaDbContext(new DbContextOptionsBuilder<ReplicaDbContext>().UseTodoScaleReplica(_appDataSource).Options);
        await using (await replica.BeginTenantTransactionAsync(user))
        {
            var stored = await replica.Todos.Where(t => t.UserId == user).OrderBy(t => t.Depth).ToListAsync();
            Assert.Equal([(root.Id, TodoStatus.Done, (short)0), (child.Id, TodoStatus.Todo, (short)1)], stored.Select(t => (t.Id, t.Status, t.Depth)));
            Assert.Empty(await replica.Todos.Where(t => t.UserId != user).ToListAsync());

            replica.Projects.Add(new Project { UserId = user, Id = Guid.CreateVersion7(), Name = "refused" });
            await Assert.ThrowsAsync<InvalidOperationException>(() => replica.SaveChangesAsync());
        }
    }

    private static TodoDbContext Primary(NpgsqlDataSource dataSource) =>
        new(new DbContextOptionsBuilder<TodoDbContext>().UseTodoScale(dataSource).Options);
}
