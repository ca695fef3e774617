-- One row per monitor and day with a daily report (tw_daily_reports): volume, anomaly rate, its change
-- (rate_change_7d: the rate minus the mean rate of the 7 days before, as in the report), the validation outcome and
-- the model.
-- status: the partition's run status in tw_runs (joined on monitor and partition_date, so the latest run's:
-- 'failed' when a rerun failed after the run that wrote the report); NULL without a run row.
CREATE VIEW tw_v_anomaly_rate_daily AS
SELECT d.monitor,
       d.report_date AS partition_date,
       r.status,
       d."rows",
       d.anomalies,
       d.anomaly_rate,
       d.rate_change_7d,
       d.validation_outcome,
       d.model_version
FROM tw_daily_reports d
LEFT JOIN tw_runs r
       ON r.monitor = d.monitor AND r.partition_date = d.report_date;
