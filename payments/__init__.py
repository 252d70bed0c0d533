"""Payments through Stripe: customers, payment methods, automatic collection, top-ups by card, refunds.

The app sits at the end of the import chain (teams → chargeback → wallets → invoices → subscriptions →
payments): it imports the apps before it, none of them imports it; billing_site's router, admin and
dashboard assemble it. Without ``STRIPE_SECRET_KEY`` nothing here talks to Stripe and every payment
endpoint answers 409 ``payments_not_configured`` (docs/payments.md).
"""
