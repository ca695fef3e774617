-- Recall of the demo's injected anomalies, per kind, over the partitions that were scored.
-- An injected row counts as found when tw_anomalies holds a record for it.
WITH scored AS (
    SELECT partition_date FROM tw_runs WHERE monitor = :monitor AND status = 'succeeded'
),
truth AS (
    SELECT DISTINCT g.partition_date, g.row_key, g.kind
    FROM demo_ground_truth g
    JOIN scored s ON s.partition_date = g.partition_date
)
SELECT t.kind,
       COUNT(*) AS injected,
       SUM(CASE WHEN a.row_key IS NOT NULL THEN 1 ELSE 0 END) AS found
FROM truth t
LEFT JOIN tw_anomalies a
       ON a.monitor = :monitor AND a.partition_date = t.partition_date AND a.row_key = t.row_key
GROUP BY t.kind
ORDER BY t.kind;
