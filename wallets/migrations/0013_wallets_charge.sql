CREATE OR REPLACE FUNCTION wallets_charge(
    p_wallet_id bigint, p_scope text, p_key text, p_fingerprint text, p_amount numeric,
    p_feature_key text, p_description text, p_reference_type text, p_reference_id text,
    p_created_by integer, p_metadata jsonb, p_now timestamptz, p_created_at_iso text,
    p_default_billing_model text, p_default_credit_limit numeric, p_default_threshold_type text,
    p_default_threshold_value numeric, p_default_block_on_zero boolean
) RETURNS TABLE (out_replayed boolean, out_entry_id bigint, out_balance_before numeric, out_balance_after numeric,
                 out_reserved numeric, out_threshold_crossed numeric, out_notify boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_record_id bigint;
    v_team_id bigint;
    v_wallet wallets_wallet%ROWTYPE;
    v_model text := p_default_billing_model;
    v_credit_limit numeric := p_default_credit_limit;
    v_threshold_type text := p_default_threshold_type;
    v_threshold_value numeric := p_default_threshold_value;
    v_block boolean := p_default_block_on_zero;
    v_notify boolean := false;
    v_floor numeric;
    v_threshold numeric;
    v_crossed numeric;
    v_to_take numeric;
    v_take numeric;
    v_lot record;
    v_after numeric;
    v_entry_id bigint;
BEGIN
    -- 1. the key, before any lock: a concurrent request with the same key waits here, on the key alone
    INSERT INTO billing_site_idempotencyrecord (scope, key, operation, fingerprint, result_type, result_id, response,
                                               created_at)
    VALUES (p_scope, p_key, 'wallet_charge', p_fingerprint, '', '', '{}', p_now)
    ON CONFLICT (scope, key) DO NOTHING
    RETURNING id INTO v_record_id;
    IF v_record_id IS NULL THEN
        RETURN QUERY SELECT true, NULL::bigint, NULL::numeric, NULL::numeric, NULL::numeric, NULL::numeric, false;
        RETURN;
    END IF;

    -- 2. the team's settings, read without the wallet's lock (a wallet never changes team)
    SELECT w.team_id,
           COALESCE(b.billing_model, p_default_billing_model), COALESCE(b.credit_limit, p_default_credit_limit),
           COALESCE(b.warning_threshold_type, p_default_threshold_type),
           COALESCE(b.warning_threshold_value, p_default_threshold_value),
           COALESCE(b.block_on_zero_balance, p_default_block_on_zero),
           COALESCE(b.notify_on_warning AND btrim(b.notify_emails) <> '', false)
      INTO v_team_id, v_model, v_credit_limit, v_threshold_type, v_threshold_value, v_block,
           v_notify
      FROM wallets_wallet w LEFT JOIN teams_billingsettings b ON b.team_id = w.team_id
     WHERE w.id = p_wallet_id;
    IF v_team_id IS NULL THEN
        RAISE EXCEPTION 'Wallet % does not exist.', p_wallet_id USING ERRCODE = 'WL404';
    END IF;
    v_floor := CASE WHEN v_model = 'unlimited' THEN NULL
                    WHEN v_model = 'postpaid' THEN -v_credit_limit
                    WHEN v_block THEN 0 END;

    -- 3. the common case in one statement: take the row lock, move the balance, post the entry and store
    -- the key's result. It applies only to an active wallet without granted credit, within the floor,
    -- whose charge crosses no warning threshold not yet warned of; any other wallet matches nothing
    -- (and is not locked by it) and goes to step 4, which handles every case. The statement is also the
    -- answer (RETURN QUERY): from the row lock to the commit nothing else runs, not even a SELECT of what
    -- it returned.
    RETURN QUERY WITH debited AS (
        UPDATE wallets_wallet w
           SET balance = w.balance - p_amount, updated_at = p_now
         WHERE w.id = p_wallet_id AND w.status = 'active' AND w.granted_balance = 0
           AND (v_floor IS NULL OR w.balance - w.reserved - p_amount >= v_floor)
           AND (w.low_balance_warned OR NOT COALESCE(
                   w.balance >= (CASE WHEN v_threshold_type = 'absolute' THEN v_threshold_value
                                      WHEN COALESCE(w.last_top_up_amount, 0) = 0 THEN NULL
                                      ELSE round(w.last_top_up_amount * v_threshold_value / 100, 12) END)
                   AND (CASE WHEN v_threshold_type = 'absolute' THEN v_threshold_value
                             WHEN COALESCE(w.last_top_up_amount, 0) = 0 THEN NULL
                             ELSE round(w.last_top_up_amount * v_threshold_value / 100, 12) END)
                       > w.balance - p_amount, false))
        RETURNING w.balance AS balance_after, w.reserved, w.currency
    ), entry AS (
        INSERT INTO wallets_ledgerentry (wallet_id, entry_type, amount, reserved_delta, balance_before, balance_after,
                                         reserved_before, reserved_after, currency, idempotency_key, reference_type,
                                         reference_id, feature_key, description, created_by_id, created_at, metadata)
        SELECT p_wallet_id, 'charge', -p_amount, 0, d.balance_after + p_amount, d.balance_after, d.reserved,
               d.reserved, d.currency, p_key, p_reference_type, p_reference_id, p_feature_key, p_description,
               p_created_by, p_now, p_metadata
          FROM debited d
        RETURNING id, balance_before, balance_after, reserved_after, currency
    ), stored AS (
        -- The response as wallets.services._response writes it (plain decimal strings, ISO time).
        UPDATE billing_site_idempotencyrecord r
           SET result_type = 'ledger_entry', result_id = e.id::text,
               response = jsonb_build_object(
                   'object', 'ledger_entry', 'id', e.id, 'wallet', p_wallet_id, 'entry_type', 'charge',
                   'amount', (-p_amount)::text, 'currency', e.currency, 'balance_after', e.balance_after::text,
                   'reserved_after', e.reserved_after::text, 'created_at', p_created_at_iso)
          FROM entry e
         WHERE r.id = v_record_id
        RETURNING e.id, e.balance_before, e.balance_after, e.reserved_after
    )
    SELECT false, s.id, s.balance_before, s.balance_after, s.reserved_after, NULL::numeric, v_notify FROM stored s;
    IF FOUND THEN
        RETURN;
    END IF;

    -- 4. every case, step by step under the row lock: a refusal, granted credit, a threshold crossed
    SELECT * INTO v_wallet FROM wallets_wallet WHERE id = p_wallet_id FOR UPDATE;
    IF v_wallet.status <> 'active' THEN
        RAISE EXCEPTION 'wallet_frozen' USING ERRCODE = 'WL409', DETAIL = v_wallet.status;
    END IF;
    IF v_floor IS NOT NULL AND v_wallet.balance - v_wallet.reserved - p_amount < v_floor THEN
        RAISE EXCEPTION 'insufficient_funds' USING ERRCODE = 'WL402',
            DETAIL = (v_wallet.balance - v_wallet.reserved
                      + CASE WHEN v_model = 'postpaid' THEN v_credit_limit ELSE 0 END)::text;
    END IF;

    -- granted credit first, then the entry, the totals and the key's result
    v_to_take := LEAST(p_amount, v_wallet.granted_balance);
    IF v_to_take > 0 THEN
        FOR v_lot IN SELECT g.id, g.remaining FROM wallets_creditgrant g
                      WHERE g.wallet_id = p_wallet_id AND g.remaining > 0
                      ORDER BY g.expires_at ASC NULLS LAST, g.id LOOP
            v_take := LEAST(v_lot.remaining, v_to_take);
            UPDATE wallets_creditgrant SET remaining = v_lot.remaining - v_take WHERE id = v_lot.id;
            v_wallet.granted_balance := v_wallet.granted_balance - v_take;
            v_to_take := v_to_take - v_take;
            EXIT WHEN v_to_take <= 0;
        END LOOP;
    END IF;
    v_after := v_wallet.balance - p_amount;

    -- the low-balance warning: one per crossing (BillingSettings.warning_threshold, quantize_metered)
    v_threshold := CASE WHEN v_threshold_type = 'absolute' THEN v_threshold_value
                        WHEN COALESCE(v_wallet.last_top_up_amount, 0) = 0 THEN NULL
                        ELSE round(v_wallet.last_top_up_amount * v_threshold_value / 100, 12) END;
    IF v_threshold IS NOT NULL AND NOT v_wallet.low_balance_warned
       AND v_wallet.balance >= v_threshold AND v_threshold > v_after THEN
        v_crossed := v_threshold;
    END IF;

    INSERT INTO wallets_ledgerentry (wallet_id, entry_type, amount, reserved_delta, balance_before, balance_after,
                                     reserved_before, reserved_after, currency, idempotency_key, reference_type,
                                     reference_id, feature_key, description, created_by_id, created_at, metadata)
    VALUES (p_wallet_id, 'charge', -p_amount, 0, v_wallet.balance, v_after, v_wallet.reserved, v_wallet.reserved,
            v_wallet.currency, p_key, p_reference_type, p_reference_id, p_feature_key, p_description, p_created_by,
            p_now, p_metadata)
    RETURNING id INTO v_entry_id;
    UPDATE wallets_wallet
       SET balance = v_after, granted_balance = v_wallet.granted_balance,
           low_balance_warned = v_wallet.low_balance_warned OR v_crossed IS NOT NULL, updated_at = p_now
     WHERE id = p_wallet_id;
    UPDATE billing_site_idempotencyrecord
       SET result_type = 'ledger_entry', result_id = v_entry_id::text,
           response = jsonb_build_object(
               'object', 'ledger_entry', 'id', v_entry_id, 'wallet', p_wallet_id, 'entry_type', 'charge',
               'amount', (-p_amount)::text, 'currency', v_wallet.currency, 'balance_after', v_after::text,
               'reserved_after', v_wallet.reserved::text, 'created_at', p_created_at_iso)
     WHERE id = v_record_id;

    RETURN QUERY SELECT false, v_entry_id, v_wallet.balance, v_after, v_wallet.reserved, v_crossed, v_notify;
END;
$$;
