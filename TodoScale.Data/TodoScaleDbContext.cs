using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using Npgsql;
using TodoScale.Data.Entities;

namespace TodoScale.Data;

/// <summary>
/// The EF Core model of TodoScale's tables. It mirrors the SQL migrations exactly (the migrations, not EF, create
/// the schema): snake_case columns, composite keys that start with user_id, and the columns the database computes
/// (depth, updated_at) read back after every write. Two concrete contexts: <see cref="TodoDbContext"/> for the
/// primary and <see cref="ReplicaDbContext"/> for the read replica.
/// </summary>
public abstract class TodoScaleDbContext(DbContextOptions options) : DbContext(options)
{
    public DbSet<Todo> Todos => Set<Todo>();

    public DbSet<ArchivedTodo> ArchivedTodos => Set<ArchivedTodo>();

    public DbSet<Project> Projects => Set<Project>();

    public DbSet<AiInteraction> AiInteractions => Set<AiInteraction>();

    public DbSet<ArchivedAiInteraction> ArchivedAiInteractions => Set<ArchivedAiInteraction>();

    public DbSet<AuditEntry> AuditLog => Set<AuditEntry>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Project>(project =>
        {
            project.ToTable("projects");
            project.HasKey(p => new { p.UserId, p.Id });
            // A unique index, not an alternate key: EF would refuse to rename a project (a key never changes).
            project.HasIndex(p => new { p.UserId, p.Name }).IsUnique().HasDatabaseName("projects_user_name_key");
            project.Property(p => p.Name).HasMaxLength(200);
            project.Property(p => p.CreatedAt).HasDefaultValueSql("now()");
            project.Property(p => p.UpdatedAt).HasDefaultValueSql("now()").ValueGeneratedOnAddOrUpdate();
        });

        modelBuilder.Entity<Todo>(todo =>
        {
            todo.ToTable("todos_active");
            todo.HasKey(t => new { t.UserId, t.Id });
            ConfigureTodoColumns(todo);
            todo.Property(t => t.CreatedAt).HasDefaultValueSql("now()");
            // Declared in the database on each partition (todos_active_pNN_parent_fkey, V11), so a re-split can swap
            // partitions; a subtask and its parent share user_id, hence the partition.
            todo.HasOne<Todo>().WithMany().HasForeignKey(t => new { t.UserId, t.ParentTodoId })
                .OnDelete(DeleteBehavior.Cascade);
            // ON DELETE SET NULL (project_id) in the database: EF leaves it to the database.
            todo.HasOne<Project>().WithMany().HasForeignKey(t => new { t.UserId, t.ProjectId })
                .HasConstraintName("todos_active_project_fkey").OnDelete(DeleteBehavior.ClientNoAction);
        });

        modelBuilder.Entity<ArchivedTodo>(todo =>
        {
            todo.ToTable("todos_archived");
            todo.HasKey(t => new { t.UserId, t.Id, t.ArchivedAt });
            ConfigureTodoColumns(todo);
        });

        modelBuilder.Entity<AiInteraction>(interaction =>
        {
            interaction.ToTable("ai_interactions");
            interaction.HasKey(i => new { i.UserId, i.Id });
            ConfigureAiInteractionColumns(interaction);
            interaction.Property(i => i.CreatedAt).HasDefaultValueSql("now()");
        });

        modelBuilder.Entity<ArchivedAiInteraction>(interaction =>
        {
            interaction.ToTable("ai_interactions_archived");
            interaction.HasKey(i => new { i.UserId, i.Id, i.ArchivedAt });
            ConfigureAiInteractionColumns(interaction);
        });

        modelBuilder.Entity<AuditEntry>(entry =>
        {
            entry.ToTable("audit_log");
            entry.HasKey(a => a.Id);
            entry.Property(a => a.At).HasDefaultValueSql("now()");
            entry.Property(a => a.Details).HasColumnType("jsonb");
        });
    }

    private static void ConfigureTodoColumns<T>(EntityTypeBuilder<T> todo)
        where T : TodoColumns
    {
        todo.Property(t => t.Title).HasMaxLength(500);
        todo.Property(t => t.Status).HasConversion(s => s.ToDatabase(), s => TodoStatuses.FromDatabase(s));
        todo.Property(t => t.Depth).ValueGeneratedOnAddOrUpdate();
        todo.Property(t => t.UpdatedAt).HasDefaultValueSql("now()").ValueGeneratedOnAddOrUpdate();
    }

    private static void ConfigureAiInteractionColumns<T>(EntityTypeBuilder<T> interaction)
        where T : AiInteractionColumns
    {
        interaction.Property(i => i.Kind).HasMaxLength(50);
        interaction.Property(i => i.Model).HasMaxLength(100);
    }
}

/// <summary>The primary: every write, and every read that must see the latest commit.</summary>
public sealed class TodoDbContext(DbContextOptions<TodoDbContext> options) : TodoScaleDbContext(options);

/// <summary>The read replica (a hot standby): reads only, untracked; saving is refused before it reaches the server.</summary>
public sealed class ReplicaDbContext(DbContextOptions<ReplicaDbContext> options) : TodoScaleDbContext(options)
{
    public override int SaveChanges(bool acceptAllChangesOnSuccess) => throw ReadOnly();

    public override Task<int> SaveChangesAsync(bool acceptAllChangesOnSuccess, CancellationToken cancellationToken = default) =>
        throw ReadOnly();

    private static InvalidOperationException ReadOnly() => new("The replica is read-only: write through TodoDbContext (the primary).");
}

public static class TodoScaleDbContextOptions
{
    /// <summary>Npgsql over the given data source with TodoScale's naming (snake_case columns).</summary>
    public static TBuilder UseTodoScale<TBuilder>(this TBuilder builder, NpgsqlDataSource dataSource)
        where TBuilder : DbContextOptionsBuilder
    {
        builder.UseNpgsql(dataSource).UseSnakeCaseNamingConvention();
        return builder;
    }

    /// <summary>As <see cref="UseTodoScale{TBuilder}"/>, for the replica: queries are not tracked.</summary>
    public static TBuilder UseTodoScaleReplica<TBuilder>(this TBuilder builder, NpgsqlDataSource dataSource)
        where TBuilder : DbContextOptionsBuilder
    {
        builder.UseTodoScale(dataSource).UseQueryTrackingBehavior(QueryTrackingBehavior.NoTracking);
        return builder;
    }
}
