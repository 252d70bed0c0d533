
ALTER TABLE invoices_creditnote ADD CONSTRAINT credit_note_total_is_sum CHECK (total = subtotal + tax_amount);
ALTER TABLE invoices_invoice ADD CONSTRAINT invoice_credited_within_total
    CHECK (credited_total = 0 OR credited_total <= total);
