
ALTER TABLE invoices_creditnote DROP CONSTRAINT IF EXISTS credit_note_total_is_sum;
ALTER TABLE invoices_invoice DROP CONSTRAINT IF EXISTS invoice_credited_within_total;
