DROP FUNCTION wallets_usage_event_charge(text, text, text, timestamptz, bigint, text, integer, text, text, jsonb, jsonb,
                                         jsonb, jsonb, text, numeric, text, numeric, boolean);
