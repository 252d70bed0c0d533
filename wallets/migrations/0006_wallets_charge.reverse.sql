
DROP FUNCTION IF EXISTS wallets_charge(bigint, text, text, text, numeric, text, text, text, text, integer, jsonb,
                                       timestamptz, text, text, numeric, text, numeric, boolean);
