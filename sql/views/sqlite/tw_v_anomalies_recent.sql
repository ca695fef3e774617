-- Anomalies of recent partitions, with the status of their partition's run.
-- "Recent" follows the calendar, not each monitor's latest partition: partition_date >= today - 7 days,
-- i.e. today and the seven days before it, today being the local date of the process that queries (as
-- CURRENT_DATE is on PostgreSQL; SQLite's own CURRENT_DATE would be UTC). A monitor that stopped running
-- drops out of this view, which is what an analyst asking "what was flagged this week" expects.
-- run_status: the status of the partition's run in tw_runs (joined on monitor and partition_date, so it is
-- the latest run's: 'failed' when a rerun failed after the run that wrote these rows); NULL without a run row.
CREATE VIEW tw_v_anomalies_recent AS
SELECT a.monitor,
       a.partition_date,
       a.row_key,
       a.score,
       a.threshold,
       a.severity,
       a.contributions,
       a.model_version,
       a.run_id,
       r.status AS run_status
FROM tw_anomalies a
LEFT JOIN tw_runs r
       ON r.monitor = a.monitor AND r.partition_date = a.partition_date
WHERE a.partition_date >= date('now', 'localtime', '-7 days');
