-- The invoice lifecycle, held by the database: a status change that Invoice.TRANSITIONS does not
-- allow is refused, whoever makes it (the ORM's QuerySet.update(), raw SQL, psql, another service).
--
-- invoices_invoice_transition is a copy of Invoice.TRANSITIONS (one row per allowed move) and of
-- Invoice.CREDIT_NOTE_ONLY (by_credit_note); tests/invoices/test_status_trigger.py fails when the
-- model and this table differ, so a change to one is made to the other by a new migration.

DROP TRIGGER IF EXISTS invoices_invoice_status_transition ON invoices_invoice;
DROP FUNCTION IF EXISTS invoices_invoice_status_transition();
DROP TABLE IF EXISTS invoices_invoice_transition;

CREATE TABLE invoices_invoice_transition (
    from_status varchar(10) NOT NULL,
    to_status varchar(10) NOT NULL,
    by_credit_note boolean NOT NULL DEFAULT false,
    PRIMARY KEY (from_status, to_status)
);

INSERT INTO invoices_invoice_transition (from_status, to_status, by_credit_note) VALUES
    ('draft', 'pending', false),
    ('draft', 'cancelled', false),
    ('pending', 'sent', false),
    ('pending', 'overdue', false),
    ('pending', 'paid', false),
    ('pending', 'cancelled', true),
    ('sent', 'paid', false),
    ('sent', 'overdue', false),
    ('sent', 'cancelled', true),
    ('overdue', 'paid', false),
    ('overdue', 'cancelled', true);

-- A move in CREDIT_NOTE_ONLY (an issued invoice to cancelled) is made only by a full credit note:
-- the credit note row is written first, in the same transaction, and the same UPDATE brings
-- credited_total up to total.
CREATE FUNCTION invoices_invoice_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    needs_credit_note boolean;
BEGIN
    SELECT by_credit_note INTO needs_credit_note
      FROM invoices_invoice_transition
     WHERE from_status = OLD.status AND to_status = NEW.status;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invoice % is %; it cannot move to %', COALESCE(OLD.number, 'DRAFT-' || OLD.id), OLD.status,
                        NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoice_status_transition',
                  HINT = 'Allowed moves are in invoices_invoice_transition (Invoice.TRANSITIONS).';
    END IF;
    IF needs_credit_note AND NOT (
        NEW.credited_total = NEW.total
        AND EXISTS (SELECT 1 FROM invoices_creditnote WHERE invoice_id = NEW.id)
    ) THEN
        RAISE EXCEPTION 'invoice % is %; it moves to % only by a full credit note', OLD.number, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invoice_status_transition',
                  HINT = 'Issue a credit note for what is left on the invoice.';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER invoices_invoice_status_transition
    BEFORE UPDATE OF status ON invoices_invoice
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION invoices_invoice_status_transition();
