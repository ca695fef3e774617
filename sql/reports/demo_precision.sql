-- Precision of the demo's anomaly records: the share of flagged rows that were injected.
WITH truth AS (
    SELECT DISTINCT partition_date, row_key FROM demo_ground_truth
)
SELECT COUNT(*) AS flagged,
       SUM(CASE WHEN t.row_key IS NOT NULL THEN 1 ELSE 0 END) AS injected
FROM tw_anomalies a
JOIN tw_runs r
  ON r.monitor = a.monitor AND r.partition_date = a.partition_date AND r.status = 'succeeded'
LEFT JOIN truth t
  ON t.partition_date = a.partition_date AND t.row_key = a.row_key
WHERE a.monitor = :monitor;
