"""Writes of the chargeback core, one module per job: ``usage`` (usage records, one or a batch),
``allocation`` (allocation runs: compute, commit, execute), ``allocation_rules`` (rule configuration)
and ``focus_import`` (FOCUS 1.0 cost files).
"""
