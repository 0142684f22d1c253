"""The report build: ``python -m report.build`` (``make report``), the studies it plans
(``report.studies``) and the record of what a build made (``report.manifest``), which the report's
notebooks open."""
