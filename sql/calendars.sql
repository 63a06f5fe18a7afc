-- Calendars: business hours, time zone and holidays, edited with plain DML.
CREATE TABLE sla.calendars (
    name        text PRIMARY KEY CHECK (name <> ''),
    definition  jsonb NOT NULL CHECK (sla.validate_calendar(definition)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sla.calendars IS
    'pg_sla business-hours calendars: {"timezone", "hours", "holidays"} definitions, edited with INSERT/UPDATE/DELETE';

CREATE FUNCTION sla.calendars_touch() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER calendars_touch BEFORE UPDATE ON sla.calendars
    FOR EACH ROW EXECUTE FUNCTION sla.calendars_touch();

-- Every backend caches parsed calendars; these tell them to forget, at commit.
-- Row triggers, because logical replication's apply worker fires no statement
-- triggers; ALWAYS, because it runs as a replica. TRUNCATE has no row form.
CREATE TRIGGER calendars_changed AFTER INSERT OR UPDATE OR DELETE ON sla.calendars
    FOR EACH ROW EXECUTE FUNCTION sla.catalog_changed();
CREATE TRIGGER calendars_truncated AFTER TRUNCATE ON sla.calendars
    FOR EACH STATEMENT EXECUTE FUNCTION sla.catalog_changed();
ALTER TABLE sla.calendars ENABLE ALWAYS TRIGGER calendars_changed;
ALTER TABLE sla.calendars ENABLE ALWAYS TRIGGER calendars_truncated;

-- Calendars are user data: pg_dump must dump their rows.
SELECT pg_catalog.pg_extension_config_dump('sla.calendars', '');
