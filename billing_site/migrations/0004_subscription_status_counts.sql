-- Subscriptions per plan and status, kept by a trigger: the stats read 40 rows instead of counting
-- every subscription (GET admin/billing/stats at 100,000 subscriptions, bench/subscriptions_stats.py).
-- No foreign key to the plan: a flush truncates the tables Django knows, and this one follows the
-- subscriptions' TRUNCATE by its own trigger.
CREATE TABLE subscriptions_statuscount (
    plan_id bigint NOT NULL,
    status varchar(10) NOT NULL,
    subscriptions bigint NOT NULL DEFAULT 0 CONSTRAINT subscriptions_statuscount_not_negative CHECK (subscriptions >= 0),
    PRIMARY KEY (plan_id, status)
);

CREATE FUNCTION subscriptions_statuscount_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (OLD.plan_id <> NEW.plan_id OR OLD.status <> NEW.status)) THEN
        UPDATE subscriptions_statuscount SET subscriptions = subscriptions - 1
        WHERE plan_id = OLD.plan_id AND status = OLD.status;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (OLD.plan_id <> NEW.plan_id OR OLD.status <> NEW.status)) THEN
        INSERT INTO subscriptions_statuscount (plan_id, status, subscriptions) VALUES (NEW.plan_id, NEW.status, 1)
        ON CONFLICT (plan_id, status) DO UPDATE SET subscriptions = subscriptions_statuscount.subscriptions + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION subscriptions_statuscount_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE subscriptions_statuscount;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_statuscount_rows
    AFTER INSERT OR DELETE OR UPDATE OF plan_id, status ON subscriptions_subscription
    FOR EACH ROW EXECUTE FUNCTION subscriptions_statuscount_apply();

CREATE TRIGGER subscriptions_statuscount_truncate
    AFTER TRUNCATE ON subscriptions_subscription
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_statuscount_truncate();

INSERT INTO subscriptions_statuscount (plan_id, status, subscriptions)
SELECT plan_id, status, COUNT(*) FROM subscriptions_subscription GROUP BY plan_id, status;
