using System.Security.Claims;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.EntityFrameworkCore;
using TodoScale.ServiceDefaults.Auth;

// The API a team would write without TodoScale, for the benchmark to measure TodoScale's against: an ASP.NET Core
// minimal API with EF Core over one unpartitioned table (the bench's copy of todos_active with the same indexes), a
// WHERE user_id = the token's subject in every query, no replica, no cache, no row-level security, no telemetry.
// It accepts TodoScale's bearer tokens (the same signing key) so the same load reaches both.
//
//   ConnectionStrings__todos   the database
//   Auth__SigningKey           the tokens' key
//   Peer__Table                the table (default bench_todos_flat)
var builder = WebApplication.CreateBuilder(args);
var auth = builder.Configuration.GetSection(AuthOptions.SectionName).Get<AuthOptions>() ?? new AuthOptions();
var table = builder.Configuration["Peer:Table"] ?? "bench_todos_flat";
builder.Services.AddDbContextPool<PeerDb>(options => options.UseNpgsql(builder.Configuration.GetConnectionString("todos")));
builder.Services.AddSingleton(new PeerTable(table));
builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer(options =>
{
    options.MapInboundClaims = false;
    options.TokenValidationParameters = TodoScaleTokens.ValidationParameters(auth);
});
builder.Services.AddAuthorization();

var app = builder.Build();
app.UseAuthentication();
app.UseAuthorization();

app.MapGet("/health", () => Results.Ok("Healthy"));

// The first page (or the next, by created_at and id) of the user's todos with the given statuses, newest first.
app.MapGet("/api/todos", async (ClaimsPrincipal principal, PeerDb db, string? status, int? limit, CancellationToken cancellationToken) =>
{
    if (!Guid.TryParse(principal.FindFirstValue(TodoScaleTokens.SubjectClaim), out var user))
    {
        return Results.Unauthorized();
    }

    var statuses = (status ?? "todo,in_progress").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    var take = Math.Clamp(limit ?? 50, 1, 200);
    var items = await db.Todos.AsNoTracking()
        .Where(t => t.UserId == user && statuses.Contains(t.Status))
        .OrderByDescending(t => t.CreatedAt).ThenByDescending(t => t.Id)
        .Take(take)
        .ToListAsync(cancellationToken);
    return Results.Ok(new { items });
}).RequireAuthorization();

app.Run();

internal sealed record PeerTable(string Name);

internal sealed class PeerDb(DbContextOptions<PeerDb> options, PeerTable table) : DbContext(options)
{
    public DbSet<PeerTodo> Todos => Set<PeerTodo>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.Entity<PeerTodo>(todo =>
        {
            todo.ToTable(table.Name);
            todo.HasKey(t => new { t.UserId, t.Id });
            todo.Property(t => t.Id).HasColumnName("id");
            todo.Property(t => t.UserId).HasColumnName("user_id");
            todo.Property(t => t.ParentTodoId).HasColumnName("parent_todo_id");
            todo.Property(t => t.ProjectId).HasColumnName("project_id");
            todo.Property(t => t.Title).HasColumnName("title");
            todo.Property(t => t.Description).HasColumnName("description");
            todo.Property(t => t.Status).HasColumnName("status");
            todo.Property(t => t.Priority).HasColumnName("priority");
            todo.Property(t => t.DueDate).HasColumnName("due_date");
            todo.Property(t => t.CompletedAt).HasColumnName("completed_at");
            todo.Property(t => t.AiGenerated).HasColumnName("ai_generated");
            todo.Property(t => t.Depth).HasColumnName("depth");
            todo.Property(t => t.CreatedAt).HasColumnName("created_at");
            todo.Property(t => t.UpdatedAt).HasColumnName("updated_at");
        });
}

internal sealed class PeerTodo
{
    public Guid Id { get; set; }

    public Guid UserId { get; set; }

    public Guid? ParentTodoId { get; set; }

    public Guid? ProjectId { get; set; }

    public string Title { get; set; } = "";

    public string? Description { get; set; }

    public string Status { get; set; } = "todo";

    public short Priority { get; set; }

    public DateTimeOffset? DueDate { get; set; }

    public DateTimeOffset? CompletedAt { get; set; }

    public bool AiGenerated { get; set; }

    public short Depth { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    public DateTimeOffset UpdatedAt { get; set; }
}
