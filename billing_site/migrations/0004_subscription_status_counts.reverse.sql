DROP TRIGGER IF EXISTS subscriptions_statuscount_truncate ON subscriptions_subscription;
DROP TRIGGER IF EXISTS subscriptions_statuscount_rows ON subscriptions_subscription;
DROP FUNCTION IF EXISTS subscriptions_statuscount_truncate();
DROP FUNCTION IF EXISTS subscriptions_statuscount_apply();
DROP TABLE IF EXISTS subscriptions_statuscount;
