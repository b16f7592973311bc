using TodoScale.Data.Schema;

namespace TodoScale.Data.Legacy;

/// <summary>
/// The original design's single table, `todos`, as an existing installation has it: every todo of every user,
/// active or finished, in one unpartitioned heap with only its primary key. TodoScale migrates away from it
/// (the `legacy` verbs) and the benchmark measures against it; neither creates it in a real installation (the tests
/// and the benchmark create the original design's table: TodoScale.Testing/LegacyTable.cs).
/// </summary>
public static class LegacySchema
{
    public const string Table = "todos";

    /// <summary>
    /// Where the API finds `todos` under TodoScale's table names while it serves from it (before `legacy switch`,
    /// after `legacy rollback`): views created by `legacy start`, put first on the search_path per transaction.
    /// </summary>
    public const string ServingSchema = "todoscale_legacy";

    /// <summary>The search_path of a transaction that serves from `todos`.</summary>
    public const string ServingSearchPath = ServingSchema + ", public";

    /// <summary>The columns, in the order both sides of a copy name them: TodoScale's own names (<see cref="TodoColumns.Todo"/>).</summary>
    public const string Columns = TodoColumns.Todo;

    /// <summary>
    /// The name of a project made for a legacy row's project_id (the original design had no projects table), as SQL
    /// over a `project_id` column; V8's todoscale_legacy_ensure_project names it the same way.
    /// </summary>
    public const string ImportedProjectName = "'Imported project ' || project_id";
}
