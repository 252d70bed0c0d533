
CREATE OR REPLACE FUNCTION invoices_invoice_issued_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.issued_at IS NULL THEN
        IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'invoice % is issued; it is never deleted', OLD.number
            USING HINT = 'Cancel it with a full credit note.';
    END IF;
    IF (NEW.team_id, NEW.user_id, NEW.kind, NEW.number, NEW.period_start, NEW.period_end, NEW.currency,
        NEW.subtotal, NEW.tax_rate, NEW.tax_amount, NEW.total, NEW.issue_date, NEW.due_date,
        NEW.allocation_run_id, NEW.team_name, NEW.cost_center, NEW.billing_address, NEW.issued_at,
        NEW.issued_by_id)
       IS DISTINCT FROM
       (OLD.team_id, OLD.user_id, OLD.kind, OLD.number, OLD.period_start, OLD.period_end, OLD.currency,
        OLD.subtotal, OLD.tax_rate, OLD.tax_amount, OLD.total, OLD.issue_date, OLD.due_date,
        OLD.allocation_run_id, OLD.team_name, OLD.cost_center, OLD.billing_address, OLD.issued_at,
        OLD.issued_by_id)
    THEN
        RAISE EXCEPTION 'invoice % is issued; its amounts, number, dates and parties never change', OLD.number
            USING HINT = 'Issue a credit note instead.';
    END IF;
    IF NEW.status = 'draft' THEN
        RAISE EXCEPTION 'invoice % is issued; it never returns to draft', OLD.number;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER invoices_invoice_issued_immutable
    BEFORE UPDATE OR DELETE ON invoices_invoice
    FOR EACH ROW EXECUTE FUNCTION invoices_invoice_issued_immutable();

CREATE OR REPLACE FUNCTION invoices_invoiceline_issued_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    issued_number text;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        SELECT number INTO issued_number FROM invoices_invoice WHERE id = OLD.invoice_id AND issued_at IS NOT NULL;
        IF FOUND THEN
            RAISE EXCEPTION 'invoice % is issued; % of its line % refused', issued_number, TG_OP, OLD.id
                USING HINT = 'Issue a credit note instead.';
        END IF;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        SELECT number INTO issued_number FROM invoices_invoice WHERE id = NEW.invoice_id AND issued_at IS NOT NULL;
        IF FOUND THEN
            RAISE EXCEPTION 'invoice % is issued; % of a line refused', issued_number, TG_OP
                USING HINT = 'Issue a credit note instead.';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER invoices_invoiceline_issued_immutable
    BEFORE INSERT OR UPDATE OR DELETE ON invoices_invoiceline
    FOR EACH ROW EXECUTE FUNCTION invoices_invoiceline_issued_immutable();

CREATE OR REPLACE FUNCTION invoices_creditnote_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'credit note % is issued; it is never deleted', OLD.number;
    END IF;
    IF (to_jsonb(NEW) - 'pdf' - 'pdf_sha256') IS DISTINCT FROM (to_jsonb(OLD) - 'pdf' - 'pdf_sha256') THEN
        RAISE EXCEPTION 'credit note % is issued; only its PDF may be stored', OLD.number;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER invoices_creditnote_immutable
    BEFORE UPDATE OR DELETE ON invoices_creditnote
    FOR EACH ROW EXECUTE FUNCTION invoices_creditnote_immutable();

CREATE OR REPLACE FUNCTION invoices_creditnoteline_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit note lines never change: % of line % refused', TG_OP, OLD.id;
END;
$$;

CREATE TRIGGER invoices_creditnoteline_immutable
    BEFORE UPDATE OR DELETE ON invoices_creditnoteline
    FOR EACH ROW EXECUTE FUNCTION invoices_creditnoteline_immutable();
