namespace TodoScale.Testing;

/// <summary>
/// The single `todos` table of an installation built from the original design, as every test and benchmark of the
/// migration creates it: the design's table (shared/design/original-design.md, "New Partitioned Active Table")
/// verbatim, column for column, type for type, default for default, nullability and all, only named `todos` and
/// not partitioned, as the single table it describes was. Test-only: TodoScale never creates it.
/// </summary>
public static class LegacyTable
{
    public const string CreateTable = """
        CREATE TABLE todos (
            id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id UUID NOT NULL,
            parent_todo_id UUID,
            project_id UUID,
            title VARCHAR(500) NOT NULL,
            description TEXT,
            status VARCHAR(20) DEFAULT 'todo',
            priority INTEGER DEFAULT 3,
            due_date TIMESTAMPTZ,
            completed_at TIMESTAMPTZ,
            ai_generated BOOLEAN DEFAULT FALSE,
            depth INTEGER DEFAULT 0,
            created_at TIMESTAMPTZ DEFAULT NOW(),
            updated_at TIMESTAMPTZ DEFAULT NOW()
        )
        """;
}
