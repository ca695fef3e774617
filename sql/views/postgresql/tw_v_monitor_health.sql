-- One row per monitor that has runs (tw_runs): where it stands and how its last 30 days went.
-- last_*: the run of the monitor's latest partition_date, whatever its status ('running' included);
-- last_error is that run's error, or its note when it has none (why it was quarantined, is warming up).
-- last_success_partition: the latest partition with status 'succeeded' (NULL: none yet).
-- quarantines_30d, failures_30d: partitions quarantined, failed with partition_date within 30 days of
-- last_partition (last_partition - 30 to last_partition, both included).
-- current_model_version, model_trained_at: the monitor's newest model in tw_models by trained_at;
-- model_age_days: days from the partition that model was trained for (trained_for) to last_partition.
-- The three model columns are NULL for a monitor without a model.
CREATE VIEW tw_v_monitor_health AS
WITH latest AS (
    SELECT monitor,
           MAX(partition_date) AS last_partition,
           MAX(CASE WHEN status = 'succeeded' THEN partition_date END) AS last_success_partition
    FROM tw_runs
    GROUP BY monitor
),
recent AS (
    SELECT l.monitor,
           COUNT(CASE WHEN r.status = 'quarantined' THEN 1 END) AS quarantines_30d,
           COUNT(CASE WHEN r.status = 'failed' THEN 1 END) AS failures_30d
    FROM latest l
    JOIN tw_runs r
      ON r.monitor = l.monitor AND r.partition_date >= l.last_partition - 30
    GROUP BY l.monitor
),
newest_model AS (
    SELECT monitor,
           model_version,
           trained_at,
           trained_for,
           ROW_NUMBER() OVER (PARTITION BY monitor ORDER BY trained_at DESC, model_version DESC) AS recency
    FROM tw_models
)
SELECT l.monitor,
       l.last_partition,
       r.status AS last_status,
       COALESCE(r.error, r.note) AS last_error,
       r.finished_at AS last_finished_at,
       l.last_success_partition,
       w.quarantines_30d,
       w.failures_30d,
       m.model_version AS current_model_version,
       m.trained_at AS model_trained_at,
       l.last_partition - m.trained_for AS model_age_days
FROM latest l
JOIN tw_runs r
  ON r.monitor = l.monitor AND r.partition_date = l.last_partition
JOIN recent w
  ON w.monitor = l.monitor
LEFT JOIN newest_model m
       ON m.monitor = l.monitor AND m.recency = 1;
