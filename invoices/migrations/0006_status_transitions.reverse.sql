DROP TRIGGER IF EXISTS invoices_invoice_status_transition ON invoices_invoice;
DROP FUNCTION IF EXISTS invoices_invoice_status_transition();
DROP TABLE IF EXISTS invoices_invoice_transition;
