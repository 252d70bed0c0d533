"""FOCUS 1.0 cost files (the FinOps Open Cost and Usage Specification), one module per job.

``reading`` opens a file and yields its good rows, ``parsing`` turns one CSV record into a row,
``teams`` finds or creates the team a row names, ``writing`` streams the rows into the usage table
with ``COPY``, ``results`` holds what an import reports, ``preview`` shows what an import would do,
and ``generator`` writes realistic files for the demo and the benchmarks. The import itself is the
service ``chargeback.services.focus_import.focus_import``.
"""
