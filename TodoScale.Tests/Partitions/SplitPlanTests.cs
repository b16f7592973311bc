using TodoScale.Archiver.Partitions;
using TodoScale.Data.Schema;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Partitions;

/// <summary>The split's decisions without a server (which partitions, in which order, what it refuses), and its step names against V11's CHECK.</summary>
[Collection(PostgresCollection.Name)]
public sealed class SplitPlanTests(PostgresServer server)
{
    private static readonly DateTimeOffset At = DateTimeOffset.UnixEpoch;

    private static IReadOnlyCollection<(int, int)> Layout(int modulus, params int[] skip) =>
        [.. Enumerable.Range(0, modulus).Where(r => !skip.Contains(r)).Select(r => (modulus, r))];

    private static SplitState State(string table, int oldModulus, int remainder, int to, SplitStep step) =>
        new(table, oldModulus, remainder, to, step, 0, 0, At, At, null);

    [Fact]
    public void A_split_takes_every_old_child_of_both_tables_in_remainder_order_and_each_becomes_its_residues()
    {
        var work = SplitPlan.Work(32, [("todos_active", Layout(16)), ("ai_interactions", Layout(16))], []);

        Assert.Equal(32, work.Count);
        Assert.Equal(Enumerable.Range(0, 16).Select(r => new SplitWork("todos_active", 16, r)), work.Take(16));
        Assert.Equal(Enumerable.Range(0, 16).Select(r => new SplitWork("ai_interactions", 16, r)), work.Skip(16));
        Assert.Equal([3, 19], SplitPlan.Targets(16, 3, 32));
        Assert.Equal([3, 19, 35, 51], SplitPlan.Targets(16, 3, 64));
    }

    [Fact]
    public void A_resumed_split_finishes_a_swapped_partition_first_then_the_old_children_left()
    {
        // p00 and p01 were split to 32 (p00 finished, p01 swapped but its old table not dropped); p02 was copying.
        var layout = Layout(16, 0, 1).Concat([(32, 0), (32, 16), (32, 1), (32, 17)]).ToList();
        var states = new[]
        {
            State("todos_active", 16, 0, 32, SplitStep.Done), State("todos_active", 16, 1, 32, SplitStep.Swapped),
            State("todos_active", 16, 2, 32, SplitStep.Copying),
        };

        var work = SplitPlan.Work(32, [("todos_active", layout), ("ai_interactions", Layout(32))], states);

        Assert.Equal([new SplitWork("todos_active", 16, 1), .. Enumerable.Range(2, 14).Select(r => new SplitWork("todos_active", 16, r))], work);
        Assert.Empty(SplitPlan.Work(32, [("todos_active", Layout(32)), ("ai_interactions", Layout(32))], [State("todos_active", 16, 0, 32, SplitStep.Done)]));
    }

    [Theory]
    [InlineData(24, 16, "power of two")]
    [InlineData(512, 16, "power of two")]
    [InlineData(1, 16, "power of two")]
    [InlineData(8, 16, "does not divide")]
    public void A_split_refuses_a_count_it_cannot_reach(int to, int current, string says)
    {
        var refused = Assert.Throws<SplitRefusedException>(() => SplitPlan.Work(to, [("todos_active", Layout(current))], []));
        Assert.Contains(says, refused.Message);
    }

    [Fact]
    public void A_split_to_another_count_waits_for_the_unfinished_one()
    {
        var refused = Assert.Throws<SplitRefusedException>(() =>
            SplitPlan.Work(64, [("todos_active", Layout(16))], [State("todos_active", 16, 5, 32, SplitStep.Copying)]));
        Assert.Contains("partitions split --to 32", refused.Message);

        var mixed = Assert.Throws<SplitRefusedException>(() =>
            SplitPlan.Work(64, [("todos_active", Layout(16, 0).Concat([(32, 0), (32, 16)]).ToList())], []));
        Assert.Contains("a split to 32 is unfinished", mixed.Message);
        Assert.Contains("no partitions", Assert.Throws<SplitRefusedException>(() => SplitPlan.Work(32, [("todos_active", [])], [])).Message);
    }

    [Fact]
    public void A_foreign_key_to_the_old_child_itself_points_at_the_new_child_and_is_named_after_it()
    {
        var self = new CatalogForeignKey("todos_active_p03_parent_fkey",
            "FOREIGN KEY (user_id, parent_todo_id) REFERENCES todos_active_p03(user_id, id) ON DELETE CASCADE", "todos_active_p03");
        var project = new CatalogForeignKey("todos_active_project_fkey",
            "FOREIGN KEY (user_id, project_id) REFERENCES projects(user_id, id) ON DELETE SET NULL (project_id)", "projects");

        Assert.Equal(("todos_active_p19_parent_fkey", "FOREIGN KEY (user_id, parent_todo_id) REFERENCES \"todos_active_next_p19\"(user_id, id) ON DELETE CASCADE"),
            PartitionSplit.ForNewChild(self, "todos_active_p03", "todos_active_p19", "todos_active_next_p19"));
        Assert.Equal((project.Name, project.Definition), PartitionSplit.ForNewChild(project, "todos_active_p03", "todos_active_p19", "todos_active_next_p19"));
    }

    [Fact]
    public async Task The_step_names_are_exactly_the_values_partition_splits_check_allows()
    {
        var db = await server.MigratedDatabaseForAsync(GetType());
        var check = await Sql.ScalarAsync<string>(db,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'partition_split'::regclass AND conname = 'partition_split_step_check'");
        var allowed = System.Text.RegularExpressions.Regex.Matches(check, "'([a-z_]+)'::text").Select(m => m.Groups[1].Value);

        Assert.Equal(allowed.Order(), SplitSteps.All.Order());
        Assert.Equal(SplitStep.Swapped, SplitSteps.Parse("swapped"));
        Assert.Throws<InvalidDataException>(() => SplitSteps.Parse("unknown"));
    }
}
