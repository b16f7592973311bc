-- What the API serves from before `legacy switch` (see V9), created by `legacy start` (LegacyMigration.cs):
-- `todos` under TodoScale's table names in schema {schema}, the tenant's rows only (the view names app.user_id
-- as row-level security does), writes through todoscale_legacy_serve. {served_columns}: the columns by V14's
-- rules, in TodoScale's types whatever `todos` has, so the API reads both sides alike.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE OR REPLACE VIEW {schema}.todos_active WITH (security_barrier) AS
    SELECT {served_columns} FROM public.todos r
     WHERE r.user_id = nullif(current_setting('app.user_id', true), '')::uuid AND todoscale_legacy_refusal(r.title, r.status) IS NULL;
CREATE OR REPLACE VIEW {schema}.todos_archived AS
    SELECT {served_columns}, r.completed_at AS archived_at FROM public.todos r WHERE false;
CREATE OR REPLACE TRIGGER todos_active_serve INSTEAD OF INSERT OR UPDATE OR DELETE ON {schema}.todos_active
    FOR EACH ROW EXECUTE FUNCTION public.todoscale_legacy_serve();
GRANT USAGE ON SCHEMA {schema} TO todoscale_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.todos_active TO todoscale_app;
GRANT SELECT ON {schema}.todos_archived TO todoscale_app;
