
DROP TRIGGER IF EXISTS invoices_creditnoteline_immutable ON invoices_creditnoteline;
DROP FUNCTION IF EXISTS invoices_creditnoteline_immutable();
DROP TRIGGER IF EXISTS invoices_creditnote_immutable ON invoices_creditnote;
DROP FUNCTION IF EXISTS invoices_creditnote_immutable();
DROP TRIGGER IF EXISTS invoices_invoiceline_issued_immutable ON invoices_invoiceline;
DROP FUNCTION IF EXISTS invoices_invoiceline_issued_immutable();
DROP TRIGGER IF EXISTS invoices_invoice_issued_immutable ON invoices_invoice;
DROP FUNCTION IF EXISTS invoices_invoice_issued_immutable();
