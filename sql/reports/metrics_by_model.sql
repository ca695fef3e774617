-- Detection quality per model version of a monitor with a label column.
-- scored_*: the partitions the model scored (out of sample). Precision, recall and F1 are
-- pooled over them (from summed counts, so large days weigh more); ROC-AUC and PR-AUC are
-- the mean over the partitions holding both classes (auc_partitions says how many).
-- window_*: the model's own training window, evaluated when it was trained (scope 'model').
WITH scored AS (
    SELECT model_version,
           COUNT(*) AS partitions,
           MIN(partition_date) AS first_partition,
           MAX(partition_date) AS last_partition,
           SUM(n_rows) AS scored_rows,
           SUM(n_positive) AS labelled_anomalies,
           SUM(n_flagged) AS flagged,
           SUM(true_positives) AS tp,
           SUM(false_positives) AS fp,
           SUM(false_negatives) AS fn,
           AVG(roc_auc) AS mean_roc_auc,
           AVG(pr_auc) AS mean_pr_auc,
           COUNT(roc_auc) AS auc_partitions
    FROM tw_metrics
    WHERE monitor = :monitor AND scope = 'partition'
    GROUP BY model_version
)
SELECT s.model_version,
       s.partitions,
       s.first_partition,
       s.last_partition,
       s.scored_rows,
       s.labelled_anomalies,
       s.flagged,
       CAST(s.tp AS FLOAT) / NULLIF(s.tp + s.fp, 0) AS scored_precision,
       CAST(s.tp AS FLOAT) / NULLIF(s.tp + s.fn, 0) AS scored_recall,
       CAST(2 * s.tp AS FLOAT) / NULLIF(2 * s.tp + s.fp + s.fn, 0) AS scored_f1,
       s.mean_roc_auc,
       s.mean_pr_auc,
       s.auc_partitions,
       w.n_rows AS window_rows,
       w.n_positive AS window_labelled_anomalies,
       w.precision AS window_precision,
       w.recall AS window_recall,
       w.f1 AS window_f1,
       w.roc_auc AS window_roc_auc,
       w.pr_auc AS window_pr_auc
FROM scored s
LEFT JOIN tw_metrics w
       ON w.monitor = :monitor AND w.scope = 'model' AND w.model_version = s.model_version
ORDER BY s.first_partition;
