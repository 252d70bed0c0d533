CREATE FUNCTION wallets_usage_event_charge(
    p_scope text, p_key text, p_fingerprint text, p_now timestamptz, p_team_id bigint, p_currency text,
    p_user_id integer, p_feature_key text, p_external_reference_id text, p_metadata jsonb,
    p_items jsonb, p_records jsonb, p_response jsonb,
    p_default_billing_model text, p_default_credit_limit numeric, p_default_threshold_type text,
    p_default_threshold_value numeric, p_default_block_on_zero boolean
) RETURNS TABLE (out_event_id bigint, out_wallet_id bigint, out_entry_id bigint, out_total numeric,
                 out_unit_prices numeric[], out_costs numeric[], out_price_ids bigint[], out_record_ids bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_record_id bigint;
    v_wallet_id bigint;
    v_event_id bigint;
    v_entry_id bigint;
    v_record_ids bigint[];
    v_description text;
    v_model text;
    v_credit_limit numeric;
    v_threshold_type text;
    v_threshold_value numeric;
    v_block boolean;
    v_allowed jsonb;
    v_floor numeric;
    v_user_wallet boolean;
    v_priced record;
    v_total numeric;
BEGIN
    -- 1. the key, before any lock; a key seen before is a replay, which the step-by-step path answers
    INSERT INTO billing_site_idempotencyrecord (scope, key, operation, fingerprint, result_type, result_id, response,
                                               created_at)
    VALUES (p_scope, p_key, 'usage_event_charge', p_fingerprint, '', '', '{}', p_now)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING id INTO v_record_id;
    IF v_record_id IS NULL THEN
        RAISE EXCEPTION 'replay' USING ERRCODE = 'WLSTP';
    END IF;

    -- 2. the team's settings (its row, or the model's defaults given by the caller) and the prices: per item
    -- the team's override valid now, else the global price (the latest valid_from, then the highest id;
    -- chargeback.selectors.price_pick), cost = quantity × unit price rounded half-up to 12 places
    -- (money.metered_cost). An item without a price, a provider not listed as allowed (byte for byte;
    -- other spellings are compared case-insensitively by the step-by-step path), several currencies,
    -- a currency other than the team's or a total of zero or below 10^-6 (whose decimal string Python
    -- writes with an exponent) is for the step-by-step path.
    SELECT COALESCE(b.billing_model, p_default_billing_model), COALESCE(b.credit_limit, p_default_credit_limit),
           COALESCE(b.warning_threshold_type, p_default_threshold_type),
           COALESCE(b.warning_threshold_value, p_default_threshold_value),
           COALESCE(b.block_on_zero_balance, p_default_block_on_zero), COALESCE(b.allowed_providers, '[]'::jsonb)
      INTO v_model, v_credit_limit, v_threshold_type, v_threshold_value, v_block, v_allowed
      FROM (SELECT 1) AS one LEFT JOIN teams_billingsettings b ON b.team_id = p_team_id;
    v_user_wallet := v_model = 'prepaid_user';
    IF v_user_wallet AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'user required' USING ERRCODE = 'WLSTP';
    END IF;
    v_floor := CASE WHEN v_model = 'unlimited' THEN NULL
                    WHEN v_model = 'postpaid' THEN -v_credit_limit
                    WHEN v_block THEN 0 END;
    SELECT array_agg(p.unit_price ORDER BY x.ord) AS unit_prices,
           array_agg(round((x.item->>'quantity')::numeric * p.unit_price, 12) ORDER BY x.ord) AS costs,
           array_agg(p.id ORDER BY x.ord) AS price_ids,
           sum(round((x.item->>'quantity')::numeric * p.unit_price, 12)) AS total,
           count(p.id) AS found, count(*) AS items, min(p.currency) AS currency, max(p.currency) AS currency_max,
           bool_and(jsonb_array_length(v_allowed) = 0 OR v_allowed ? (x.item->>'provider')) AS allowed
      INTO v_priced
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord)
      LEFT JOIN LATERAL (
          SELECT c.id, c.unit_price, c.currency FROM chargeback_price c
           WHERE c.category = x.item->>'category' AND c.provider = x.item->>'provider'
             AND c.model = x.item->>'model' AND c.unit = x.item->>'unit'
             AND (c.team_id IS NULL OR c.team_id = p_team_id)
             AND c.valid_from <= p_now AND (c.valid_to IS NULL OR c.valid_to > p_now)
           ORDER BY c.team_id IS NULL, c.valid_from DESC, c.id DESC
           LIMIT 1
      ) p ON true;
    IF v_priced.found <> v_priced.items OR NOT v_priced.allowed OR v_priced.currency <> v_priced.currency_max
       OR v_priced.currency <> p_currency OR v_priced.total < 0.000001 THEN
        RAISE EXCEPTION 'not priced here' USING ERRCODE = 'WLSTP';
    END IF;
    v_total := v_priced.total;

    -- 3. the wallet the step-by-step path would open: the team's, or the member's own
    IF v_user_wallet AND NOT EXISTS (SELECT 1 FROM teams_teammembership m
                                      WHERE m.team_id = p_team_id AND m.user_id = p_user_id) THEN
        RAISE EXCEPTION 'not a member' USING ERRCODE = 'WLSTP';
    END IF;
    SELECT w.id INTO v_wallet_id FROM wallets_wallet w
     WHERE w.team_id = p_team_id AND w.currency = p_currency AND w.status <> 'closed'
       AND w.user_id IS NOT DISTINCT FROM (CASE WHEN v_user_wallet THEN p_user_id END)
     LIMIT 1;
    IF v_wallet_id IS NULL THEN
        RAISE EXCEPTION 'no wallet yet' USING ERRCODE = 'WLSTP';
    END IF;

    -- 4. the event, its usage records and items, written before the wallet is locked (the foreign
    -- keys are checked at commit, so the ledger entry's id is drawn first and the entry posted last)
    v_event_id := nextval(pg_get_serial_sequence('wallets_usageevent', 'id'));
    v_entry_id := nextval(pg_get_serial_sequence('wallets_ledgerentry', 'id'));
    INSERT INTO wallets_usageevent (id, team_id, user_id, wallet_id, feature_key, external_reference_id,
                                    idempotency_key, status, rejection_code, rejection_reason, total, currency,
                                    ledger_entry_id, metadata, created_at)
    VALUES (v_event_id, p_team_id, p_user_id, v_wallet_id, p_feature_key, p_external_reference_id, p_key, 'charged',
            '', '', v_total, p_currency, v_entry_id, p_metadata, p_now);
    WITH src AS (
        SELECT x.ord, jsonb_populate_record(NULL::chargeback_usagerecord, x.rec || jsonb_build_object(
                   'id', nextval(pg_get_serial_sequence('chargeback_usagerecord', 'id')),
                   'idempotency_key', 'usage-event-' || v_event_id || '-' || (x.ord - 1),
                   'metadata', jsonb_build_object('usage_event_id', v_event_id),
                   'cost', v_priced.costs[x.ord], 'currency', p_currency)) AS r
          FROM jsonb_array_elements(p_records) WITH ORDINALITY AS x(rec, ord)
    ), inserted AS (
        INSERT INTO chargeback_usagerecord SELECT (src.r).* FROM src
    )
    SELECT array_agg((src.r).id ORDER BY src.ord) INTO v_record_ids FROM src;
    INSERT INTO wallets_usageeventitem (event_id, position, category, provider, model, unit, quantity, unit_price,
                                        cost, currency, price_id, usage_record_id)
    SELECT v_event_id, x.ord - 1, x.item->>'category', x.item->>'provider', x.item->>'model', x.item->>'unit',
           (x.item->>'quantity')::numeric, v_priced.unit_prices[x.ord], v_priced.costs[x.ord], p_currency,
           v_priced.price_ids[x.ord], v_record_ids[x.ord]
      FROM jsonb_array_elements(p_items) WITH ORDINALITY AS x(item, ord);

    -- 5. under the row lock, one statement: the debit of an active wallet without granted credit,
    -- within the floor and crossing no threshold not yet warned of; the ledger entry; the key's
    -- result. Any other wallet matches nothing and the step-by-step path handles it.
    v_description := left('Usage event ' || v_event_id
                          || CASE WHEN p_external_reference_id <> '' THEN ' (' || p_external_reference_id || ')'
                                  ELSE '' END, 500);
    WITH debited AS (
        UPDATE wallets_wallet w
           SET balance = w.balance - v_total, updated_at = p_now
         WHERE w.id = v_wallet_id AND w.status = 'active' AND w.granted_balance = 0
           AND (v_floor IS NULL OR w.balance - w.reserved - v_total >= v_floor)
           AND (w.low_balance_warned OR NOT COALESCE(
                   w.balance >= (CASE WHEN v_threshold_type = 'absolute' THEN v_threshold_value
                                      WHEN COALESCE(w.last_top_up_amount, 0) = 0 THEN NULL
                                      ELSE round(w.last_top_up_amount * v_threshold_value / 100, 12) END)
                   AND (CASE WHEN v_threshold_type = 'absolute' THEN v_threshold_value
                             WHEN COALESCE(w.last_top_up_amount, 0) = 0 THEN NULL
                             ELSE round(w.last_top_up_amount * v_threshold_value / 100, 12) END)
                       > w.balance - v_total, false))
        RETURNING w.balance AS balance_after, w.reserved, w.currency
    ), entry AS (
        INSERT INTO wallets_ledgerentry (id, wallet_id, entry_type, amount, reserved_delta, balance_before,
                                         balance_after, reserved_before, reserved_after, currency, idempotency_key,
                                         reference_type, reference_id, feature_key, description, created_by_id,
                                         created_at, metadata)
        SELECT v_entry_id, v_wallet_id, 'charge', -v_total, 0, d.balance_after + v_total, d.balance_after, d.reserved,
               d.reserved, d.currency, p_key, 'usage_event', v_event_id::text, p_feature_key, v_description,
               p_user_id, p_now, '{}'::jsonb
          FROM debited d
        RETURNING id
    ), stored AS (
        UPDATE billing_site_idempotencyrecord r
           SET result_type = 'usage_event', result_id = v_event_id::text,
               response = p_response || jsonb_build_object('id', v_event_id, 'ledger_entry', e.id,
                                                           'total', v_total::text)
          FROM entry e
         WHERE r.id = v_record_id
        RETURNING e.id
    )
    SELECT s.id INTO v_entry_id FROM stored s;
    IF v_entry_id IS NULL THEN
        RAISE EXCEPTION 'not the common case' USING ERRCODE = 'WLSTP';
    END IF;
    RETURN QUERY SELECT v_event_id, v_wallet_id, v_entry_id, v_total, v_priced.unit_prices, v_priced.costs,
                        v_priced.price_ids, v_record_ids;
END;
$$;
