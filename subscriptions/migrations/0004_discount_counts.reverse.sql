DROP TRIGGER IF EXISTS subscriptions_discountcount_rows ON subscriptions_subscription;
DROP TRIGGER IF EXISTS subscriptions_discountcount_truncate ON subscriptions_subscription;
DROP FUNCTION IF EXISTS subscriptions_discountcount_apply();
DROP FUNCTION IF EXISTS subscriptions_discountcount_truncate();
DROP TABLE IF EXISTS subscriptions_discountcount;
