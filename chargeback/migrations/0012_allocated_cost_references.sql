-- The references of chargeback_allocatedcost (run, rule, team, user), checked once per statement.
--
-- A month's allocation inserts tens of thousands of rows in two statements. As foreign keys, each
-- row paid four checks (a trigger and a SELECT … FOR KEY SHARE of the parent, one row at a time: about
-- 16 µs a row on a quiet machine, the largest part of the allocation's cost per row). These
-- triggers enforce the same rules for every writer, set by set:
--
-- * inserting or updating rows: each parent they name is locked FOR KEY SHARE once (so it cannot be
--   deleted before this transaction ends, as a foreign key's check locks it), then any name that
--   matches no parent is refused (SQLSTATE 23503, foreign_key_violation);
-- * deleting parents (an allocation run, an allocation rule, a team, a user): refused while an
--   allocated cost still names one of them (23503). Django deletes a run's rows before the run
--   (on_delete=CASCADE) and refuses the others first (PROTECT), as before.
--
-- Unlike the foreign keys, the checks run at the end of each statement, not at commit: a parent
-- must exist before its rows are written (it always is). Primary keys are never updated, and
-- TRUNCATE of a parent is not checked.

CREATE FUNCTION chargeback_allocatedcost_references_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    runs bigint[];
    rules bigint[];
    teams bigint[];
    users integer[];
    missing text;
BEGIN
    -- One pass over the statement's rows: the distinct parents they name.
    SELECT array_agg(DISTINCT run_id), array_agg(DISTINCT rule_id) FILTER (WHERE rule_id IS NOT NULL),
           array_agg(DISTINCT team_id), array_agg(DISTINCT user_id) FILTER (WHERE user_id IS NOT NULL)
      INTO runs, rules, teams, users
      FROM new_rows;
    -- Each parent locked once, in key order, as a foreign key's check locks it for each row.
    PERFORM 1 FROM chargeback_allocationrun p WHERE p.id = ANY (runs) ORDER BY p.id FOR KEY SHARE OF p;
    PERFORM 1 FROM chargeback_allocationrule p WHERE p.id = ANY (rules) ORDER BY p.id FOR KEY SHARE OF p;
    PERFORM 1 FROM teams_team p WHERE p.id = ANY (teams) ORDER BY p.id FOR KEY SHARE OF p;
    PERFORM 1 FROM auth_user p WHERE p.id = ANY (users) ORDER BY p.id FOR KEY SHARE OF p;
    -- A new statement, so a new snapshot (READ COMMITTED): a parent deleted by a transaction that
    -- committed while the lock above waited for it is seen as missing here.
    SELECT m INTO missing FROM (
        SELECT format('(run_id)=(%s) is not present in table "chargeback_allocationrun"', k) AS m
        FROM unnest(runs) k WHERE NOT EXISTS (SELECT FROM chargeback_allocationrun p WHERE p.id = k)
        UNION ALL
        SELECT format('(rule_id)=(%s) is not present in table "chargeback_allocationrule"', k)
        FROM unnest(rules) k WHERE NOT EXISTS (SELECT FROM chargeback_allocationrule p WHERE p.id = k)
        UNION ALL
        SELECT format('(team_id)=(%s) is not present in table "teams_team"', k)
        FROM unnest(teams) k WHERE NOT EXISTS (SELECT FROM teams_team p WHERE p.id = k)
        UNION ALL
        SELECT format('(user_id)=(%s) is not present in table "auth_user"', k)
        FROM unnest(users) k WHERE NOT EXISTS (SELECT FROM auth_user p WHERE p.id = k)
    ) AS problems LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'insert or update on table "chargeback_allocatedcost" violates its references: key %', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER chargeback_allocatedcost_references_on_insert
    AFTER INSERT ON chargeback_allocatedcost REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chargeback_allocatedcost_references_check();
CREATE TRIGGER chargeback_allocatedcost_references_on_update
    AFTER UPDATE ON chargeback_allocatedcost REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chargeback_allocatedcost_references_check();

-- TG_ARGV[0]: the column of chargeback_allocatedcost that names the deleted table's rows.
CREATE FUNCTION chargeback_allocatedcost_referenced_check() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    still bigint;
BEGIN
    EXECUTE format('SELECT o.id FROM old_rows o WHERE EXISTS '
                   '(SELECT FROM chargeback_allocatedcost c WHERE c.%I = o.id) ORDER BY o.id LIMIT 1', TG_ARGV[0])
        INTO still;
    IF still IS NOT NULL THEN
        RAISE EXCEPTION 'delete on table "%" violates the references of "chargeback_allocatedcost": key (id)=(%) '
                        'is still referenced (%)', TG_TABLE_NAME, still, TG_ARGV[0]
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER chargeback_allocatedcost_run_referenced
    AFTER DELETE ON chargeback_allocationrun REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chargeback_allocatedcost_referenced_check('run_id');
CREATE TRIGGER chargeback_allocatedcost_rule_referenced
    AFTER DELETE ON chargeback_allocationrule REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chargeback_allocatedcost_referenced_check('rule_id');
CREATE TRIGGER chargeback_allocatedcost_team_referenced
    AFTER DELETE ON teams_team REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chargeback_allocatedcost_referenced_check('team_id');
CREATE TRIGGER chargeback_allocatedcost_user_referenced
    AFTER DELETE ON auth_user REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chargeback_allocatedcost_referenced_check('user_id');
