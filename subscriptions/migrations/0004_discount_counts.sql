-- Subscriptions per plan, status and the coupon whose discount covers their current period, kept by a
-- trigger: GET admin/billing/stats reads these few rows for MRR after discounts instead of joining every
-- discounted subscription (bench/subscriptions_stats.py). As subscriptions_statuscount: no foreign
-- keys (a flush truncates the tables Django knows; this one follows the subscriptions' TRUNCATE).
CREATE TABLE subscriptions_discountcount (
    plan_id bigint NOT NULL,
    status varchar(10) NOT NULL,
    coupon_id bigint NOT NULL,
    subscriptions bigint NOT NULL DEFAULT 0 CONSTRAINT subscriptions_discountcount_not_negative CHECK (subscriptions >= 0),
    PRIMARY KEY (plan_id, status, coupon_id)
);

CREATE FUNCTION subscriptions_discountcount_apply() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND (OLD.plan_id, OLD.status, OLD.discount_coupon_id)
                             IS DISTINCT FROM (NEW.plan_id, NEW.status, NEW.discount_coupon_id)))
       AND OLD.discount_coupon_id IS NOT NULL THEN
        UPDATE subscriptions_discountcount SET subscriptions = subscriptions - 1
        WHERE plan_id = OLD.plan_id AND status = OLD.status AND coupon_id = OLD.discount_coupon_id;
    END IF;
    IF (TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND (OLD.plan_id, OLD.status, OLD.discount_coupon_id)
                             IS DISTINCT FROM (NEW.plan_id, NEW.status, NEW.discount_coupon_id)))
       AND NEW.discount_coupon_id IS NOT NULL THEN
        INSERT INTO subscriptions_discountcount (plan_id, status, coupon_id, subscriptions)
        VALUES (NEW.plan_id, NEW.status, NEW.discount_coupon_id, 1)
        ON CONFLICT (plan_id, status, coupon_id) DO UPDATE SET subscriptions = subscriptions_discountcount.subscriptions + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION subscriptions_discountcount_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE subscriptions_discountcount;
    RETURN NULL;
END
$$;

CREATE TRIGGER subscriptions_discountcount_rows
    AFTER INSERT OR DELETE OR UPDATE OF plan_id, status, discount_coupon_id ON subscriptions_subscription
    FOR EACH ROW EXECUTE FUNCTION subscriptions_discountcount_apply();

CREATE TRIGGER subscriptions_discountcount_truncate
    AFTER TRUNCATE ON subscriptions_subscription
    FOR EACH STATEMENT EXECUTE FUNCTION subscriptions_discountcount_truncate();

INSERT INTO subscriptions_discountcount (plan_id, status, coupon_id, subscriptions)
SELECT plan_id, status, discount_coupon_id, COUNT(*) FROM subscriptions_subscription
WHERE discount_coupon_id IS NOT NULL GROUP BY plan_id, status, discount_coupon_id;
